-- preempt (moonbeam half): the pure-Lua integer loop of loop_plain.lua run as a moonbeam process, to measure preemption overhead.
local mb = require "moonbeam"

local N = 300000000

local function spin(n)
  local x = 0
  for i = 1, n do
    x = (x * 31 + i) & 0xffffff
  end
  return x
end

print("checksum " .. spin(N))
mb.halt(0)
