-- ring: 1000 processes in a ring pass one token 1000 laps (1,000,000 hops); metric hops_per_s.
-- An argument sets the number of hops instead (bench/instr.sh counts instructions per hop).
local mb = require "moonbeam"

local PROCS, LAPS = 1000, 1000
local HOPS = math.tointeger(tonumber((...))) or PROCS * LAPS

-- A ring member: learns its successor, says ready, then forwards the token
-- (the number of hops still to go) until the last hop, which it reports.
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

local hops = HOPS
local t0 = mb.now()
mb.send(pids[1], hops)
assert(mb.receive() == "done")
local secs = (mb.now() - t0) / 1000

print(string.format("METRIC hops_per_s %.1f hops/s", hops / secs))
mb.halt(0)
