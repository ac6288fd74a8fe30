-- kv.conn: one process per client, a temporary child of the "kv_conns" supervisor.
-- It gets its socket from the acceptor ({"kv_socket", sock}), then reads lines,
-- answers each (kv.proto) and ends when the client quits or goes away. A crash
-- here closes this client's socket and nothing else.
local mb = require "moonbeam"
local Proto = require "scripts.examples.kv.proto"
local Store = require "scripts.examples.kv.store"

-- The reply line to one request line, and whether to close afterwards.
local function answer(line)
  local cmd, perr = Proto.parse(line)
  if not cmd then return Proto.err(perr) end
  local op = cmd.op
  if op == "QUIT" then return Proto.ok(), true end
  if op == "CRASH" then Store.crash(); return Proto.ok() end
  local req
  if op == "SET" then req = { "set", cmd.key, cmd.value }
  elseif op == "GET" then req = { "get", cmd.key }
  elseif op == "DEL" then req = { "del", cmd.key }
  else req = "keys" end
  local ok, reply = Store.call(req)
  if not ok then return Proto.err(reply) end
  if op == "GET" then return Proto.value(reply) end
  if op == "KEYS" then return Proto.keys(reply) end
  if not reply[1] then return Proto.err(reply[2]) end
  return Proto.ok()
end

local function serve(sock)
  while true do
    local line = sock:recv()
    if not line then break end   -- "closed", or "packet too large" for an endless line
    local reply, quit = answer(line)
    if not sock:send(reply .. "\n") or quit then break end
  end
  sock:close()
end

return function()
  local m = mb.receive(function(m) return type(m) == "table" and m[1] == "kv_socket" end, 5000)
  if m then serve(m[2]) end
end
