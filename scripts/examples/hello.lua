-- hello: the demo. Spawns three workers (one linked, two monitored), gives each
-- a job, lets one crash, and prints what the first process saw.
local mb = require "moonbeam"

mb.trap_exit(true)   -- exits of linked processes arrive as {"EXIT", pid, reason}
print(("hello from %s, the first process"):format(tostring(mb.self())))

local function worker(parent, name, fail)
  local mb = require "moonbeam"
  mb.send(parent, { "hello", mb.self(), name })
  local job = mb.receive()
  if fail then error(("worker %s cannot do job %d"):format(name, job)) end
  mb.send(parent, { "done", mb.self(), name, job * 2 })
end

local me = mb.self()
local names = {}
local ada = mb.spawn_link(worker, me, "ada", false)
names[ada] = "ada"
for _, w in ipairs({ { "bob", false }, { "cy", true } }) do
  local pid = mb.spawn_monitor(worker, me, w[1], w[2])
  names[pid] = w[1]
end

-- Each worker says hello, then either finishes or crashes; each then ends
-- (one EXIT for the linked worker, one DOWN for each monitored one).
local ended = 0
while ended < 3 do
  local m = mb.receive(5000)
  if not m then print("timed out waiting for the workers"); break end
  local tag = m[1]
  if tag == "hello" then
    print(("%s (%s) says hello; sending it job 21"):format(m[3], tostring(m[2])))
    mb.send(m[2], 21)
  elseif tag == "done" then
    print(("%s finished its job: %d"):format(m[3], m[4]))
  elseif tag == "EXIT" then
    print(("link: %s ended, reason %q"):format(names[m[2]], tostring(m[3])))
    ended = ended + 1
  elseif tag == "DOWN" then
    print(("monitor: %s went down, reason %q"):format(names[m[3]], tostring(m[4])))
    ended = ended + 1
  end
end
print(("%d process(es) still alive: just me. Bye."):format(#mb.processes()))
