-- instr/payload: N round trips of a payload echoed back, as bench/pingpong's (bench/instr counts them):
-- "list100", a 100-integer array, or "map20", a 20-key map of short strings.
local mb = require "moonbeam"
local n, shape = ...
local N = math.tointeger(tonumber(n)) or 1000
local function echo(parent)
  local mb = require "moonbeam"
  while true do mb.send(parent, mb.receive()) end
end
local echo_pid = mb.spawn(echo, mb.self())
local msg = {}
if shape == "map20" then
  for i = 1, 20 do msg[string.format("key%02d", i)] = string.format("value%02d", i) end
else
  for i = 1, 100 do msg[i] = i end
end
for _ = 1, N do
  mb.send(echo_pid, msg)
  mb.receive()
end
mb.halt(0)
