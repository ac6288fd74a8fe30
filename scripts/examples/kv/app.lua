-- kv.app: the key-value server as an OTP-style application, a supervision tree:
--
--   kv_sup                 one_for_one, at most 10 restarts in 10 s
--   ├── store              kv_store, the map and its log (store.lua)
--   ├── conns              kv_conns, a supervisor of one temporary process per
--   │                      client (conn.lua): a crashed one is not restarted and
--   │                      takes nothing with it
--   └── pool               kv_pool, rest_for_one
--       ├── listener       kv_listener, owns the listening socket (listener.lua)
--       └── acceptors      kv_acceptors, one_for_one: N acceptor processes that
--                          wait in accept on the listener's socket (acceptor.lua)
--
-- The names are fixed, so one node runs one kv application at a time.
local gen_server = require "moonbeam.gen_server"
local supervisor = require "moonbeam.supervisor"
local Listener = require "scripts.examples.kv.listener"

local App = {}

App.defaults = { host = "127.0.0.1", port = 7070, data = "kv.log", acceptors = 4 }

local function with_defaults(opts)
  local o = {}
  for k, v in pairs(App.defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return o
end

-- The top supervisor's spec for options {host=, port=, data=, acceptors=}.
function App.spec(opts)
  local o = with_defaults(opts)
  local acceptors = {}
  for i = 1, o.acceptors do
    acceptors[i] = { id = "acceptor" .. i, module = "scripts.examples.kv.acceptor", kind = "process",
                     args = { conns = "kv_conns" } }
  end
  return {
    strategy = "one_for_one", intensity = 10, period = 10, name = "kv_sup",
    children = {
      { id = "store", module = "scripts.examples.kv.store", name = "kv_store", args = { data = o.data } },
      { id = "conns", type = "supervisor", spec = { name = "kv_conns" } },
      { id = "pool", type = "supervisor", spec = {
          strategy = "rest_for_one", intensity = 10, period = 10, name = "kv_pool",
          children = {
            { id = "listener", module = "scripts.examples.kv.listener", name = Listener.name,
              args = { host = o.host, port = o.port } },
            { id = "acceptors", type = "supervisor", spec = {
                strategy = "one_for_one", intensity = 10, period = 10, name = "kv_acceptors",
                children = acceptors } },
          } } },
    },
  }
end

-- The innermost reason of a failed start ({"failed_to_start_child", id, reason}, nested).
local function root_cause(reason)
  while type(reason) == "table" and reason[1] == "failed_to_start_child" do reason = reason[3] end
  return tostring(reason)
end

-- Start the tree, linked to the caller (its parent: the tree stops when the caller
-- ends). The top supervisor's pid and the port it listens on; or nil, reason.
function App.start(opts)
  local top, err = supervisor.start_link(App.spec(opts))
  if not top then return nil, root_cause(err) end
  return top, gen_server.call(Listener.name, "port")
end

-- Options from command-line arguments (--port N, --data FILE, --acceptors N):
-- a table, or nil and a usage message.
function App.parse_args(args)
  local o, i = {}, 1
  local usage = "usage: moonbeam scripts/examples/kv/main.lua [--port N] [--data FILE] [--acceptors N]"
  while i <= #args do
    local a, v = args[i], args[i + 1]
    if a == "--port" and tonumber(v) and math.tointeger(tonumber(v)) then o.port = math.tointeger(tonumber(v))
    elseif a == "--acceptors" and tonumber(v) and math.tointeger(tonumber(v)) and tonumber(v) > 0 then
      o.acceptors = math.tointeger(tonumber(v))
    elseif a == "--data" and v then o.data = v
    else return nil, usage end
    i = i + 2
  end
  return with_defaults(o)
end

return App
