-- instr/ring: 1000 processes in a ring pass a token N hops (bench/instr counts them).
local mb = require "moonbeam"
local PROCS, HOPS = 1000, math.tointeger(tonumber((...))) or 20000
local function member(parent)
  local mb = require "moonbeam"
  local next_pid = mb.receive()
  mb.send(parent, "ready")
  while true do
    local n = mb.receive()
    if n == 1 then mb.send(parent, "done") else mb.send(next_pid, n - 1) end
  end
end
local self = mb.self()
local pids = {}
for i = 1, PROCS do pids[i] = mb.spawn(member, self) end
for i = 1, PROCS do mb.send(pids[i], pids[i % PROCS + 1]) end
for _ = 1, PROCS do assert(mb.receive() == "ready") end
mb.send(pids[1], HOPS)
assert(mb.receive() == "done")
mb.halt(0)
