-- SPEC 3's dynamic API (with notes/sup_decisions.md where SPEC is silent): start_child,
-- terminate_child, restart_child, delete_child, which_children and count_children, their return
-- shapes and error returns, supervisors named by pid or registered name, and calls to a
-- supervisor that is not there. Start, strategies and restarts: supervisor_spec.lua.
local H = require "helpers.node"
local G = require "helpers.gs"
local S = require "helpers.sup"


-- One op run in a new sup_client: the table.pack of its pcall (see spec/fixtures/sup_client.lua).
local function op(node, ...)
  return S.calls(node, { ... })[1]
end

-- The values an op returned, as a table with n (fails the spec if it raised).
local function values(r)
  return table.pack(G.ok(r))
end

describe("supervisor.start_child", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("starts a child after the others and returns its pid", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    S.events(node, 1)
    local b = G.ok(op(node, "start_child", sup, S.worker(node, "b")))
    assert.equal(b, S.event(node, "start b")[2])
    local p = G.ok(op(node, "start_child", sup, S.proc(node, "p", nil, { name = "sup_p" })))
    assert.equal(p, S.event(node, "start p")[2])
    assert.equal(p, node:whereis("sup_p"))
    local kids = S.children(node, sup)
    assert.same({ "a", "b", "p" }, S.ids(node, sup))
    assert.same({ id = "b", pid = b, type = "worker", module = "sup_worker" }, kids[2])
    assert.same({ id = "p", pid = p, type = "worker", module = "sup_proc" }, kids[3])
  end)

  it("starts, finds and stops children of a supervisor started with none", function()
    local sup = S.start_link(node, { children = {} })   -- a crash in the core before the fix
    local a = G.ok(op(node, "start_child", sup, S.worker(node, "a")))
    assert.equal(a, S.event(node, "start a")[2])
    assert.same({ "a" }, S.ids(node, sup))
    assert.same({ true }, { G.ok(op(node, "terminate_child", sup, "a")) })
    assert.same({ true }, { G.ok(op(node, "delete_child", sup, "a")) })
    assert.same({}, S.ids(node, sup))
  end)

  it("supervises the child it started like the others", function()
    local sup = S.start_link(node, { strategy = "rest_for_one", intensity = 5, children = { S.worker(node, "a") } })
    S.events(node, 1)
    local b = G.ok(op(node, "start_child", sup, S.worker(node, "b")))
    S.events(node, 1)
    S.kill(node, S.pid(node, sup, "a"))
    assert.same({ "stop b", "start a", "start b" }, S.events(node, 3))
    assert.are_not.equal(b, S.pid(node, sup, "b"))
  end)

  it("starts a supervisor child with its own children", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    S.events(node, 1)
    local sub = G.ok(op(node, "start_child", sup, S.sub("sub", { children = { S.worker(node, "x"), S.worker(node, "y") } })))
    assert.same({ "start x", "start y" }, S.events(node, 2))
    assert.same({ id = "sub", pid = sub, type = "supervisor", module = "supervisor" }, S.child(node, sup, "sub"))
    assert.equal("supervisor", node:info(sub).module)
    assert.same({ "x", "y" }, S.ids(node, sub))
  end)

  it("gives a child without an id the next integer id, never reusing one", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    local function anon(label) return { module = "sup_worker", args = { report = node:self(), value = label } } end
    local one = G.ok(op(node, "start_child", sup, anon("first")))
    local two = G.ok(op(node, "start_child", sup, anon("second")))
    assert.same({ "a", 1, 2 }, S.ids(node, sup))
    assert.same({ one, two }, { S.pid(node, sup, 1), S.pid(node, sup, 2) })
    assert.is_true(G.ok(op(node, "terminate_child", sup, 2)))
    assert.is_true(G.ok(op(node, "delete_child", sup, 2)))
    G.ok(op(node, "start_child", sup, anon("third")))
    assert.same({ "a", 1, 3 }, S.ids(node, sup))
  end)

  it("returns nil, 'already_started', pid for the id of a running child", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    S.events(node, 1)
    local a = S.pid(node, sup, "a")
    local r = values(op(node, "start_child", sup, S.worker(node, "a")))
    assert.same({ nil, "already_started", a }, { r[1], r[2], r[3] })
    assert.is_true(S.no_events(node))
    assert.same({ "a" }, S.ids(node, sup))
  end)

  it("returns nil, 'already_present' for the id of a stopped child", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    assert.is_true(G.ok(op(node, "terminate_child", sup, "a")))
    S.drain(node)
    local r = values(op(node, "start_child", sup, S.worker(node, "a")))
    assert.same({ nil, "already_present" }, { r[1], r[2] })
    assert.is_true(S.no_events(node))
  end)

  it("returns nil and the child's start failure, keeping nothing of it and counting no restart", function()
    local sup = S.start_link(node, { intensity = 0, children = { S.worker(node, "a") } })
    S.events(node, 1)
    local r = values(op(node, "start_child", sup, S.worker(node, "b", { init = "stop", reason = "no b" })))
    assert.same({ nil, "no b" }, { r[1], r[2] })
    r = values(op(node, "start_child", sup, S.worker(node, "c", { init = "raise", reason = "c boom" })))
    assert.is_nil(r[1])
    assert.equal("c boom", H.strip(r[2]))
    r = values(op(node, "start_child", sup, S.worker(node, "d", { init = "bad" })))
    assert.is_nil(r[1])
    assert.equal("bad return from init: ", tostring(r[2]):sub(1, #"bad return from init: "))
    assert.is_not_nil(node:info(sup))
    assert.same({ "a" }, S.ids(node, sup))
    assert.same({ specs = 1, active = 1, supervisors = 0, workers = 1 }, S.value(node, "count_children", sup))
  end)

  it("refuses a bad child spec with nil, 'invalid child spec: <path>: <what>', starting nothing", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    S.events(node, 1)
    local function w(id, fields) return S.worker(node, id, nil, fields) end
    local cases = {
      { w("r", { restart = "sometimes" }), "restart" },
      { w("k", { kind = "thread" }), "kind" },
      { w("s", { shutdown = -1 }), "shutdown" },
      { w("s", { shutdown = "later" }), "shutdown" },
      { w("t", { type = "manager" }), "type" },
      { { id = "sub", type = "supervisor" }, "spec" },
      { S.sub("sub", { strategy = "none_for_one", children = {} }), "spec.strategy" },
      { S.sub("sub", { children = { { id = "deep", module = "sup_nope" } } }), "spec.children[1].module" },
      { w({ "table id" }), "id" },
      { w("n", { name = 9 }), "name" },
      { { id = "m" }, "module" },
      { { id = "m", module = 5 }, "module" },
      { { id = "m", module = "sup_nope" }, "module", "invalid child spec: module: module 'sup_nope' not found" },
    }
    for _, case in ipairs(cases) do
      local r = values(op(node, "start_child", sup, case[1]))
      local prefix = "invalid child spec: " .. case[2] .. ": "
      assert.is_nil(r[1], case[2])
      assert.equal(prefix, tostring(r[2]):sub(1, #prefix), tostring(r[2]))
      if case[3] then assert.equal(case[3], r[2]) end
    end
    local r = values(op(node, "start_child", sup, "not a table"))
    assert.is_nil(r[1])
    assert.equal("invalid child spec", tostring(r[2]):sub(1, #"invalid child spec"))
    assert.same({ "a" }, S.ids(node, sup))
    assert.is_true(S.no_events(node))
  end)
end)

describe("supervisor.terminate_child", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("stops a running child and keeps its spec, without restarting it", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a"), S.worker(node, "b") } })
    S.events(node, 2)
    local a = S.pid(node, sup, "a")
    -- the child is gone by the time terminate_child returns
    local r = S.calls(node, { "terminate_child", sup, "a" }, { "is_alive", a })
    assert.is_true(G.ok(r[1]))
    assert.is_false(G.ok(r[2]))
    local seq, msgs = S.events(node, 1)
    assert.same({ "stop a" }, seq)
    assert.equal("shutdown", msgs[1][3])
    assert.same({ id = "a", type = "worker", module = "sup_worker" }, S.child(node, sup, "a")) -- pid nil
    assert.same({ specs = 2, active = 1, supervisors = 0, workers = 2 }, S.value(node, "count_children", sup))
    assert.is_true(S.no_events(node))
  end)

  it("returns true for a child that is already stopped and nil, 'not_found' for an unknown id", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    local r = S.calls(node, { "terminate_child", sup, "a" }, { "terminate_child", sup, "a" },
      { "terminate_child", sup, "nobody" })
    assert.is_true(G.ok(r[1]))
    assert.is_true(G.ok(r[2]))
    local nf = values(r[3])
    assert.same({ nil, "not_found" }, { nf[1], nf[2] })
  end)

  it("removes the spec of a temporary child", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a"), S.worker(node, "x", nil, { restart = "temporary" }) } })
    assert.is_true(G.ok(op(node, "terminate_child", sup, "x")))
    assert.same({ "a" }, S.ids(node, sup))
    local r = values(op(node, "restart_child", sup, "x"))
    assert.same({ nil, "not_found" }, { r[1], r[2] })
  end)

  it("stops a supervisor child's children in reverse order before it", function()
    local sup, owner = S.start_link(node, { children = {
      S.worker(node, "a"), S.sub("sub", { children = { S.worker(node, "x"), S.proc(node, "y"), S.worker(node, "z") } }) } })
    S.events(node, 4)
    local sub = S.pid(node, sup, "sub")
    local ref = S.monitor(node, owner, sub)
    assert.is_true(G.ok(op(node, "terminate_child", sup, "sub")))
    assert.same({ "stop z", "stop y", "stop x" }, S.events(node, 3))
    assert.equal("shutdown", S.down(node, ref))
    assert.is_nil(S.child(node, sup, "sub").pid)
    assert.same({ specs = 2, active = 1, supervisors = 1, workers = 1 }, S.value(node, "count_children", sup))
  end)
end)

describe("supervisor.restart_child", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("starts a stopped child again under a new pid, in its place", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a"), S.worker(node, "b") } })
    S.events(node, 2)
    local a = S.pid(node, sup, "a")
    G.ok(op(node, "terminate_child", sup, "a"))
    local new = G.ok(op(node, "restart_child", sup, "a"))
    assert.same({ "stop a", "start a" }, S.events(node, 2))
    assert.are_not.equal(a, new)
    assert.same({ "a", "b" }, S.ids(node, sup))
    assert.equal(new, S.pid(node, sup, "a"))
  end)

  it("returns nil, 'running' for a running child and nil, 'not_found' for an unknown id", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    local r = S.calls(node, { "restart_child", sup, "a" }, { "restart_child", sup, "nobody" })
    local running, nf = values(r[1]), values(r[2])
    assert.same({ nil, "running" }, { running[1], running[2] })
    assert.same({ nil, "not_found" }, { nf[1], nf[2] })
  end)

  it("returns nil and the start failure when the child does not start, leaving it stopped", function()
    local owner = S.owner(node)
    node:send(owner, { "ops", { { "start_link", { children = {
      S.worker(node, "a", { init = "gate" }) } } } } })
    node:send(S.event(node, "gate a")[2], { "go", "ok" })
    local sup = G.ok(G.results(node, owner)[1])
    G.ok(op(node, "terminate_child", sup, "a"))
    local client = G.spawn(node, "sup_client", node:self(), { { "restart_child", sup, "a" } })
    node:send(S.event(node, "gate a")[2], { "go", "refused" })
    local r = values(G.results(node, client)[1])
    assert.same({ nil, "refused" }, { r[1], r[2] })
    assert.same({ id = "a", type = "worker", module = "sup_worker" }, S.child(node, sup, "a"))
  end)

  it("restarts a supervisor child with all its children", function()
    local sup = S.start_link(node, { children = {
      S.sub("sub", { children = { S.worker(node, "x"), S.worker(node, "y") } }) } })
    S.events(node, 2)
    G.ok(op(node, "terminate_child", sup, "sub"))
    assert.same({ "stop y", "stop x" }, S.events(node, 2))
    local sub = G.ok(op(node, "restart_child", sup, "sub"))
    assert.same({ "start x", "start y" }, S.events(node, 2))
    assert.equal(sub, S.pid(node, sup, "sub"))
    assert.same({ "x", "y" }, S.ids(node, sub))
  end)
end)

describe("supervisor.delete_child", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("removes a stopped child's spec, freeing its id", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a"), S.worker(node, "b") } })
    local r = S.calls(node, { "terminate_child", sup, "a" }, { "delete_child", sup, "a" },
      { "restart_child", sup, "a" }, { "delete_child", sup, "a" })
    assert.is_true(G.ok(r[2]))
    local gone, again = values(r[3]), values(r[4])
    assert.same({ nil, "not_found" }, { gone[1], gone[2] })
    assert.same({ nil, "not_found" }, { again[1], again[2] })
    assert.same({ "b" }, S.ids(node, sup))
    assert.same({ specs = 1, active = 1, supervisors = 0, workers = 1 }, S.value(node, "count_children", sup))
    G.ok(op(node, "start_child", sup, S.worker(node, "a")))
    assert.same({ "b", "a" }, S.ids(node, sup))
  end)

  it("returns nil, 'running' for a running child and nil, 'not_found' for an unknown id", function()
    local sup = S.start_link(node, { children = { S.worker(node, "a") } })
    local r = S.calls(node, { "delete_child", sup, "a" }, { "delete_child", sup, "nobody" })
    local running, nf = values(r[1]), values(r[2])
    assert.same({ nil, "running" }, { running[1], running[2] })
    assert.same({ nil, "not_found" }, { nf[1], nf[2] })
    assert.is_not_nil(node:info(S.pid(node, sup, "a")))
  end)
end)

describe("supervisor.which_children and count_children", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("list every child in start order, with a nil pid for a stopped one, and count them", function()
    local sup = S.start_link(node, { children = {
      S.worker(node, "a"), S.sub("sub", { children = { S.worker(node, "x") } }), S.proc(node, 7),
      S.worker(node, "t", nil, { restart = "transient" }) } })
    S.events(node, 4)
    local t = S.pid(node, sup, "t")
    node:cast(t, { "stop", "normal" })
    S.changed(node, sup, "t", t)
    local kids = S.children(node, sup)
    assert.same({ "a", "sub", 7, "t" }, { kids[1].id, kids[2].id, kids[3].id, kids[4].id })
    assert.same({ "worker", "supervisor", "worker", "worker" }, { kids[1].type, kids[2].type, kids[3].type, kids[4].type })
    assert.same({ "sup_worker", "supervisor", "sup_proc", "sup_worker" },
      { kids[1].module, kids[2].module, kids[3].module, kids[4].module })
    for i = 1, 3 do assert.is_not_nil(node:info(kids[i].pid)) end
    assert.is_nil(kids[4].pid)
    -- supervisors and workers count specs, running or not; active counts running children
    assert.same({ specs = 4, active = 3, supervisors = 1, workers = 3 }, S.value(node, "count_children", sup))
    assert.same({ specs = 1, active = 1, supervisors = 0, workers = 1 }, S.value(node, "count_children", kids[2].pid))
  end)

  it("answer an empty supervisor with an empty list and zero counts", function()
    local sup = S.start_link(node, { children = {} })
    assert.same({}, S.children(node, sup))
    assert.same({ specs = 0, active = 0, supervisors = 0, workers = 0 }, S.value(node, "count_children", sup))
    local sup2 = S.start_link(node, {})
    assert.same({}, S.children(node, sup2))
  end)
end)

describe("the dynamic API", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("takes a supervisor's registered name wherever it takes its pid", function()
    local sup = S.start_link(node, { name = "sup_by_name", children = { S.worker(node, "a") } })
    S.events(node, 1)
    local r = S.calls(node,
      { "start_child", "sup_by_name", S.worker(node, "b") },
      { "terminate_child", "sup_by_name", "b" },
      { "restart_child", "sup_by_name", "b" },
      { "which_children", "sup_by_name" },
      { "terminate_child", "sup_by_name", "b" },
      { "delete_child", "sup_by_name", "b" },
      { "count_children", "sup_by_name" })
    for i = 1, #r do G.ok(r[i]) end
    assert.equal(2, #G.ok(r[4]))
    assert.same({ specs = 1, active = 1, supervisors = 0, workers = 1 }, G.ok(r[7]))
    assert.same({ "a" }, S.ids(node, sup))
  end)

  it("raises 'call to <sup>: noproc' for a supervisor that is gone or a name nobody holds", function()
    local sup, owner = S.start_link(node, { children = { S.worker(node, "a") } }, { trap = true })
    S.ops(node, owner, { "exit", sup, "shutdown" })
    H.wait_for(node, function(m) return type(m) == "table" and m[1] == "EXIT" and m[2] == sup end)
    local spec = S.worker(node, "b")
    for _, target in ipairs { sup, "sup_nobody" } do
      local r = S.calls(node,
        { "start_child", target, spec }, { "terminate_child", target, "a" }, { "restart_child", target, "a" },
        { "delete_child", target, "a" }, { "which_children", target }, { "count_children", target })
      for i = 1, #r do assert.equal(G.call_error(target, "noproc"), G.err(r[i])) end
    end
  end)
end)
