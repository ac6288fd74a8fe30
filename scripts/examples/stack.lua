-- stack: the stack server of the OTP primer, as a gen_server callback module.
-- push is a cast (nothing comes back), pop is a call (the top comes back).
-- Driven by scripts/examples/stack_demo.lua.
local Stack = {}

-- gen_server.start(module, elements): the state is a Lua array, its top at the end.
function Stack.init(elements)
  return "ok", elements
end

function Stack.handle_call(request, from, stack)
  if request == "pop" then
    local top = table.remove(stack)   -- nil when empty
    return "reply", top, stack
  elseif request == "size" then
    return "reply", #stack, stack
  end
  return "reply", nil, stack
end

function Stack.handle_cast(msg, stack)
  if msg[1] == "push" then table.insert(stack, msg[2]) end
  return "noreply", stack
end

return Stack
