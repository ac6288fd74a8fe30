-- hop: what one message hop costs on one scheduler thread and between threads;
-- metrics same_thread_hop_ns and cross_thread_hop_ns. Run with lua5.4: it drives
-- a node through moonbeam.host, whose host thread is a real second thread, so a
-- process <-> host round trip is two cross-thread hops (each a condition-variable
-- wake-up), while two processes ping-ponging stay on one scheduler thread (the
-- woken process takes the `next` slot).
local build = os.getenv("MB_BUILD") or "build"
package.cpath = build .. "/?.so;" .. package.cpath
local host = require "moonbeam.host"

local SAME, CROSS = 500000, 20000

local node = host.start { schedulers = 1 }

node:spawn(function(hostpid, same, cross)
  local mb = require "moonbeam"
  local me = mb.self()
  -- one scheduler thread: ping-pong with a local echo process
  local echo = mb.spawn(function()
    local mb = require "moonbeam"
    while true do local m = mb.receive(); mb.send(m[1], m[2]) end
  end)
  for i = 1, 1000 do mb.send(echo, { me, i }); mb.receive() end
  local t0 = mb.now()
  for i = 1, same do mb.send(echo, { me, i }); mb.receive() end
  local same_ns = (mb.now() - t0) * 1e6 / (2 * same)
  -- between threads: ping-pong with the host thread
  for i = 1, 200 do mb.send(hostpid, { me, i }); mb.receive() end
  t0 = mb.now()
  for i = 1, cross do mb.send(hostpid, { me, i }); mb.receive() end
  local cross_ns = (mb.now() - t0) * 1e6 / (2 * cross)
  mb.send(hostpid, { "done", same_ns, cross_ns })
  mb.exit(echo, "kill")
end, node:self(), SAME, CROSS)

while true do
  local m = node:receive(60000)
  assert(m, "no message from the timing process within 60 s")
  if m[1] == "done" then
    print(string.format("METRIC same_thread_hop_ns %.1f ns", m[2]))
    print(string.format("METRIC cross_thread_hop_ns %.1f ns", m[3]))
    break
  end
  node:send(m[1], m[2])
end
node:stop()
