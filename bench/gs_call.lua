-- gs_call: gen_server calls and casts to one counter server (bench/gs_counter.lua);
-- metrics call1_per_s, call100_per_s, cast_then_call_per_s.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"

local CALLS, CLIENTS, CASTS, WARMUP = 500000, 100, 1000000, 10000

local function metric(name, n, ms, unit)
  print(string.format("METRIC %s %.1f %s", name, n / (ms / 1000), unit))
end

local function calls(server, n)
  for _ = 1, n do gen_server.call(server, "inc") end
end

-- A client: says it is ready, waits for "go", makes its calls, reports "done".
local function client(server, parent, n)
  local mb = require "moonbeam"
  local gen_server = require "moonbeam.gen_server"
  mb.send(parent, "ready")
  mb.receive()
  for _ = 1, n do gen_server.call(server, "inc") end
  mb.send(parent, "done")
end

local self = mb.self()
local server = assert(gen_server.start("bench.gs_counter", 0))

-- one client: CALLS calls in a row
calls(server, WARMUP)
local t0 = mb.now()
calls(server, CALLS)
metric("call1_per_s", CALLS, mb.now() - t0, "calls/s")

-- CLIENTS clients at once, CALLS / CLIENTS calls each; timed from the first "go" to the last "done"
local clients = {}
for i = 1, CLIENTS do clients[i] = mb.spawn(client, server, self, CALLS // CLIENTS) end
for _ = 1, CLIENTS do assert(mb.receive() == "ready") end
t0 = mb.now()
for i = 1, CLIENTS do mb.send(clients[i], "go") end
for _ = 1, CLIENTS do assert(mb.receive() == "done") end
metric("call100_per_s", CALLS, mb.now() - t0, "calls/s")

-- CASTS casts, then one call: its reply comes after the server has handled every cast
local before = gen_server.call(server, "inc")
t0 = mb.now()
for _ = 1, CASTS do gen_server.cast(server, "inc") end
local after = gen_server.call(server, "inc")
metric("cast_then_call_per_s", CASTS, mb.now() - t0, "casts/s")
assert(after == before + CASTS + 1, "the server missed casts")
mb.halt(0) -- ends every process
