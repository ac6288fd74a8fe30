-- spawn: 100,000 idle processes each report to the parent; metrics spawns_per_s,
-- rss_bytes_per_process and idle_memory_bytes.
local mb = require "moonbeam"

local N = 100000

local rss = require "bench.rss"   -- VmRSS of the whole node, in bytes

-- An idle process: reports once, then waits forever.
local function idle(parent)
  local mb = require "moonbeam"
  mb.send(parent, "up")
  mb.receive()
end

local self = mb.self()
local rss0 = rss()
local t0 = mb.now()
local pids = {}   -- kept, as the Erlang twin keeps its list
for i = 1, N do pids[i] = mb.spawn(idle, self) end
for _ = 1, N do assert(mb.receive() == "up") end
local secs = (mb.now() - t0) / 1000
local rss1 = rss()
assert(#pids == N)   -- the table lives until here

print(string.format("METRIC spawns_per_s %.1f spawns/s", N / secs))
print(string.format("METRIC rss_bytes_per_process %.1f bytes", (rss1 - rss0) / N))
-- what the runtime counts for one of them (a Lua process: mb_proc and its heap, exact)
print(string.format("METRIC idle_memory_bytes %d bytes", mb.info(pids[N]).memory))
mb.halt(0) -- ends every process
