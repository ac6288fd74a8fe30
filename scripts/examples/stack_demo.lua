-- stack_demo: starts the stack server and drives it. From the repository's root:
--   build/moonbeam scripts/examples/stack_demo.lua
local gen_server = require "moonbeam.gen_server"

local stack = gen_server.start("scripts.examples.stack", { "hello" }, { name = "stack" })
print("started", stack)

gen_server.cast("stack", { "push", "world" })   -- by name, or by pid
print(gen_server.call(stack, "pop"))              --> world
print(gen_server.call(stack, "pop"))              --> hello
print(gen_server.call(stack, "pop"))              --> nil (empty)

-- a call to a server that is gone fails at once with "noproc"
gen_server.stop(stack)
print(pcall(gen_server.call, "stack", "pop"))     --> false  call to stack: noproc
