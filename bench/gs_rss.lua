-- gs_rss: growth of the node's VmRSS over many gen_server calls to one counter server
-- (bench/gs_counter.lua); metrics rss_growth_bytes, rss_bytes_per_call.
-- Size: moonbeam bench/gs_rss.lua [CALLS] (default 2,000,000; issue 14's figure is 10,000,000).
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"

local N = math.tointeger(tonumber((...))) or 2000000
local WARMUP = 10000

local rss = require "bench.rss"   -- VmRSS of the whole node, in bytes

local function calls(server, n)
  for _ = 1, n do gen_server.call(server, "inc") end
end

local server = assert(gen_server.start("bench.gs_counter", 0))
calls(server, WARMUP)
local rss0 = rss()
calls(server, N)
local rss1 = rss()

print(string.format("VmRSS %d kB after %d calls, %d kB after %d more", rss0 // 1024, WARMUP, rss1 // 1024, N))
print(string.format("METRIC rss_growth_bytes %.1f bytes", rss1 - rss0))
print(string.format("METRIC rss_bytes_per_call %.3f bytes", (rss1 - rss0) / N))
mb.halt(0) -- ends every process
