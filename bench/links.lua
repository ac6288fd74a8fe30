-- links: one process sets up and tears down 100,000 monitors of one target and
-- 20,000 links (to idle processes); metrics in ns per operation. No Erlang twin.
-- Sizes: moonbeam bench/links.lua [MONITORS [LINKS]].
local mb = require "moonbeam"

local args = { ... }
local M = math.tointeger(tonumber(args[1])) or 100000
local L = math.tointeger(tonumber(args[2])) or 20000

local self = mb.self()

-- Answers each message (a pid) with "pong": its reply comes after it has acted
-- on every signal we sent before.
local target = mb.spawn(function()
  local m = require "moonbeam"
  while true do m.send(m.receive(), "pong") end
end)
local function sync()
  mb.send(target, self)
  assert(mb.receive(function(m) return m == "pong" end) == "pong")
end

local function idle()
  require("moonbeam").receive()
end

local function metric(name, ms, n)
  print(string.format("METRIC %s %.1f ns", name, ms * 1e6 / n))
end

-- monitors: both ends' maps, timed until the target has acted on all of them
sync()
local refs = {}
local t0 = mb.now()
for i = 1, M do refs[i] = mb.monitor(target) end
sync()
local t1 = mb.now()
for i = 1, M do mb.demonitor(refs[i]) end
sync()
local t2 = mb.now()
refs = nil

-- links: our side of the set (each kid holds one link)
local kids = {}
for i = 1, L do kids[i] = mb.spawn(idle) end
local t3 = mb.now()
for i = 1, L do mb.link(kids[i]) end
local t4 = mb.now()
for i = 1, L do mb.unlink(kids[i]) end
local t5 = mb.now()

print(string.format("%d monitors: set up in %.3f s, torn down in %.3f s", M, (t1 - t0) / 1000, (t2 - t1) / 1000))
print(string.format("%d links: set up in %.3f s, torn down in %.3f s", L, (t4 - t3) / 1000, (t5 - t4) / 1000))
metric("monitor_setup_ns", t1 - t0, M)
metric("monitor_teardown_ns", t2 - t1, M)
metric("link_setup_ns", t4 - t3, L)
metric("link_teardown_ns", t5 - t4, L)
mb.halt(0) -- ends every process
