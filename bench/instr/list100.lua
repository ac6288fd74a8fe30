-- instr/list100: N round trips of a 100-integer array echoed back (bench/instr counts them).
local mb = require "moonbeam"
local N = math.tointeger(tonumber((...))) or 1000
local function echo(parent)
  local mb = require "moonbeam"
  while true do mb.send(parent, mb.receive()) end
end
local echo_pid = mb.spawn(echo, mb.self())
local list = {}
for i = 1, 100 do list[i] = i end
for _ = 1, N do
  mb.send(echo_pid, list)
  mb.receive()
end
mb.halt(0)
