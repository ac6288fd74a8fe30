-- tree: the primer's supervision tree. From the repository's root:
--   build/moonbeam scripts/examples/tree.lua
--
--   top (one_for_one, at most 2 restarts in 5 s)
--   ├── stack          the stack server of scripts/examples/stack.lua
--   └── workers        a sub-supervisor (one_for_one, at most 2 restarts in 5 s)
--       └── crasher    a worker that crashes on demand
--
-- The crasher is crashed once and restarted; then it is crashed until its
-- supervisor gives up, which the top supervisor sees as a child failure; the
-- top one restarts it, until it gives up too and its exit reaches this process.
-- The supervisor reports in the log (stderr) tell the story as it happens.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"
local supervisor = require "moonbeam.supervisor"

mb.trap_exit(true)   -- the top supervisor's end arrives here as {"EXIT", pid, reason}

local top = assert(supervisor.start_link {
  strategy = "one_for_one", intensity = 2, period = 5, name = "top",
  children = {
    { id = "stack", module = "scripts.examples.stack", args = { "bottom" }, name = "stack" },
    { id = "workers", type = "supervisor", spec = {
        strategy = "one_for_one", intensity = 2, period = 5, name = "workers",
        children = { { id = "crasher", module = "scripts.examples.crasher", name = "crasher" } },
    } },
  },
})

for _, c in ipairs(supervisor.which_children(top)) do
  print(("top's child %-8s %-10s %s"):format(c.id, c.type, tostring(c.pid)))
end

-- The pid registered as name once it is not `old` (a restart), or nil if none comes.
local function next_pid(name, old)
  for _ = 1, 500 do
    local pid = mb.whereis(name)
    if pid and pid ~= old then return pid end
    if not mb.is_alive(top) then return nil end
    mb.sleep(2)
  end
end

local crasher = mb.whereis("crasher")
print("crasher answers", gen_server.call(crasher, "count"))
gen_server.cast(crasher, "crash")
crasher = next_pid("crasher", crasher)
print("crashed once; restarted as", crasher, "which answers", gen_server.call(crasher, "count"))

print("now crashing it again and again...")
while crasher do
  gen_server.cast(crasher, "crash")
  crasher = next_pid("crasher", crasher)
end
local exit = mb.receive(function(m) return type(m) == "table" and m[1] == "EXIT" and m[2] == top end, 5000)
print("the top supervisor gave up:", exit and exit[3])
print("stack is gone too:", mb.whereis("stack") == nil)
