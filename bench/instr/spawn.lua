-- instr/spawn: N idle processes spawned, each reporting once (bench/instr counts them).
local mb = require "moonbeam"
local N = math.tointeger(tonumber((...))) or 1000
local function idle(parent)
  local mb = require "moonbeam"
  mb.send(parent, "up")
  mb.receive()
end
local me = mb.self()
for _ = 1, N do mb.spawn(idle, me) end
for _ = 1, N do mb.receive() end
mb.halt(0)
