-- kv demo: what `./dev demo` runs. From the repository's root:
--   build/moonbeam scripts/examples/kv/demo.lua 2>&1
--
-- Starts the kv application in this node (a free port, a fresh log file), talks
-- to it over a real TCP connection as a client would, crashes the store in the
-- middle and shows that the acknowledged write survived its restart, then stops
-- the tree and lets the node end. Lines starting ">" are what the client sent,
-- "<" what it got back; the supervisor's reports are the log lines (stderr).
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"
local supervisor = require "moonbeam.supervisor"
local gen_server = require "moonbeam.gen_server"
local App = require "scripts.examples.kv.app"

-- print, flushed at once, so that stdout and the log (stderr) keep their order
-- when both go to one pipe
local function say(...)
  print(...)
  io.stdout:flush()
end

local data = os.tmpname()
local top, port = assert(App.start { port = 0, data = data })
say(("kv: listening on 127.0.0.1:%d, data in %s"):format(port, data))

local client = assert(tcp.connect("127.0.0.1", port, { packet = "line" }))
local function ask(line)
  say("> " .. line)
  assert(client:send(line .. "\n"))
  local reply = assert(client:recv(5000))
  say("< " .. reply)
  return reply
end

ask("SET greeting hello, world")
ask("GET greeting")
ask("SET greeting")          -- malformed: no value
ask("FETCH greeting")        -- malformed: no such command
local store = mb.whereis("kv_store")
ask("CRASH")

-- Wait for the supervisor to have restarted the store: a new kv_store, then a call
-- to the supervisor, which answers only once it has finished (and logged) the restart.
local deadline = mb.now() + 5000
while (mb.whereis("kv_store") or store) == store and mb.now() < deadline do mb.sleep(5) end
supervisor.which_children(top)
say(("(the store %s crashed; its supervisor restarted it as %s)"):format(tostring(store),
  tostring(mb.whereis("kv_store"))))

ask("GET greeting")          -- the value survived: replayed from the log
ask("KEYS")
ask("QUIT")
local _, why = client:recv(5000)
say("(the server closed the connection: recv says " .. tostring(why) .. ")")

gen_server.stop(top)   -- the tree stops children last-started first: acceptors first
os.remove(data)
say("kv: stopped")
