-- preempt (plain half): a pure-Lua integer loop run by plain lua5.4; keep the loop identical to loop.lua.
local N = 300000000

local function spin(n)
  local x = 0
  for i = 1, n do
    x = (x * 31 + i) & 0xffffff
  end
  return x
end

print("checksum " .. spin(N))
