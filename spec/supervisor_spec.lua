-- SPEC 3 (with notes/sup_decisions.md where SPEC is silent): supervisor.start_link, its spec and
-- its checks, the strategies, failed starts, and exit signals to a supervisor. Restart types,
-- intensity and period, failed restarts and escalation: supervisor_restart_spec.lua; the dynamic
-- API: supervisor_dynamic_spec.lua; shutdown, node shutdown and reports:
-- supervisor_shutdown_spec.lua; random kills and crash storms: supervisor_chaos_spec.lua.
-- Children are spec/fixtures/sup_worker.lua (gen_server) and sup_proc.lua (process), reporting
-- their starts and stops to the host; supervisors are started by a sup_client owner, their parent.
local H = require "helpers.node"
local G = require "helpers.gs"
local S = require "helpers.sup"

describe("supervisor.start_link", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("starts the children in order and returns the supervisor's pid", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a"), S.proc(node, "b"), S.worker(node, "c") } })
    local seq, msgs = S.events(node, 3)
    -- b is a plain process, started without an acknowledgement: its start report may come after
    -- c's init (which the supervisor begins once b is spawned; c, whose start it waits for, runs
    -- next on its thread)
    assert.equal("start a", seq[1])
    if seq[2] == "start c" then
      seq[2], seq[3] = seq[3], seq[2]
      msgs[2], msgs[3] = msgs[3], msgs[2]
    end
    assert.same({ "start a", "start b", "start c" }, seq)
    local kids = S.children(node, sup)
    assert.equal(3, #kids)
    local want = { { "a", "sup_worker" }, { "b", "sup_proc" }, { "c", "sup_worker" } }
    for i, c in ipairs(kids) do
      assert.same({ id = want[i][1], pid = msgs[i][2], type = "worker", module = want[i][2] }, c)
      assert.is_not_nil(node:info(c.pid))
    end
  end)

  it("is a native process: module 'supervisor', trapping exits, no Lua heap", function()
    local sup, owner = S.start_link(node, { children = { S.worker(node, "a") } })
    local info = node:info(sup)
    assert.equal("supervisor", info.module)
    assert.is_true(info.trap_exit)
    assert.is_true(info.memory < 4096, "memory " .. tostring(info.memory))
    -- linked to the caller of start_link and to its child
    assert.is_true(H.contains(info.links, owner))
    assert.is_true(H.contains(info.links, S.pid(node, sup, "a")))
  end)

  it("registers the supervisor under spec.name and each child under its child spec's name", function()
    local sup = S.start_link(node, { name = "sup_named", children = {
      S.worker(node, "a", nil, { name = "sup_a" }), S.proc(node, "b", nil, { name = "sup_b" }) } })
    assert.equal(sup, node:whereis("sup_named"))
    assert.equal(S.pid(node, sup, "a"), node:whereis("sup_a"))
    assert.equal(S.pid(node, sup, "b"), node:whereis("sup_b"))
    assert.equal(2, #S.value(node, "which_children", "sup_named"))
  end)

  it("gives args, any sendable value, to init or to the body as its single argument", function()
    local deep = { 1, { x = "two", [3] = false }, half = 0.5 }
    S.start_link(node, { children = {
      S.proc(node, "p", { arg = deep }),
      { id = "plain", module = "sup_worker", args = "just a string", name = "sup_plain" },
      { id = "none", module = "sup_worker", name = "sup_none" },
    } })
    local m = S.event(node, "start p")
    assert.same(deep, m[4])
    assert.equal("just a string", node:call("sup_plain", { "get" }))
    assert.is_nil(node:call("sup_none", { "get" }))
  end)

  it("uses the defaults: one_for_one, intensity 1, gen_server, permanent, worker", function()
    local sup, owner = S.start_link(node, { children = {
      { id = "a", module = "sup_worker", args = { report = node:self(), value = "a", trap = true } },
      S.worker(node, "b") } }, { trap = true })
    S.events(node, 2)
    local a0, b0 = S.pid(node, sup, "a"), S.pid(node, sup, "b")
    assert.equal("worker", S.child(node, sup, "a").type)
    assert.equal("a", node:call(a0, { "get" })) -- a gen_server
    -- permanent: restarted after a normal exit too; one_for_one: b is left alone
    node:cast(a0, { "stop", "normal" })
    assert.same({ "stop a", "start a" }, S.events(node, 2))
    local a1 = S.restarted(node, sup, "a", a0)
    assert.equal(b0, S.pid(node, sup, "b"))
    -- intensity 1: a second restart within the period is one too many
    local ref = S.monitor(node, owner, sup)
    S.kill(node, a1)
    assert.same({ "stop b" }, S.events(node, 1))
    assert.equal("shutdown", S.down(node, ref))
  end)

  it("ignores fields it does not know", function()
    local sup = S.start_link(node, { colour = "blue", children = { S.worker(node, "a", nil, { colour = "red" }) } })
    assert.same({ "a" }, S.ids(node, sup))
  end)
end)

-- A bad spec: each case is {what, spec fields or a function(good) returning a spec, path,
-- exact reason or nil}. `good` is a valid child spec; children[1] is always a valid child,
-- so that a child started before the check would show.
local function bad_specs(node)
  local function w(id, fields) return S.worker(node, id, nil, fields) end
  local function with(...) return { children = { w("ok1"), ... } } end
  return {
    { "an unknown strategy", { strategy = "simple_one_for_one", children = { w("ok1") } }, "strategy" },
    { "a strategy of the wrong type", { strategy = 3, children = { w("ok1") } }, "strategy" },
    { "a negative intensity", { intensity = -1, children = { w("ok1") } }, "intensity" },
    { "a fractional intensity", { intensity = 1.5, children = { w("ok1") } }, "intensity" },
    { "an intensity of the wrong type", { intensity = "3", children = { w("ok1") } }, "intensity" },
    { "a zero period", { period = 0, children = { w("ok1") } }, "period" },
    { "a negative period", { period = -2, children = { w("ok1") } }, "period" },
    { "a period of the wrong type", { period = "5", children = { w("ok1") } }, "period" },
    { "a name of the wrong type", { name = 42, children = { w("ok1") } }, "name" },
    { "children of the wrong type", { children = "abc" }, "children" },
    { "a child that is not a table", with("x"), "children[2]" },
    { "a child without an id", with({ module = "sup_worker" }), "children[2].id" },
    { "an id of the wrong type", with(w({ 1 })), "children[2].id" },
    { "a duplicate id", { children = { w("ok1"), w("x"), w("x") } }, "children[3].id",
      "invalid spec: children[3].id: duplicate id 'x'" },
    { "a child without a module", with({ id = "m" }), "children[2].module" },
    { "a module that is not found", with({ id = "m", module = "sup_nope" }), "children[2].module",
      "invalid spec: children[2].module: module 'sup_nope' not found" },
    { "a module of the wrong type", with({ id = "m", module = 5 }), "children[2].module" },
    { "an unknown kind", with(w("k", { kind = "thread" })), "children[2].kind" },
    { "an unknown restart", with(w("r", { restart = "sometimes" })), "children[2].restart" },
    { "a negative shutdown", with(w("s", { shutdown = -5 })), "children[2].shutdown" },
    { "an unknown shutdown word", with(w("s", { shutdown = "soon" })), "children[2].shutdown" },
    { "a shutdown of the wrong type", with(w("s", { shutdown = {} })), "children[2].shutdown" },
    { "an unknown type", with(w("t", { type = "manager" })), "children[2].type" },
    { "a supervisor child without a spec", with({ id = "sub", type = "supervisor" }), "children[2].spec" },
    { "a child name of the wrong type", with(w("n", { name = 7 })), "children[2].name" },
    { "a bad nested strategy", with(S.sub("sub", { strategy = "all_for_none", children = {} })),
      "children[2].spec.strategy" },
    { "a nested module that is not found", { children = { w("ok1"), w("ok2"),
      S.sub("sub", { children = { { id = "deep", module = "sup_nope" } } }) } },
      "children[3].spec.children[1].module",
      "invalid spec: children[3].spec.children[1].module: module 'sup_nope' not found" },
  }
end

describe("supervisor.start_link with a bad spec", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("returns nil and 'invalid spec: <path>: <what>', starting nothing", function()
    local owner = S.owner(node)
    for _, case in ipairs(bad_specs(node)) do
      local what, spec, path, exact = case[1], case[2], case[3], case[4]
      local r = S.ops(node, owner, { "start_link", spec })[1]
      local pid, reason = G.ok(r)
      assert.is_nil(pid, what .. ": start_link returned a pid")
      assert.equal("string", type(reason), what)
      local prefix = "invalid spec: " .. path .. ": "
      assert.equal(prefix, reason:sub(1, #prefix), what .. ": " .. reason)
      if exact then assert.equal(exact, reason, what) end
    end
    -- no child of any of them started, and no supervisor is left running: only the owner is
    assert.is_true(S.no_events(node))
    assert.is_true(S.settles(node, 1))
  end)

  it("returns nil and an 'invalid spec' reason for a spec that is not a table", function()
    local pid, reason = G.ok(S.try_start_link(node, "one_for_one"))
    assert.is_nil(pid)
    assert.equal("invalid spec", tostring(reason):sub(1, #"invalid spec"))
  end)
end)

-- Start a supervisor with `strategy` over trapping children `ids` (intensity 10); returns its pid
-- and the children's pids by id, once their starts were reported.
local function strategy_sup(node, strategy, ids, kinds)
  local children = {}
  for i, id in ipairs(ids) do
    children[i] = (kinds and kinds[id] == "process") and S.proc(node, id) or S.worker(node, id)
  end
  local sup = S.start_link(node, { strategy = strategy, intensity = 10, period = 60, children = children })
  S.events(node, #ids)
  local pids = {}
  for _, id in ipairs(ids) do pids[id] = S.pid(node, sup, id) end
  return sup, pids
end

describe("the strategies", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("one_for_one restarts only the child that failed", function()
    local sup, p = strategy_sup(node, "one_for_one", { "a", "b", "c" })
    S.kill(node, p.b)
    assert.same({ "start b" }, S.events(node, 1))
    local b1 = S.restarted(node, sup, "b", p.b)
    assert.same({ p.a, b1, p.c }, { S.pid(node, sup, "a"), S.pid(node, sup, "b"), S.pid(node, sup, "c") })
    assert.is_true(S.no_events(node))
  end)

  it("one_for_all stops every other child in reverse order, then restarts all in order", function()
    local sup, p = strategy_sup(node, "one_for_all", { "a", "b", "c" }, { b = "process" })
    S.kill(node, p.a)
    local seq, msgs = S.events(node, 5)
    -- b is a plain process, started without an acknowledgement: its start report may come after
    -- c's init (which the supervisor begins only once b is spawned)
    local last = { seq[4], seq[5] }
    table.sort(last)
    assert.same({ "stop c", "stop b", "start a" }, { seq[1], seq[2], seq[3] })
    assert.same({ "start b", "start c" }, last)
    assert.equal("shutdown", msgs[1][3])
    assert.equal("shutdown", msgs[2][3])
    for _, id in ipairs { "a", "b", "c" } do
      local now = S.pid(node, sup, id)
      assert.are_not.equal(p[id], now)
      assert.is_not_nil(node:info(now))
    end
    assert.is_true(S.no_events(node))
  end)

  it("rest_for_one stops the children after the failed one in reverse order and restarts them in order", function()
    local sup, p = strategy_sup(node, "rest_for_one", { "a", "b", "c", "d" })
    S.kill(node, p.b)
    assert.same({ "stop d", "stop c", "start b", "start c", "start d" }, S.events(node, 5))
    assert.equal(p.a, S.pid(node, sup, "a"))
    for _, id in ipairs { "b", "c", "d" } do assert.are_not.equal(p[id], S.pid(node, sup, id)) end
    -- the last child failing restarts only itself
    local d = S.pid(node, sup, "d")
    S.kill(node, d)
    assert.same({ "start d" }, S.events(node, 1))
    assert.is_true(S.no_events(node))
  end)
end)

-- init failures of child "c" (after a and b, before d) and the reason start_link gives. c's init
-- is gated: it decides (the verdict sent to it) only once b, a plain process started without an
-- acknowledgement, has reported that it traps exits; otherwise the shutdown could reach b first.
local start_failures = {
  { "returns stop", "no c", {}, function(reason)
    assert.same({ "failed_to_start_child", "c", "no c" }, reason)
  end },
  { "raises", "raise", { reason = "c boom" }, function(reason)
    assert.same({ "failed_to_start_child", "c" }, { reason[1], reason[2] })
    assert.equal("c boom", H.strip(reason[3]))
  end },
  { "returns garbage", "bad", {}, function(reason)
    assert.same({ "failed_to_start_child", "c" }, { reason[1], reason[2] })
    local prefix = "bad return from init: "
    assert.equal(prefix, tostring(reason[3]):sub(1, #prefix))
  end },
}

describe("supervisor.start_link when a child fails to start", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  for _, case in ipairs(start_failures) do
    it("returns nil, {failed_to_start_child, id, reason} when init " .. case[1] ..
      ", after stopping the started children in reverse order", function()
      local cfg = { init = "gate" }
      for k, v in pairs(case[3]) do cfg[k] = v end
      local owner = S.owner(node)
      node:send(owner, { "ops", { { "start_link", { children = {
        S.worker(node, "a"), S.proc(node, "b"), S.worker(node, "c", cfg), S.worker(node, "d") } } } } })
      -- a starts first; b's start and c's gate come in either order
      local started, msgs = S.events(node, 3)
      assert.equal("start a", started[1])
      local later = { started[2], started[3] }
      table.sort(later)
      assert.same({ "gate c", "start b" }, later)
      local gate = msgs[2][1] == "gate" and msgs[2] or msgs[3]
      node:send(gate[2], { "go", case[2] })
      local pid, reason = G.ok(G.results(node, owner)[1])
      assert.is_nil(pid)
      case[4](reason)
      assert.same({ "stop b", "stop a" }, S.events(node, 2))
      assert.is_true(S.no_events(node)) -- d never started
      assert.is_true(S.settles(node, 1))
      assert.is_not_nil(node:info(owner), "start_link's caller did not survive the failed start")
    end)
  end

  it("gives a nested supervisor's failure as the reason of that child", function()
    local r = S.try_start_link(node, { children = {
      S.worker(node, "a"),
      S.sub("sub", { children = { S.worker(node, "x", { init = "stop", reason = "no x" }) } }) } })
    local pid, reason = G.ok(r)
    assert.is_nil(pid)
    assert.same({ "failed_to_start_child", "sub", { "failed_to_start_child", "x", "no x" } }, reason)
    assert.same({ "start a", "start x", "stop a" }, S.events(node, 3))
    assert.is_true(S.settles(node, 1))
  end)
end)

describe("exit signals to a supervisor", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  local function abc(node_)
    return { children = { S.worker(node_, "a"), S.proc(node_, "b"), S.worker(node_, "c") } }
  end

  it("from its parent: every child is stopped in reverse order, then it exits with that reason", function()
    local sup, owner = S.start_link(node, abc(node))
    S.events(node, 3)
    local watcher = S.owner(node)
    local ref = S.monitor(node, watcher, sup)
    node:send(owner, { "exit", "parent gone" })
    local seq, msgs = S.events(node, 3)
    assert.same({ "stop c", "stop b", "stop a" }, seq)
    assert.same({ "shutdown", "shutdown", "shutdown" }, { msgs[1][3], msgs[2][3], msgs[3][3] })
    assert.equal("parent gone", S.down(node, ref))
    assert.is_true(S.settles(node, 1)) -- the watcher
  end)

  it("from a parent that ends normally: the children are stopped and it exits normal", function()
    local sup, owner = S.start_link(node, abc(node))
    S.events(node, 3)
    local watcher = S.owner(node)
    local ref = S.monitor(node, watcher, sup)
    node:send(owner, "return")
    assert.same({ "stop c", "stop b", "stop a" }, S.events(node, 3))
    assert.equal("normal", S.down(node, ref))
  end)

  it("from any other process: ignored, unless it is kill", function()
    local sup = S.start_link(node, abc(node), { trap = true })
    S.events(node, 3)
    local before = S.children(node, sup)
    for _, reason in ipairs { "boom", "shutdown", { "shutdown", "x" }, "normal" } do S.kill(node, sup, reason) end
    assert.same(before, S.children(node, sup))
    assert.is_true(S.no_events(node))
    local watcher = S.owner(node)
    local ref = S.monitor(node, watcher, sup)
    S.kill(node, sup, "kill")
    assert.equal("killed", S.down(node, ref))
    -- its children are linked to it: none outlives it
    assert.is_true(S.settles(node, 2)) -- owner and watcher
  end)
end)
