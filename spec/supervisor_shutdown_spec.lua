-- SPEC 3 and 6 (with notes/sup_decisions.md where SPEC is silent): how a supervisor stops a child
-- (exit "shutdown", then a kill after `shutdown` ms; "brutal_kill"; "infinity"), the node's
-- shutdown on SIGTERM / SIGINT stopping every tree top-down with terminate callbacks running, and
-- the "supervisor report" lines on stderr. The last two run the moonbeam binary on
-- spec/fixtures/cli/sup_tree.lua and sup_reports.lua.
local H = require "helpers.node"
local G = require "helpers.gs"
local S = require "helpers.sup"
local C = require "helpers.cli"


local function results_of(client)
  return function(m) return type(m) == "table" and m[1] == "gs_results" and m[2] == client end
end

describe("stopping a child", function()
  local node
  before_each(function() node = S.node() end)
  after_each(function() S.stop(node); node = nil end)

  it("sends it exit shutdown: terminate runs in a trapping server, a non-trapping child ends with it", function()
    local sup, owner = S.start_link(node, { children = { S.worker(node, "g"), S.proc(node, "p", { trap = false }) } })
    S.events(node, 2)
    local g, p = S.pid(node, sup, "g"), S.pid(node, sup, "p")
    local rg, rp = S.monitor(node, owner, g), S.monitor(node, owner, p)
    assert.is_true(G.ok(S.calls(node, { "terminate_child", sup, "g" })[1]))
    local _, msgs = S.events(node, 1)
    assert.same({ "terminate", g, "shutdown", "g" }, msgs[1])
    assert.equal("shutdown", S.down(node, rg))
    assert.is_true(G.ok(S.calls(node, { "terminate_child", sup, "p" })[1]))
    assert.equal("shutdown", S.down(node, rp))
  end)

  -- A child reports the shutdown before it ignores it, and must get to run within its shutdown
  -- ms to do so: 1000, so that a loaded machine's delays do not kill it first.
  it("kills a child that has not ended after shutdown ms", function()
    local sup, owner = S.start_link(node, { children = {
      S.worker(node, "g", { terminate = "block" }, { shutdown = 1000 }),
      S.proc(node, "p", { on_exit = "ignore" }, { shutdown = 1000 }) } })
    S.events(node, 2)
    for _, id in ipairs { "g", "p" } do
      local pid = S.pid(node, sup, id)
      local ref = S.monitor(node, owner, pid)
      local r = S.calls(node, { "terminate_child", sup, id }, { "is_alive", pid })
      assert.is_true(G.ok(r[1]))
      assert.is_false(G.ok(r[2]))
      local _, msgs = S.events(node, 1) -- it got the shutdown and ignored it
      assert.same({ "stop " .. id, "shutdown" }, { S.render[msgs[1][1]](msgs[1]), msgs[1][3] })
      assert.equal("killed", S.down(node, ref))
    end
  end)

  it("kills at once with brutal_kill: no terminate, no exit message", function()
    local sup, owner = S.start_link(node, { children = {
      S.worker(node, "g", nil, { shutdown = "brutal_kill" }), S.proc(node, "p", nil, { shutdown = "brutal_kill" }) } })
    S.events(node, 2)
    for _, id in ipairs { "g", "p" } do
      local pid = S.pid(node, sup, id)
      local ref = S.monitor(node, owner, pid)
      assert.is_true(G.ok(S.calls(node, { "terminate_child", sup, id })[1]))
      assert.equal("killed", S.down(node, ref))
    end
    assert.is_true(S.no_events(node))
  end)

  it("waits however long the child takes with infinity, answering nothing meanwhile", function()
    local sup, owner = S.start_link(node, { children = {
      S.worker(node, "g", { terminate = "wait" }, { shutdown = "infinity" }) } })
    S.events(node, 1)
    local g = S.pid(node, sup, "g")
    local ref = S.monitor(node, owner, g)
    local client = G.spawn(node, "sup_client", node:self(), { { "terminate_child", sup, "g" } })
    S.event(node, "stop g") -- terminate runs and waits for "go"
    local asker = G.spawn(node, "sup_client", node:self(), { { "count_children", sup } })
    assert.is_true(H.no_message(node, function(m) return results_of(client)(m) or results_of(asker)(m) end))
    assert.is_not_nil(node:info(g))
    node:send(g, "go")
    assert.is_true(G.ok(G.results(node, client)[1]))
    assert.equal("shutdown", S.down(node, ref))
    assert.same({ specs = 1, active = 0, supervisors = 0, workers = 1 }, G.ok(G.results(node, asker)[1]))
  end)

  it("waits for a supervisor child to stop its own children first", function()
    local sup = S.start_link(node, { children = {
      S.sub("sub", { children = { S.worker(node, "x"), S.worker(node, "y", { terminate = "wait" }, { shutdown = "infinity" }) } }) } })
    S.events(node, 2)
    local sub = S.pid(node, sup, "sub")
    local client = G.spawn(node, "sup_client", node:self(), { { "terminate_child", sup, "sub" } })
    local y = S.event(node, "stop y")[2]
    assert.is_true(H.no_message(node, results_of(client)))
    assert.is_not_nil(node:info(sub))
    node:send(y, "go")
    assert.same({ "stop x" }, S.events(node, 1))
    assert.is_true(G.ok(G.results(node, client)[1]))
    assert.is_nil(node:info(sub))
  end)

  it("applies shutdown when a strategy restarts siblings and when the supervisor gives up", function()
    local sup, owner = S.start_link(node, { strategy = "one_for_all", intensity = 1, period = 60, children = {
      S.worker(node, "a"), S.worker(node, "s", { terminate = "block" }, { shutdown = 1000 }), S.worker(node, "c") } },
      { trap = true })
    S.events(node, 3)
    local ref = S.monitor(node, owner, sup)
    S.kill(node, S.pid(node, sup, "a"))
    assert.same({ "stop c", "stop s", "start a", "start s", "start c" }, S.events(node, 5))
    S.kill(node, S.pid(node, sup, "a"))
    assert.same({ "stop c", "stop s" }, S.events(node, 2))
    assert.equal("shutdown", S.down(node, ref))
    assert.is_true(S.settles(node, 1)) -- the owner; s was killed
  end)
end)

-- Start `moonbeam -P fixtures sup_tree.lua mode`, wait for "ready" (or for it to end: fail fast),
-- send `sig`; returns the exit status (nil: still running after 15 s) and the output.
local function tree_run(mode, sig)
  local h = C.start { "-P", C.modules, C.script "sup_tree.lua", mode }
  local ready = false
  for _ = 1, 200 do
    local out = C.slurp(h.out)
    if out and out:find("ready\n", 1, true) then ready = true; break end
    local st = C.slurp(h.statusfile)
    if st and st:match("%d") then break end
    os.execute("sleep 0.05")
  end
  if ready then C.signal(h, sig) end
  local status = ready and C.wait_exit(h, 15)
  local r = C.finish(h)
  assert.is_true(ready, "sup_tree.lua never printed ready: " .. r.stderr)
  return status, r
end

-- The lines of `lines` that are in `keep`, in their order.
local function only(lines, keep)
  local set, out = {}, {}
  for _, l in ipairs(keep) do set[l] = true end
  for _, l in ipairs(lines) do if set[l] then out[#out + 1] = l end end
  return out
end

describe("node shutdown", function()
  before_each(function() S.require_supervisor() end)

  local starts = { "start a", "start b1", "start b2", "start c" }

  for _, sig in ipairs { "TERM", "INT" } do
    it("on SIG" .. sig .. " stops the tree top-down, children in reverse order, terminate callbacks running", function()
      local status, r = tree_run("one", sig)
      assert.equal(0, status, r.stderr)
      -- b2 is a plain process (started without an acknowledgement): its start line may come
      -- after c's, so the starts are compared as a set; all come before "ready"
      local before, after = {}, {}
      for _, l in ipairs(r.out) do
        if #after > 0 or l == "ready" then after[#after + 1] = l else before[#before + 1] = l end
      end
      table.sort(before)
      assert.same(starts, before)
      assert.same({ "ready", "stop c shutdown", "stop b2 shutdown", "stop b1 shutdown", "stop a shutdown" }, after)
    end)
  end

  it("kills a child that ignores the shutdown after its shutdown ms and goes on", function()
    local status, r = tree_run("stubborn", "TERM")
    assert.equal(0, status, r.stderr)
    assert.same({ "ready", "stop c shutdown", "stop s shutdown", "stop b2 shutdown", "stop b1 shutdown", "stop a shutdown" },
      only(r.out, { "ready", "stop c shutdown", "stop s shutdown", "stop b2 shutdown", "stop b1 shutdown", "stop a shutdown" }))
  end)

  it("stops every tree, each in reverse start order", function()
    local status, r = tree_run("two", "TERM")
    assert.equal(0, status, r.stderr)
    assert.same({ "ready", "stop c shutdown", "stop b2 shutdown", "stop b1 shutdown", "stop a shutdown" },
      only(r.out, { "ready", "stop c shutdown", "stop b2 shutdown", "stop b1 shutdown", "stop a shutdown" }))
    assert.same({ "start d", "start e", "ready", "stop e shutdown", "stop d shutdown" },
      only(r.out, { "start d", "start e", "ready", "stop e shutdown", "stop d shutdown" }))
  end)
end)

-- sup_reports.lua's stdout as {name = {pid, ...}} ("quit_w" = its three pids, in order) and the
-- supervisor report lines of its stderr as {level=, text=, msg=} (msg: after "supervisor report:").
local function reports_run(args)
  local cmd = { "-P", C.modules }
  for _, a in ipairs(args or {}) do cmd[#cmd + 1] = a end
  cmd[#cmd + 1] = C.script "sup_reports.lua"
  local r = C.run(cmd)
  local pids = {}
  for _, l in ipairs(r.out) do
    local name, pid = l:match("^(%S+) (<0%.%d+>)$")
    if name then
      pids[name] = pids[name] or {}
      table.insert(pids[name], pid)
    end
  end
  local reports = {}
  for _, l in ipairs(r.err) do
    local at = l:find("supervisor report:", 1, true)
    if at then
      reports[#reports + 1] = { level = l:match("%[(%a+)%]"), text = l, msg = l:sub(at + #"supervisor report:") }
    end
  end
  return r, pids, reports
end

-- The reports at `level` whose text holds every string of `needles`.
local function having(reports, level, needles)
  local out = {}
  for _, rep in ipairs(reports) do
    local all = rep.level == level
    for _, n in ipairs(needles) do all = all and rep.text:find(n, 1, true) ~= nil end
    if all then out[#out + 1] = rep end
  end
  return out
end

-- The give-up line, worded as notes/sup_decisions.md has it ("shutdown: reached max restart intensity").
local function is_give_up(rep) return rep.msg:find("max restart intensity", 1, true) ~= nil end

-- Fails the spec unless the report's line holds every string of `needles`.
local function names_all(rep, needles)
  for _, s in ipairs(needles) do
    assert.is_truthy(rep.text:find(s, 1, true), s .. " missing from: " .. rep.text)
  end
end

local function failures(reports, needles)
  local out = {}
  for _, rep in ipairs(having(reports, "error", needles)) do
    if not is_give_up(rep) then out[#out + 1] = rep end
  end
  return out
end

describe("supervisor reports", function()
  before_each(function() S.require_supervisor() end)

  it("one error line per child failure, naming supervisor, child, pid and reason", function()
    local r, pids, reports = reports_run()
    assert.equal(0, r.status, r.stderr)
    assert.same({ "quit_sup exit shutdown", "done" }, { r.out[#r.out - 1], r.out[#r.out] })
    for _, sup in ipairs { "rep", "quit" } do
      local sup_name, child = sup .. "_sup", sup .. "_w"
      local n = sup == "rep" and 2 or 3
      for i = 1, n do
        local lines = failures(reports, { "kaboom-" .. sup .. "-" .. i })
        assert.equal(1, #lines, "failure lines for kaboom-" .. sup .. "-" .. i .. ":\n" .. r.stderr)
        names_all(lines[1], { sup_name, pids[sup_name][1], child, pids[child][i] })
      end
    end
  end)

  it("one info line per restart, naming supervisor, child and the new pid", function()
    local r, pids, reports = reports_run()
    assert.equal(0, r.status, r.stderr)
    for _, sup in ipairs { "rep", "quit" } do
      local sup_name, child = sup .. "_sup", sup .. "_w"
      for i = 2, 3 do
        local lines = having(reports, "info", { pids[child][i] })
        assert.equal(1, #lines, "restart lines for " .. child .. " " .. pids[child][i] .. ":\n" .. r.stderr)
        names_all(lines[1], { sup_name, pids[sup_name][1], child })
      end
    end
  end)

  it("one error line when a supervisor gives up, with its restarts, period, child and reason", function()
    local r, pids, reports = reports_run()
    assert.equal(0, r.status, r.stderr)
    local lines = {}
    for _, rep in ipairs(reports) do if is_give_up(rep) then lines[#lines + 1] = rep end end
    assert.equal(1, #lines, r.stderr)
    local line = lines[1]
    assert.equal("error", line.level)
    names_all(line, { "quit_sup", pids.quit_sup[1], "quit_w", "kaboom-quit-3", "7.5" })
    -- the restart count: the intensity (2) or the restart that went past it (3)
    local bare = line.msg:gsub("<0%.%d+>", ""):gsub("7%.5", "")
    assert.is_truthy(bare:find("%f[%w]2%f[%W]") or bare:find("%f[%w]3%f[%W]"), line.text)
  end)

  it("are errors and infos of the node's log: --log-level warning keeps the errors, none silences them", function()
    local r, _, reports = reports_run { "--log-level", "warning" }
    assert.equal(0, r.status, r.stderr)
    assert.equal(0, #having(reports, "info", {}))
    assert.equal(6, #having(reports, "error", {})) -- five failures, one give-up
    local quiet = reports_run { "--log-level", "none" }
    assert.equal(0, quiet.status)
    assert.same({ "quit_sup exit shutdown", "done" }, { quiet.out[#quiet.out - 1], quiet.out[#quiet.out] })
    assert.is_nil(quiet.stderr:find("supervisor report", 1, true), quiet.stderr)
  end)
end)
