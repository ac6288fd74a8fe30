-- SPEC 3's restarts (with notes/sup_decisions.md where SPEC is silent): the restart types,
-- intensity and period, restarts that fail, and escalation up a three-level tree. Start, spec
-- checks, strategies and exit signals: supervisor_spec.lua. Children are
-- spec/fixtures/sup_worker.lua and sup_proc.lua reporting to the host (helpers/sup.lua).
local H = require "helpers.node"
local G = require "helpers.gs"
local S = require "helpers.sup"

-- Let more than `ms` milliseconds pass: for period, which is about time passing, not about waiting
-- for something to happen.
local function let_pass(node, ms)
  node:receive(function() return false end, ms)
end

describe("the restart types", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  local normal_reasons = { "normal", "shutdown", { "shutdown", "x" } }

  it("permanent: restarted after any exit, normal or not", function()
    local sup = S.start_link(node, { intensity = 10, period = 60, children = { S.worker(node, "a") } })
    S.events(node, 1)
    for _, reason in ipairs { "normal", "shutdown", { "shutdown", "x" }, "abnormal" } do
      local old = S.pid(node, sup, "a")
      node:cast(old, { "stop", reason })
      assert.same({ "stop a", "start a" }, S.events(node, 2))
      S.restarted(node, sup, "a", old)
    end
  end)

  it("transient: restarted after an abnormal exit only; its spec stays after a normal one", function()
    local sup = S.start_link(node, { intensity = 10, period = 60, children = {
      S.worker(node, "t", nil, { restart = "transient" }), S.proc(node, "tp", nil, { restart = "transient" }) } })
    S.events(node, 2)
    local old = S.pid(node, sup, "t")
    node:cast(old, { "stop", "abnormal" })
    S.event(node, "start t")
    old = S.restarted(node, sup, "t", old)
    local p = S.pid(node, sup, "tp")
    node:send(p, { "exit", "boom" })
    S.event(node, "start tp")
    S.restarted(node, sup, "tp", p)
    for _, reason in ipairs(normal_reasons) do
      node:cast(old, { "stop", reason })
      local entry = S.changed(node, sup, "t", old)
      assert.is_not_nil(entry, "the transient child's spec is gone")
      assert.is_nil(entry.pid)
      assert.same({ specs = 2, active = 1, supervisors = 0, workers = 2 }, S.value(node, "count_children", sup))
      old = G.ok(S.calls(node, { "restart_child", sup, "t" })[1])
      assert.is_not_nil(old)
      assert.equal(old, S.event(node, "start t")[2])
    end
    p = S.pid(node, sup, "tp")
    node:send(p, { "exit", "normal" })
    assert.is_nil(S.changed(node, sup, "tp", p).pid)
  end)

  it("temporary: never restarted, and its spec is removed when it ends", function()
    local sup = S.start_link(node, { intensity = 10, period = 60, children = {
      S.worker(node, "x", nil, { restart = "temporary" }), S.proc(node, "y", nil, { restart = "temporary" }),
      S.worker(node, "z") } })
    S.events(node, 3)
    local x = S.pid(node, sup, "x")
    node:cast(x, { "stop", "abnormal" })
    assert.is_nil(S.changed(node, sup, "x", x))
    local y = S.pid(node, sup, "y")
    node:send(y, { "exit", "normal" })
    assert.is_nil(S.changed(node, sup, "y", y))
    assert.same({ "z" }, S.ids(node, sup))
    assert.same({ specs = 1, active = 1, supervisors = 0, workers = 1 }, S.value(node, "count_children", sup))
    S.drain(node)
    assert.is_true(S.no_events(node, H.quiet))
  end)
end)

describe("intensity and period", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("more than intensity restarts within period: every child stopped in reverse order, exit shutdown", function()
    local sup, owner = S.start_link(node, { intensity = 2, period = 60, children = {
      S.worker(node, "a"), S.worker(node, "b"), S.worker(node, "c") } }, { trap = true })
    S.events(node, 3)
    local ref = S.monitor(node, owner, sup)
    for _ = 1, 2 do
      local old = S.pid(node, sup, "b")
      S.kill(node, old)
      assert.same({ "start b" }, S.events(node, 1))
      S.restarted(node, sup, "b", old)
    end
    S.kill(node, S.pid(node, sup, "b"))
    local seq, msgs = S.events(node, 2)
    assert.same({ "stop c", "stop a" }, seq)
    assert.same({ "shutdown", "shutdown" }, { msgs[1][3], msgs[2][3] })
    assert.equal("shutdown", S.down(node, ref))
    assert.equal("shutdown", H.wait_for(node, S.exit_from(sup))[3])
    assert.is_true(S.no_events(node))
    assert.is_true(S.settles(node, 1)) -- the owner alone
  end)

  it("intensity 0: the first restart is one too many", function()
    local sup, owner = S.start_link(node, { intensity = 0, children = { S.worker(node, "a"), S.worker(node, "b") } },
      { trap = true })
    S.events(node, 2)
    S.kill(node, S.pid(node, sup, "a"))
    assert.same({ "stop b" }, S.events(node, 1))
    assert.equal("shutdown", H.wait_for(node, S.exit_from(sup))[3])
    assert.is_nil(node:info(sup))
    assert.is_not_nil(node:info(owner))
  end)

  it("restarts further apart than period never add up", function()
    local sup = S.start_link(node, { intensity = 1, period = 0.2, children = { S.worker(node, "a") } })
    S.events(node, 1)
    for _ = 1, 3 do
      local old = S.pid(node, sup, "a")
      S.kill(node, old)
      S.event(node, "start a")
      S.restarted(node, sup, "a", old)
      let_pass(node, 400) -- twice the period
    end
    assert.is_not_nil(node:info(sup))
  end)

  it("counts one restart of one_for_all as one, however many children it restarts", function()
    local sup = S.start_link(node, { strategy = "one_for_all", intensity = 1, period = 60,
      children = { S.worker(node, "a"), S.worker(node, "b"), S.worker(node, "c") } }, { trap = true })
    S.events(node, 3)
    S.kill(node, S.pid(node, sup, "a"))
    assert.same({ "stop c", "stop b", "start a", "start b", "start c" }, S.events(node, 5))
    assert.is_not_nil(node:info(sup))
    S.kill(node, S.pid(node, sup, "b"))
    assert.same({ "stop c", "stop a" }, S.events(node, 2))
    assert.equal("shutdown", H.wait_for(node, S.exit_from(sup))[3])
  end)

  it("does not count exits that restart nothing", function()
    local sup = S.start_link(node, { intensity = 0, children = {
      S.worker(node, "t", nil, { restart = "transient" }), S.worker(node, "x", nil, { restart = "temporary" }),
      S.worker(node, "p") } })
    S.events(node, 3)
    local t, x, p = S.pid(node, sup, "t"), S.pid(node, sup, "x"), S.pid(node, sup, "p")
    node:cast(t, { "stop", "normal" })
    assert.is_nil(S.changed(node, sup, "t", t).pid)
    S.kill(node, x)
    assert.is_nil(S.changed(node, sup, "x", x))
    assert.is_not_nil(node:info(sup))
    assert.equal(p, S.pid(node, sup, "p"))
  end)
end)

describe("a restart that fails", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("is retried, counts toward the intensity, and never crashes the supervisor", function()
    local sup, owner, a = S.gated_sup(node, 5, { reason = "gate raised" })
    local ref = S.monitor(node, owner, sup)
    S.kill(node, a)                                  -- restart 1
    local pids = {}
    -- init raises, returns garbage, returns stop: each a failed restart, retried at once
    for i, verdict in ipairs { "raise", "bad", "refused", "ok" } do -- restarts 1 to 4
      local gate = S.event(node, "gate a")
      pids[i] = gate[2]
      node:send(gate[2], { "go", verdict })
    end
    assert.equal(pids[4], S.restarted(node, sup, "a", a))
    S.kill(node, pids[4])                            -- restart 5: still within the intensity
    local gate = S.event(node, "gate a")
    node:send(gate[2], { "go", "ok" })
    S.restarted(node, sup, "a", pids[4])
    S.kill(node, gate[2])                            -- restart 6: one too many
    assert.equal("shutdown", S.down(node, ref))
    assert.is_true(H.no_message(node, function(m) return m[1] == "gate" end))
  end)

  it("holds a call made meanwhile until the child has started, and the call sees the new pid", function()
    local sup, _, a = S.gated_sup(node, 5, { reason = "gate raised" })
    S.kill(node, a)
    local gate = S.event(node, "gate a")             -- the supervisor is inside the restart
    local client = G.spawn(node, "sup_client", node:self(), { { "which_children", sup } })
    local function answered(m) return type(m) == "table" and m[1] == "gs_results" and m[2] == client end
    assert.is_true(H.no_message(node, answered))
    node:send(gate[2], { "go", "ok" })
    local kids = G.ok(G.results(node, client)[1])
    assert.equal(gate[2], kids[1].pid)
    assert.is_not_nil(node:info(kids[1].pid))
  end)
end)

-- top (intensity top_intensity) > t1, mid (intensity 1) > {m1, bot (intensity 0) > w}, t2.
-- All periods 60 s; the supervisors are registered as sup_top, sup_mid, sup_bot; w as sup_w.
local function three_levels(node, top_intensity)
  return {
    name = "sup_top", intensity = top_intensity, period = 60,
    children = {
      S.worker(node, "t1"),
      S.sub("mid", { name = "sup_mid", intensity = 1, period = 60, children = {
        S.worker(node, "m1"),
        S.sub("bot", { name = "sup_bot", intensity = 0, period = 60, children = {
          S.worker(node, "w", nil, { name = "sup_w" }) } }),
      } }),
      S.worker(node, "t2"),
    },
  }
end

describe("escalation", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("climbs a three-level tree: each supervisor that gives up is restarted by its own", function()
    local top, owner = S.start_link(node, three_levels(node, 10), { trap = true })
    assert.same({ "start t1", "start m1", "start w", "start t2" }, S.events(node, 4))
    local t1, t2 = S.pid(node, top, "t1"), S.pid(node, top, "t2")
    local mid0, bot0, w0 = node:whereis("sup_mid"), node:whereis("sup_bot"), node:whereis("sup_w")
    assert.equal(mid0, S.pid(node, top, "mid"))
    assert.equal(bot0, S.pid(node, mid0, "bot"))
    assert.equal("supervisor", S.child(node, top, "mid").type)

    -- bot gives up at once; mid restarts it (mid's first restart)
    S.kill(node, w0)
    assert.same({ "start w" }, S.events(node, 1))
    local bot1 = S.reregistered(node, "sup_bot", bot0)
    local w1 = S.reregistered(node, "sup_w", w0)
    assert.equal(mid0, node:whereis("sup_mid"))
    assert.equal(bot1, S.pid(node, mid0, "bot"))

    -- bot gives up again; that is mid's second restart: mid gives up, top restarts it
    S.kill(node, w1)
    assert.same({ "stop m1", "start m1", "start w" }, S.events(node, 3))
    local mid1 = S.reregistered(node, "sup_mid", mid0)
    assert.equal(mid1, S.pid(node, top, "mid"))
    assert.are_not.equal(bot1, S.pid(node, mid1, "bot"))
    assert.same({ t1, t2 }, { S.pid(node, top, "t1"), S.pid(node, top, "t2") })
    assert.equal(top, node:whereis("sup_top"))
    assert.is_true(H.no_message(node, S.exit_from(top)))
    assert.is_not_nil(node:info(owner))
  end)

  it("ends at a top that gives up: its exit shutdown reaches every process linked to it", function()
    local top, owner = S.start_link(node, three_levels(node, 0), { trap = true })
    S.events(node, 4)
    local linked = H.puppet(node, node:self())
    H.ask(node, linked, "trap", "trap", true)
    H.ask(node, linked, "linked", "link", top)
    local w0 = node:whereis("sup_w")
    S.kill(node, w0)
    S.event(node, "start w")
    S.kill(node, S.reregistered(node, "sup_w", w0))
    assert.same({ "stop m1", "stop t2", "stop t1" }, S.events(node, 3))
    for _ = 1, 2 do -- the owner's and the puppet's
      assert.equal("shutdown", H.wait_for(node, S.exit_from(top))[3])
    end
    assert.is_nil(node:whereis("sup_top"))
    assert.is_true(S.settles(node, 2)) -- owner and puppet: no child, no supervisor left
    assert.is_not_nil(node:info(owner))
  end)
end)
