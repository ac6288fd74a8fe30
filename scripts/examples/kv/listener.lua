-- kv.listener: a gen_server that owns the listening socket, registered as
-- "kv_listener". The acceptors take the socket from it ("socket") and call accept on
-- it themselves, so an acceptor that crashes does not close it; if this server dies
-- the socket closes with it and the pool supervisor (rest_for_one) restarts the
-- acceptors after it.
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"

local Listener = { name = "kv_listener" }

-- Lines up to this size; a longer one closes its connection ("packet too large").
Listener.max_line = 1024 * 1024

-- args: {host=, port=}. A restart may find the old socket's port not yet released
-- (it closes on the I/O thread): "eaddrinuse" is retried for up to a second.
function Listener.init(args)
  local sock, err
  for _ = 1, 50 do
    sock, err = tcp.listen(args.host, args.port, { packet = "line", max_packet = Listener.max_line })
    if sock or err ~= "eaddrinuse" then break end
    mb.sleep(20)
  end
  if not sock then return "stop", err end
  return "ok", sock
end

function Listener.handle_call(req, from, sock)
  if req == "socket" then return "reply", sock, sock end
  if req == "port" then return "reply", sock:port(), sock end
  return "reply", nil, sock
end

return Listener
