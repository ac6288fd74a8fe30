-- kv.acceptor: one of the pool's acceptor processes. It waits in accept on the
-- listener's socket (several acceptors wait at once), starts a connection process
-- for each client under the "kv_conns" supervisor and hands the socket to it.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"
local supervisor = require "moonbeam.supervisor"
local Listener = require "scripts.examples.kv.listener"

local conn_spec = { module = "scripts.examples.kv.conn", kind = "process", restart = "temporary" }

return function(args)
  local lsock = gen_server.call(Listener.name, "socket")
  while true do
    local sock, err = lsock:accept()
    if sock then
      local pid, serr = supervisor.start_child(args.conns, conn_spec)
      local handed = pid and sock:set_owner(pid)
      if handed then
        mb.send(pid, { "kv_socket", sock })
      else
        mb.log("warning", "kv acceptor: cannot start a connection process: %s", tostring(serr))
        sock:close()
        if pid then mb.exit(pid, "kill") end
      end
    elseif err == "closed" then
      mb.exit("listener closed")   -- the listener is gone: let the supervisors sort it out
    else
      mb.log("warning", "kv acceptor: accept: %s", tostring(err))
      mb.sleep(100)   -- e.g. out of file descriptors: do not spin
    end
  end
end
