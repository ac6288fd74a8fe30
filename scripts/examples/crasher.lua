-- crasher: a gen_server that counts the calls it answers and crashes when told to
-- (a cast "crash"). A worker of scripts/examples/tree.lua.
local Crasher = {}

function Crasher.init() return "ok", 0 end

function Crasher.handle_call(request, from, n)
  return "reply", n + 1, n + 1
end

function Crasher.handle_cast(msg, n)
  if msg == "crash" then error("crashing on demand") end
  return "noreply", n
end

return Crasher
