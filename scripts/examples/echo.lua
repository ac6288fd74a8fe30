-- echo.lua: the smallest echo server. One process per connection; each sends
-- back what it reads until the peer closes.
--   build/moonbeam scripts/examples/echo.lua [--port N]   (default 7007; 0 picks one)
local mb = require "moonbeam"
local tcp = require "moonbeam.tcp"

local port = 7007
local args = { ... }
for i = 1, #args do
  if args[i] == "--port" then port = assert(math.tointeger(tonumber(args[i + 1])), "--port wants a number") end
end

local function serve()   -- runs in its own process: it captures nothing
  local conn = require("moonbeam").receive()   -- the socket, once it is ours
  while true do
    local data = conn:recv()
    if not data or not conn:send(data) then break end
  end
end

local listener = assert(tcp.listen("127.0.0.1", port))
print("listening on 127.0.0.1:" .. listener:port())
io.stdout:flush()
while true do
  local conn = assert(listener:accept())
  local pid = mb.spawn(serve)
  conn:set_owner(pid)
  mb.send(pid, conn)
end
