-- pingpong: round trips between two processes of a small table, a 100-integer array and a 20-key map; metrics *_rt_per_s.
local mb = require "moonbeam"

local SMALL, PAYLOAD, WARMUP = 1000000, 500000, 1000

-- The echo process sends every message it receives back to the parent.
local function echo(parent)
  local mb = require "moonbeam"
  while true do mb.send(parent, mb.receive()) end
end

local self = mb.self()
local echo_pid = mb.spawn(echo, self)

local list = {}
for i = 1, 100 do list[i] = i end
local map = {}
for i = 1, 20 do map[string.format("key%02d", i)] = string.format("value%02d", i) end

local function rounds(n, make_msg)
  for i = n, 1, -1 do
    mb.send(echo_pid, make_msg(i))
    mb.receive()
  end
end

local function bench(name, n, make_msg)
  local t0 = mb.now()
  rounds(n, make_msg)
  local secs = (mb.now() - t0) / 1000
  print(string.format("METRIC %s %.1f rt/s", name, n / secs))
end

local function small(i) return {"ping", self, i} end
rounds(WARMUP, small)
bench("small_rt_per_s", SMALL, small)
bench("list100_rt_per_s", PAYLOAD, function() return list end)
bench("map20_rt_per_s", PAYLOAD, function() return map end)
mb.halt(0)
