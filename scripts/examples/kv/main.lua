-- kv: the key-value server. From the repository's root:
--   build/moonbeam scripts/examples/kv/main.lua [--port N] [--data FILE] [--acceptors N]
--
-- Serves the line protocol of proto.lua on 127.0.0.1:7070 (--port 0 picks a free
-- port), keeping its data in the log file kv.log in the current directory unless
-- --data names another. Ctrl-C (SIGINT) or SIGTERM stops the supervision tree
-- top-down and the node exits with status 0. Try it with  nc 127.0.0.1 7070.
local mb = require "moonbeam"
local App = require "scripts.examples.kv.app"

local opts, usage = App.parse_args({ ... })
if not opts then
  io.stderr:write(usage, "\n")
  os.exit(2)
end

mb.trap_exit(true)   -- the tree's end arrives as {"EXIT", top, reason}
local top, port = App.start(opts)
if not top then
  io.stderr:write(("kv: cannot start on %s:%d: %s\n"):format(opts.host, opts.port, port))
  os.exit(1)
end
print(("kv: listening on %s:%d"):format(opts.host, port))
print(("kv: data in %s"):format(opts.data))
io.stdout:flush()

-- Until the tree ends: on SIGINT/SIGTERM the node stops it, or it gave up.
local exit = mb.receive(function(m) return type(m) == "table" and m[1] == "EXIT" and m[2] == top end)
print("kv: stopped (" .. tostring(exit[3]) .. ")")
