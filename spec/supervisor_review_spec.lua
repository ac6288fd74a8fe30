-- Supervisors under review: numbers at their limits, requests no binding makes, restarts that keep
-- failing, children that call their supervisor at the worst moments, and what a long life of
-- adding and removing children leaves behind. SPEC 3 and notes/sup_decisions.md decide; OTP where
-- both are silent. Children: spec/fixtures/sup_worker.lua, sup_proc.lua, sup_rude.lua.
local H = require "helpers.node"
local G = require "helpers.gs"
local S = require "helpers.sup"

local op = S.op

local function is_gate(m) return type(m) == "table" and m[1] == "gate" end

-- A sup_client running `op` once it has sent its call and blocks on it.
local function blocked(node, op)
  local client = G.spawn(node, "sup_client", node:self(), { op })
  assert(H.poll(node, function()
    local i = node:info(client)
    return i and i.status == "waiting"
  end), "the client never blocked")
  return client
end

describe("supervisor numbers at their limits", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("a period too long for nanoseconds (math.huge, 1e300) keeps every restart: it still gives up", function()
    for _, period in ipairs { math.huge, 1e300 } do
      local sup, owner = S.start_link(node, { intensity = 1, period = period, children = { S.worker(node, "a") } })
      local ref = S.monitor(node, owner, sup)
      S.events(node, 1)
      local a = S.pid(node, sup, "a")
      S.kill(node, a)                                   -- restart 1: within the intensity
      S.kill(node, S.restarted(node, sup, "a", a))      -- restart 2: one too many
      assert.equal("shutdown", S.down(node, ref))
      S.drain(node)
    end
  end)

  it("a shutdown of math.maxinteger ms waits for the child (not killed at once)", function()
    local sup = S.start_link(node, { children = {
      S.worker(node, "a", { terminate = "wait" }, { shutdown = math.maxinteger }) } })
    S.events(node, 1)
    local client = G.spawn(node, "sup_client", node:self(), { { "terminate_child", sup, "a" } })
    local stop = S.event(node, "stop a")              -- terminate runs, and waits for "go"
    assert.is_true(H.no_message(node, function(m) return m[1] == "gs_results" and m[2] == client end))
    node:send(stop[2], "go")
    assert.is_true(G.ok(G.results(node, client)[1]))
  end)

  it("no id is given after math.maxinteger: start_child refuses, the supervisor lives on", function()
    local sup = S.start_link(node, { children = {} })
    G.ok(op(node, "start_child", sup, S.worker(node, math.maxinteger)))
    local r = table.pack(G.ok(op(node, "start_child", sup, { module = "sup_worker", args = { value = "anon" } })))
    assert.same({ nil, "no free child id" }, { r[1], r[2] })
    assert.same({ math.maxinteger }, S.ids(node, sup))
    assert.is_truthy(G.ok(op(node, "start_child", sup, S.worker(node, -1))))
  end)
end)

-- A varint, as core/codec_format.h has it.
local function varint(v)
  local out = {}
  repeat
    local b = v % 128
    v = v // 128
    out[#out + 1] = string.char(v > 0 and b + 128 or b)
  until v == 0
  return table.concat(out)
end
local function t_str(s) return "\5" .. varint(#s) .. s end
local function t_int(i) return "\3" .. varint(i >= 0 and 2 * i or -2 * i - 1) end
local function t_map(pairs_)   -- {key1, value1, key2, value2, ...}, already encoded
  return "\8" .. varint(0) .. string.pack("=I4", #pairs_ // 2) .. table.concat(pairs_)
end

describe("requests no binding makes", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("an operation name with a NUL byte is a bad request", function()
    local sup = S.start_link(node, { children = {} })
    assert.same({ false, "bad request" }, G.ok(op(node, "gs_call", sup, { "which_children\0junk" })))
  end)

  it("a start_child request made by hand (a forged ref in its args) starts nothing", function()
    local sup = S.start_link(node, { children = {} })
    local host = tonumber(tostring(node:self()):match("<0%.(%d+)>"))
    local args = "\1" .. t_map { t_str "report", "\6" .. varint(host), t_str "label", t_str "forged",
                                 t_str "arg", "\7" .. varint(1) }   -- a ref no process was given
    local form = "\1" .. t_map { t_str "module", t_str "sup_proc", t_str "kind", t_int(1), t_str "restart", t_int(2),
                                 t_str "shutdown", t_int(5000), t_str "type", t_int(0), t_str "args", t_str(args) }
    local reply = G.ok(op(node, "gs_call", sup, { "start_child", form }))
    assert.same({ false, "bad request" }, reply)
    assert.equal(0, S.value(node, "count_children", sup).specs)
    assert.is_true(S.no_events(node))
  end)

  it("garbage calls, casts and messages are answered or dropped; the supervisor works on", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    S.events(node, 1)
    local bad = { "x", 1, {}, { 1 }, { "terminate_child" }, { "terminate_child", {} }, { "restart_child", 1.5 },
                  { "delete_child", true }, { "start_child" }, { "start_child", 5 }, { "start_child", "garbage" },
                  { "start_child", "\1\0" }, { "start_child", string.rep("x", 1 << 20) }, { string.rep("a", 100) } }
    local ops = {}
    for i, req in ipairs(bad) do ops[i] = { "gs_call", sup, req } end
    ops[#ops + 1] = { "send", sup, { "start_child", "x" } }
    ops[#ops + 1] = { "gs_cast", sup, { "which_children" } }
    for i, r in ipairs(S.calls(node, table.unpack(ops))) do
      local v = G.ok(r)
      if i <= #bad then assert.equal(false, v[1]) end
    end
    assert.same({ "a" }, S.ids(node, sup))
    assert.equal(1, S.value(node, "count_children", sup).active)
  end)
end)

-- Kill a, refuse its first restart, and return the gate of the second attempt (under way).
local function second_attempt(node, a)
  S.kill(node, a)
  node:send(S.event(node, "gate a")[2], { "go", "refused" })
  return S.event(node, "gate a")
end

describe("a restart that keeps failing", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("lets its parent's exit through between two attempts", function()
    local sup, owner, a = S.gated_sup(node, 100)
    local sup_ref, owner_ref = G.watch(node, sup), G.watch(node, owner)
    local gate = second_attempt(node, a)
    node:send(owner, { "exit", "boom" })
    assert.equal("boom", H.down(node, owner_ref))       -- its EXIT is in the supervisor's mailbox
    node:send(gate[2], { "go", "refused" })
    assert.equal("boom", H.down(node, sup_ref))
    assert.is_true(H.no_message(node, is_gate))
  end)

  it("is called off by terminate_child, made between two attempts", function()
    local sup, _, a = S.gated_sup(node, 100)
    local gate = second_attempt(node, a)
    local client = blocked(node, { "terminate_child", sup, "a" })
    node:send(gate[2], { "go", "refused" })
    assert.is_true(G.ok(G.results(node, client)[1]))
    assert.is_true(H.no_message(node, is_gate))
    assert.is_nil(S.pid(node, sup, "a"))
    local again = G.spawn(node, "sup_client", node:self(), { { "restart_child", sup, "a" } })
    local g = S.event(node, "gate a")
    node:send(g[2], { "go", "ok" })
    assert.equal(g[2], G.ok(G.results(node, again)[1]))
  end)

  it("answers restart_child and delete_child with nil, 'restarting' meanwhile, then restarts", function()
    local sup, _, a = S.gated_sup(node, 100)
    local gate = second_attempt(node, a)
    local r1 = blocked(node, { "restart_child", sup, "a" })
    local r2 = blocked(node, { "delete_child", sup, "a" })
    node:send(gate[2], { "go", "refused" })
    assert.same({ true, nil, "restarting", n = 3 }, G.results(node, r1)[1])
    assert.same({ true, nil, "restarting", n = 3 }, G.results(node, r2)[1])
    local g = S.event(node, "gate a")                   -- the third attempt, after the calls
    node:send(g[2], { "go", "ok" })
    assert.equal(g[2], S.restarted(node, sup, "a", a))
  end)
end)

describe("strategies with temporary and transient children", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  -- a (permanent), t (temporary), tr (transient), b (permanent): all sup_workers reporting.
  local function mixed(node, strategy)
    local sup = S.start_link(node, { strategy = strategy, intensity = 10, period = 60, children = {
      S.worker(node, "a"), S.worker(node, "t", nil, { restart = "temporary" }),
      S.worker(node, "tr", nil, { restart = "transient" }), S.worker(node, "b") } })
    S.events(node, 4)
    return sup
  end

  it("one_for_all: a temporary child is stopped and forgotten, a transient one that ended normally restarts", function()
    local sup = mixed(node, "one_for_all")
    local tr = S.pid(node, sup, "tr")
    node:cast(tr, { "stop", "normal" })                      -- no restart, its spec stays
    assert.same({ "stop tr" }, S.events(node, 1))
    assert.is_nil(S.changed(node, sup, "tr", tr).pid)
    S.kill(node, S.pid(node, sup, "b"))
    assert.same({ "stop t", "stop a", "start a", "start tr", "start b" }, S.events(node, 5))
    assert.same({ "a", "tr", "b" }, S.ids(node, sup))
    assert.is_true(S.no_events(node))
  end)

  it("one_for_all: a temporary child's crash restarts nothing and forgets it", function()
    local sup = mixed(node, "one_for_all")
    local t = S.pid(node, sup, "t")
    S.kill(node, t)
    assert.is_nil(S.changed(node, sup, "t", t))
    assert.same({ "a", "tr", "b" }, S.ids(node, sup))
    assert.is_true(S.no_events(node))
  end)

  it("rest_for_one: the later children, temporary one forgotten, stop last first and restart in order", function()
    local sup = mixed(node, "rest_for_one")
    S.kill(node, S.pid(node, sup, "a"))
    assert.same({ "stop b", "stop tr", "stop t", "start a", "start tr", "start b" }, S.events(node, 6))
    assert.same({ "a", "tr", "b" }, S.ids(node, sup))
    local tr = S.pid(node, sup, "tr")
    S.crash(node, tr, "boom")                                -- transient, abnormal: b restarts with it
    assert.same({ "stop tr", "stop b", "start tr", "start b" }, S.events(node, 4))
  end)
end)

describe("a supervisor in the middle of a job", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("takes gen_server.stop made meanwhile after the restart: the new child is stopped, stop returns true", function()
    local sup, _, a = S.gated_sup(node, 5)
    local ref = G.watch(node, sup)
    S.kill(node, a)
    local gate = S.event(node, "gate a")
    local client = blocked(node, { "gs_stop", sup })
    node:send(gate[2], { "go", "ok" })
    assert.is_true(G.ok(G.results(node, client)[1]))
    assert.equal("normal", H.down(node, ref))
    assert.equal(gate[2], S.event(node, "stop a")[2])   -- the restarted child, stopped after
  end)

  it("a child start over its 5 s leaves nothing that confuses the next jobs", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    S.events(node, 1)
    local client = G.spawn(node, "sup_client", node:self(),
      { { "start_child", sup, S.worker(node, "slow", { init = "sleep", ms = 6000 }) } })
    local r = table.pack(G.ok(G.results(node, client, 20000)[1]))
    assert.same({ nil, "timeout" }, { r[1], r[2] })
    local slow = S.event(node, "start slow")[2]
    assert.is_true(H.poll(node, function() return node:info(slow) == nil end))
    local b = G.ok(op(node, "start_child", sup, S.worker(node, "b")))
    assert.equal(b, S.event(node, "start b")[2])
    assert.is_true(G.ok(op(node, "terminate_child", sup, "b")))
    assert.same({ "stop b" }, S.events(node, 1))
    local a = S.pid(node, sup, "a")
    S.kill(node, a)
    S.restarted(node, sup, "a", a)
    local info = node:info(sup)
    assert.same({ 2, 0 }, { #info.links, #info.monitors })   -- its owner and a
    assert.same({ "a", "b" }, S.ids(node, sup))
  end)

  it("a child that unlinked itself: its end goes unseen (as in OTP), stopping it still works", function()
    local sup = S.start_link(node, { name = "rev_sup", children = {
      { id = "u", module = "sup_rude", args = { sup = "rev_sup", report = node:self(), unlink = true } } } })
    local u = G.wait(node, function(m) return type(m) == "table" and m[1] == "unlinked" end)[2]
    assert.equal(u, S.pid(node, sup, "u"))
    assert.is_true(G.ok(op(node, "terminate_child", sup, "u")))
    assert.is_nil(S.pid(node, sup, "u"))
    assert.is_nil(node:info(u))
  end)
end)

describe("a child calling its supervisor", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  local function rude(node, call_in, fields)
    local child = { id = "r", module = "sup_rude", args = { sup = "rev_sup", report = node:self(), call_in = call_in } }
    for k, v in pairs(fields or {}) do child[k] = v end
    return child
  end
  local function called(node, where)
    local m = G.wait(node, function(m) return type(m) == "table" and m[1] == "called" and m[3] == where end)
    return m[4], m[5]
  end

  it("from init: deadlock at once, and the child starts", function()
    local sup = S.start_link(node, { name = "rev_sup", children = { rude(node, "init") } })
    assert.same({ false, "call to rev_sup: deadlock" }, { called(node, "init") })
    assert.is_not_nil(S.pid(node, sup, "r"))
  end)

  it("from terminate, with shutdown infinity: deadlock at once, and the child stops", function()
    local sup = S.start_link(node, { name = "rev_sup", children = { rude(node, "terminate", { shutdown = "infinity" }) } })
    local client = G.spawn(node, "sup_client", node:self(), { { "terminate_child", sup, "r" } })
    assert.same({ false, "call to rev_sup: deadlock" }, { called(node, "terminate") })
    assert.is_true(G.ok(G.results(node, client)[1]))
    assert.is_nil(S.pid(node, sup, "r"))
  end)
end)

describe("a long life of adding and removing children", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("leaves no link, monitor or spec behind (starts, failed starts, stops, kills, deletes)", function()
    node:spawn(function(host)
      local mb = require "moonbeam"
      local supervisor = require "moonbeam.supervisor"
      local sup = assert(supervisor.start_link { intensity = 1000000, period = 1, children = {
        { id = "keep", module = "sup_worker", args = { value = "keep" } } } })
      for i = 1, 1000 do
        local w = { id = i, module = "sup_worker", args = { value = i }, shutdown = i % 2 == 0 and "brutal_kill" or 100 }
        local pid = assert(supervisor.start_child(sup, w))
        if i % 3 == 0 then mb.exit(pid, "kill") end   -- restarted, or stopped first: either way
        assert(supervisor.terminate_child(sup, i))
        assert(supervisor.delete_child(sup, i))
        assert(supervisor.start_child(sup, { module = "sup_worker", args = { init = "stop", reason = "no" } }) == nil)
      end
      local info = mb.info(sup)
      mb.send(host, { "left", #info.links, #info.monitors, supervisor.count_children(sup) })
    end, node:self())
    local r = H.wait_for(node, "left", 120000)
    assert.same({ "left", 2, 0, { specs = 1, active = 1, supervisors = 0, workers = 1 } }, r)
  end)
end)

describe("node shutdown, reviewed", function()
  local C = require "helpers.cli"
  before_each(function() S.require_supervisor() end)

  -- Start sup_tree.lua in `mode`, wait for "ready", send SIGTERM.
  local function started(mode)
    local h = C.start { "-P", C.modules, C.script "sup_tree.lua", mode }
    assert.is_true(C.wait_output(h, "ready\n"), "sup_tree.lua never printed ready")
    C.signal(h, "TERM")
    return h
  end

  it("stops a tree started after the signal too (before, the node waited for it for ever)", function()
    local h = started("again")
    local status = C.wait_exit(h, 15)
    local r = C.finish(h)
    assert.equal(0, status, r.stderr)
    -- The node stops the second tree as soon as it is up, so the script's "started again" and
    -- b's "stop b shutdown" come from two processes running at once, in either order.
    assert.same({ "start a", "ready", "stop a shutdown", "start b" }, { table.unpack(r.out, 1, 4) })
    local last = { r.out[5], r.out[6] }
    table.sort(last)
    assert.same({ "started again", "stop b shutdown" }, last)
    assert.equal(6, #r.out)
  end)

  it("a second signal kills at once a tree stuck in a terminate with shutdown infinity", function()
    local h = started("stuck")
    local seen = false   -- the first signal was handled: the tree is being stopped
    for _ = 1, 200 do
      seen = (C.slurp(h.err) or ""):find("stopping 1 supervision tree", 1, true) ~= nil
      if seen or C.slurp(h.statusfile) then break end
      os.execute("sleep 0.05")
    end
    assert.is_true(seen, "the first signal was not handled")
    C.signal(h, "TERM")
    local status = C.wait_exit(h, 15)
    local r = C.finish(h)
    assert.is_not_nil(status, "still running after the second signal")
    assert.same({ "start h", "ready" }, { r.out[1], r.out[2] })
  end)
end)
