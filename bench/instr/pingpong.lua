-- instr/pingpong: N round trips of {"ping", self, i} between two processes (bench/instr counts them).
local mb = require "moonbeam"
local N = math.tointeger(tonumber((...))) or 1000
local function pong()
  local mb = require "moonbeam"
  while true do
    local m = mb.receive()
    if m[1] == "stop" then return end
    mb.send(m[2], { "pong", m[3] })
  end
end
local peer, me = mb.spawn(pong), mb.self()
for i = 1, N do
  mb.send(peer, { "ping", me, i })
  mb.receive()
end
mb.send(peer, { "stop" })
