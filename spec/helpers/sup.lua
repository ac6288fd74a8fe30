-- helpers/sup: what the supervisor specs share: nodes that check moonbeam.supervisor loads, child
-- specs for the sup_worker / sup_proc fixtures, supervisors started by a long-lived owner (their
-- parent), supervisor calls run from sup_client processes, and the children's reports read in
-- arrival order. Built on helpers/gs (spec processes whose crash fails the spec at once).
local H = require "helpers.node"
local G = require "helpers.gs"
local S = {}

-- Raises at once, with the loader's message, when a process on `node` cannot require
-- moonbeam.supervisor: every spec fails fast instead of waiting out its timeouts.
local function probe(node)
  node:spawn(function(host)
    local mb = require "moonbeam"
    local ok, err = pcall(require, "moonbeam.supervisor")
    mb.send(host, { "sup_probe", ok, (not ok) and tostring(err) or nil })
  end, node:self())
  local m = node:receive(H.matcher("sup_probe"), H.timeout)
  if not (m and m[2]) then
    return "moonbeam.supervisor cannot be required: " .. tostring(m and m[3] or "no answer")
  end
end

-- A node as G.start makes it (gen_server checked), with moonbeam.supervisor checked too.
function S.start(opts)
  local node = G.start(opts)
  local err = probe(node)
  if err then
    node:stop()
    error(err, 2)
  end
  return node
end

S.stop = G.stop

-- S.start, then wait until the probe processes have ended: a spec starts with no process running.
function S.node(opts)
  local node = S.start(opts)
  assert(S.settles(node, 0), "the node's probe processes did not end")
  return node
end

-- For specs that run the moonbeam binary: raises unless moonbeam.supervisor loads.
function S.require_supervisor()
  S.stop(S.start())
end

local function merge(into, from)
  for k, v in pairs(from or {}) do into[k] = v end
  return into
end

-- A kind = "gen_server" child spec: sup_worker with id `id`, reporting to the host under the
-- label `id`, trapping exits (so terminate runs when it is stopped); cfg adds to its args,
-- fields to the child spec.
function S.worker(node, id, cfg, fields)
  local args = merge({ report = node:self(), value = id, trap = true }, cfg)
  return merge({ id = id, module = "sup_worker", args = args }, fields)
end

-- A kind = "process" child spec: sup_proc labelled `id`, trapping exits, reporting to the host.
function S.proc(node, id, cfg, fields)
  local args = merge({ report = node:self(), label = id, trap = true }, cfg)
  return merge({ id = id, module = "sup_proc", kind = "process", args = args }, fields)
end

-- A type = "supervisor" child spec.
function S.sub(id, spec, fields)
  return merge({ id = id, type = "supervisor", spec = spec }, fields)
end

-- A sup_client that stays (serving S.ops); opts.trap: it traps exits and forwards its EXIT
-- messages to the host. Not watched like G.spawn's processes: specs end owners on purpose.
function S.owner(node, opts)
  return node:spawn("sup_client", node:self(), nil, { stay = true, trap = opts and opts.trap })
end

-- Run ops in the staying client `client`; returns its results (see spec/fixtures/sup_client.lua).
function S.ops(node, client, ...)
  node:send(client, { "ops", { ... } })
  return G.results(node, client)
end

-- Run ops in a new sup_client that ends when they are done; returns the results and its pid.
function S.calls(node, ...)
  local client = G.spawn(node, "sup_client", node:self(), { ... })
  return G.results(node, client), client
end

-- One op run in a new sup_client: the table.pack of its pcall.
function S.op(node, ...)
  return S.calls(node, { ... })[1]
end

-- Start a supervisor from a new owner (trapping exits if opts.trap); returns its pid and the
-- owner's. Fails the spec when start_link does not return a pid.
function S.start_link(node, spec, opts)
  local owner = S.owner(node, opts)
  local r = S.ops(node, owner, { "start_link", spec })
  local sup, reason = G.ok(r[1])
  assert(sup, "supervisor.start_link failed: " .. tostring(reason))
  return sup, owner
end

-- Start a supervisor (intensity as given, period 60) from a trapping owner; its one child "a" has
-- a gated init (sup_worker cfg.init = "gate", cfg adds to its args), whose first start is let
-- through. Returns the supervisor, its owner and a's pid.
function S.gated_sup(node, intensity, cfg)
  local owner = S.owner(node, { trap = true })
  node:send(owner, { "ops", { { "start_link", { intensity = intensity, period = 60, children = {
    S.worker(node, "a", merge({ init = "gate" }, cfg)) } } } } })
  local gate = S.event(node, "gate a")
  node:send(gate[2], { "go", "ok" })
  local sup = G.ok(G.results(node, owner)[1])
  assert(sup, "start_link failed")
  assert(S.pid(node, sup, "a") == gate[2], "a is not the child that passed the gate")
  return sup, owner, gate[2]
end

-- start_link's results from a new owner: pid or nil, reason; and the owner.
function S.try_start_link(node, spec, opts)
  local owner = S.owner(node, opts)
  local r = S.ops(node, owner, { "start_link", spec })
  return r[1], owner
end

-- The values of one successful op run in a new sup_client, e.g. S.value(node, "count_children", sup).
function S.value(node, ...)
  return G.ok(S.calls(node, { ... })[1])
end

-- which_children's entries, each cut down to SPEC's fields {id=, pid=, type=, module=}.
function S.children(node, sup)
  local out = {}
  for i, c in ipairs(S.value(node, "which_children", sup)) do
    out[i] = { id = c.id, pid = c.pid, type = c.type, module = c.module }
  end
  return out
end

-- The which_children entry of child `id` (nil if it has none).
function S.child(node, sup, id)
  for _, c in ipairs(S.children(node, sup)) do
    if c.id == id then return c end
  end
end

-- The ids of which_children, in its order.
function S.ids(node, sup)
  local ids = {}
  for i, c in ipairs(S.children(node, sup)) do ids[i] = c.id end
  return ids
end

-- The pid of child `id` (fails the spec if it has no entry).
function S.pid(node, sup, id)
  local c = S.child(node, sup, id)
  assert(c, "no child '" .. tostring(id) .. "' in which_children")
  return c.pid
end

-- Poll which_children until child `id`'s entry no longer holds `old` (the supervisor has handled
-- its exit); returns the entry then (nil once it has none). Fails the spec if that never happens.
function S.changed(node, sup, id, old)
  local seen, entry
  H.poll(node, function()
    entry = S.child(node, sup, id)
    seen = entry == nil or entry.pid ~= old
    return seen
  end)
  assert(seen, "child '" .. tostring(id) .. "' still has pid " .. tostring(old))
  return entry
end

-- Poll until child `id` runs under a pid other than `old`; returns the new pid.
function S.restarted(node, sup, id, old)
  local new
  H.poll(node, function()
    local c = S.child(node, sup, id)
    new = c and c.pid ~= nil and c.pid ~= old and c.pid
    return new
  end)
  assert(new, "child '" .. tostring(id) .. "' was not restarted")
  return new
end

-- Poll until `name` is registered to a pid other than `old`; returns it.
function S.reregistered(node, name, old)
  local new = H.poll(node, function()
    local p = node:whereis(name)
    return p ~= nil and p ~= old and p
  end)
  assert(new, "'" .. name .. "' was not registered again")
  return new
end

-- The children's reports, each rendered as "start ID" (init of a sup_worker, a sup_proc
-- starting), "stop ID" (terminate, a sup_proc's trapped exit signal) or "gate ID".
local render = {
  init = function(m) return "start " .. tostring(m[3]) end,
  proc_start = function(m) return "start " .. tostring(m[3]) end,
  gate = function(m) return "gate " .. tostring(m[3]) end,
  terminate = function(m) return "stop " .. tostring(m[4]) end,
  proc_exit = function(m) return "stop " .. tostring(m[4]) end,
}
S.render = render

local function is_event(m) return type(m) == "table" and render[m[1]] ~= nil end
S.is_event = is_event

-- The next `n` children's reports in arrival order, rendered, and the messages themselves.
function S.events(node, n)
  local out, msgs = {}, {}
  for i = 1, n do
    local m = G.wait(node, is_event)
    out[i], msgs[i] = render[m[1]](m), m
  end
  return out, msgs
end

-- The next report rendered as `want` ("start a"); returns its message. Reports in between are
-- skipped.
function S.event(node, want, timeout)
  return G.wait(node, function(m) return is_event(m) and render[m[1]](m) == want end, timeout)
end

-- true if no child report arrives within H.quiet (used after a synchronising message).
function S.no_events(node, window)
  return H.no_message(node, is_event, window)
end

-- Throw away every child report already queued in the host's mailbox.
function S.drain(node)
  while node:receive(is_event, 0) do end
end

-- Crash a sup_worker child (a pid or a name) with `reason`, through a cast.
function S.crash(node, server, reason)
  node:cast(server, { "crash", reason })
end

-- Monitor `pid` from the staying client `owner` (which forwards the DOWN to the host); returns
-- the ref. S.down(node, ref) then waits for the reason `pid` ended with.
function S.monitor(node, owner, pid)
  return G.ok(S.ops(node, owner, { "monitor", pid })[1])
end
S.down = H.down

-- Send `pid` an exit signal (default "kill") from a short-lived client; returns once it was sent.
function S.kill(node, pid, reason)
  G.ok(S.calls(node, { "exit", pid, reason or "kill" })[1])
end

-- A matcher for the EXIT message {"EXIT", pid, reason} (forwarded by a trapping owner or puppet).
function S.exit_from(pid)
  return function(m) return type(m) == "table" and m[1] == "EXIT" and m[2] == pid end
end

-- Poll until the node runs exactly `n` processes; returns whether it did.
function S.settles(node, n)
  return H.poll(node, function() return #node:processes() == n end) and true or false
end

return S
