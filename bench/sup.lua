-- sup: supervisors restarting, starting and stopping counter gen_servers (bench/gs_counter.lua);
-- metrics restarts1k_per_s, restarts10k_per_s, start_child100k_per_s, shutdown100k_per_s.
local mb = require "moonbeam"
local supervisor = require "moonbeam.supervisor"

local RESTARTS_SHORT, RESTARTS_LONG, CHILDREN = 1000, 10000, 100000
local HUGE = 1000000000 -- restart intensity the benchmark never reaches

local function metric(name, n, ms, unit)
  print(string.format("METRIC %s %.1f %s", name, n / (ms / 1000), unit))
end

-- Ends a supervisor as its parent would and waits until it is gone (its children are gone before it).
local function stop(sup)
  mb.unlink(sup)
  local ref = mb.monitor(sup)
  mb.exit(sup, "shutdown")
  mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end)
end

-- The pid which_children names for the only child once it differs from old (the supervisor handles
-- one thing at a time, so its answer follows the restart once it has seen the child's exit).
local function new_child(sup, old)
  local asks = 0
  while true do
    local pid = supervisor.which_children(sup)[1].pid
    asks = asks + 1
    if pid and pid ~= old then return pid, asks end
  end
end

-- n restarts of one permanent counter registered as "counter", under a fresh one_for_one supervisor.
local function restarts(name, n)
  local sup = assert(supervisor.start_link {
    strategy = "one_for_one", intensity = HUGE, period = 1,
    children = { { id = "c", module = "bench.gs_counter", args = 0, name = "counter" } },
  })
  local pid, asks = mb.whereis("counter"), 0
  local t0 = mb.now()
  for _ = 1, n do
    mb.exit(pid, "kill")
    local k
    pid, k = new_child(sup, pid)
    asks = asks + k
  end
  local ms = mb.now() - t0
  assert(mb.whereis("counter") == pid, "the name did not follow the restarts")
  print(string.format("%s: %d which_children calls for %d restarts", name, asks, n))
  metric(name, n, ms, "restarts/s")
  stop(sup)
end

-- n counters added by start_child to an empty one_for_one supervisor, then all stopped by ending it.
local function children(n)
  local sup = assert(supervisor.start_link { strategy = "one_for_one", intensity = HUGE, period = 1, children = {} })
  local first, last
  local t0 = mb.now()
  for _ = 1, n do
    last = assert(supervisor.start_child(sup, { module = "bench.gs_counter", args = 0 }))
    first = first or last
  end
  metric("start_child100k_per_s", n, mb.now() - t0, "children/s")
  assert(supervisor.count_children(sup).active == n, "children missing")
  t0 = mb.now()
  stop(sup) -- children stop in reverse order
  metric("shutdown100k_per_s", n, mb.now() - t0, "children/s")
  assert(not mb.is_alive(first) and not mb.is_alive(last), "a child outlived its supervisor")
end

mb.log_level("none") -- no supervisor report per restart: the machinery, not the log
restarts("restarts1k_per_s", RESTARTS_SHORT)
restarts("restarts10k_per_s", RESTARTS_LONG)
children(CHILDREN)
mb.halt(0) -- ends every process
