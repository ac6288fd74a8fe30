-- SPEC 3 under fire: random kills in a three-level tree (spec/fixtures/sup_chaos.lua), after
-- which every child runs again and nothing is left once the tree stops; the same one kill at a
-- time against a model of intensity, so that every give-up happens exactly where intensity says;
-- and a crash storm under a supervisor that gives up, which nothing above it notices.
-- Nodes log nothing here (log_level "none"): the kills would flood the spec run's stderr.
local H = require "helpers.node"
local G = require "helpers.gs"
local S = require "helpers.sup"



-- top (one_for_one) > w1, mid1 (one_for_all) > {x1, bot1 (rest_for_one) > {y1, y2, y3}, x2},
-- mid2 (rest_for_one) > {z1, bot2 (one_for_one) > {q1, q2}, z2}, w2. Workers neither trap nor
-- report; y2, x2, q2, w2 are processes; y3 and z1 are transient. Every period is 60 s.
local INTENSITY = { mid1 = 3, bot1 = 2, mid2 = 3, bot2 = 2 }
local SHAPE = { "w1", { "mid1", { "x1", { "bot1", { "y1", "y2", "y3" } }, "x2" } },
  { "mid2", { "z1", { "bot2", { "q1", "q2" } }, "z2" } }, "w2" }

local function chaos_tree(node, top_intensity)
  local function w(id, fields) return S.worker(node, id, { report = false, trap = false }, fields) end
  local function p(id) return S.proc(node, id, { report = false, trap = false }) end
  local function sup(id, strategy, children)
    return S.sub(id, { strategy = strategy, intensity = INTENSITY[id], period = 60, children = children })
  end
  return { strategy = "one_for_one", intensity = top_intensity, period = 60, children = {
    w("w1"),
    sup("mid1", "one_for_all", { w("x1"), sup("bot1", "rest_for_one", { w("y1"), p("y2"), w("y3", { restart = "transient" }) }), p("x2") }),
    sup("mid2", "rest_for_one", { w("z1", { restart = "transient" }), sup("bot2", "one_for_one", { w("q1"), p("q2") }), w("z2") }),
    p("w2"),
  } }
end

-- Is `tree` (sup_client's "tree" op) shaped as `shape`, every child running? false, why if not.
local function whole(tree, shape)
  if tree.error then return false, tostring(tree.pid) .. ": " .. tree.error end
  if #tree.children ~= #shape then return false, ("%d children, not %d"):format(#tree.children, #shape) end
  for i, want in ipairs(shape) do
    local c = tree.children[i]
    local id = type(want) == "table" and want[1] or want
    if c.id ~= id then return false, ("child %d is %s, not %s"):format(i, tostring(c.id), id) end
    if not c.alive then return false, id .. " is not running" end
    if type(want) == "table" then
      if not c.tree then return false, id .. " has no tree" end
      local ok, why = whole(c.tree, want[2])
      if not ok then return false, id .. " > " .. why end
    end
  end
  return true
end

-- Poll until the tree under top is whole; fails the spec with what is missing if it never is.
local function await_whole(node, top)
  local ok, why
  H.poll(node, function()
    ok, why = whole(S.value(node, "tree", top), SHAPE)
    return ok
  end)
  assert(ok, "the tree is not whole again: " .. tostring(why))
end

-- Start the chaos tree from a trapping owner, once only the owner runs; returns top and owner.
local function start_tree(node, top_intensity)
  local owner = S.owner(node, { trap = true })
  assert.is_true(S.settles(node, 1))
  local top = G.ok(S.ops(node, owner, { "start_link", chaos_tree(node, top_intensity) })[1])
  assert(top, "start_link failed")
  await_whole(node, top)
  return top, owner
end

-- Stop the tree through its parent and check that nothing but the owner is left.
local function stop_tree(node, top, owner)
  S.ops(node, owner, { "exit", top, "shutdown" })
  assert.equal("shutdown", H.wait_for(node, S.exit_from(top))[3])
  assert.is_true(S.settles(node, 1), "processes left over: " .. #node:processes() - 1)
end

describe("random kills in a three-level tree", function()
  local node
  before_each(function() node = S.node({ log_level = "none" }) end)
  after_each(function() S.stop(node); node = nil end)

  it("leave every child running again, and nothing behind once the tree stops", function()
    local top, owner = start_tree(node, 100000)
    G.spawn(node, "sup_chaos", node:self(), top, { mode = "storm", ms = 2000, seed = 42 })
    local done = G.wait(node, "chaos_done", 2000 + H.timeout)
    assert.is_true(done[2] > 0, "nothing was killed")
    await_whole(node, top)
    assert.is_true(H.no_message(node, S.exit_from(top), 0))
    stop_tree(node, top, owner)
  end)

  for _, run in ipairs { { top = 8, ms = 1000, seed = 7 }, { top = 100000, ms = 1000, seed = 11 } } do
    it(("one at a time, give up exactly where intensity says (top intensity %d)"):format(run.top), function()
      local top, owner = start_tree(node, run.top)
      local intensity = { top = run.top }
      for k, v in pairs(INTENSITY) do intensity[k] = v end
      G.spawn(node, "sup_chaos", node:self(), top, { mode = "model", ms = run.ms, seed = run.seed, intensity = intensity })
      local m = G.wait(node, "model_done", run.ms + 3 * H.timeout)
      assert.are_not.equal("wrong", m[2], m[4])
      assert.is_true(m[3] > 0, "no step was taken")
      if m[2] == "gave up" then
        assert.equal("shutdown", H.wait_for(node, S.exit_from(top))[3])
        assert.is_true(S.settles(node, 1), "processes left over: " .. #node:processes() - 1)
      else
        await_whole(node, top)
        stop_tree(node, top, owner)
      end
    end)
  end
end)

describe("a crash storm", function()
  local node
  before_each(function() node = S.node({ log_level = "none" }) end)
  after_each(function() S.stop(node); node = nil end)

  it("under a supervisor that gives up takes down nothing above it", function()
    -- 30 tickets: s crashes at once at each start while it gets one. bot (intensity 2) gives up
    -- at every third crash, 10 times; mid restarts it each time; then s starts for good.
    G.server(node, "sup_worker", { value = 30 }, { name = "sup_storm" })
    local top, owner = S.start_link(node, { name = "sup_top", intensity = 1000, period = 60, children = {
      S.worker(node, "t1"),
      S.sub("mid", { name = "sup_mid", intensity = 1000, period = 60, children = {
        S.worker(node, "m1"),
        S.sub("bot", { intensity = 2, period = 60, children = {
          S.worker(node, "bb"), S.proc(node, "s", { storm = "sup_storm" }) } }) } }),
      S.worker(node, "t2"),
    } }, { trap = true })
    -- t2 starts once mid is up, while the storm below mid goes on: its report may come at any
    -- point of the storm, also after the storm's last one, so the loop waits for it too
    local seen, total = {}, 0
    while (seen["start s"] or 0) < 1 or (seen["start bb"] or 0) < 11 or (seen["start t2"] or 0) < 1 do
      local e = S.events(node, 1)[1]
      seen[e] = (seen[e] or 0) + 1
      total = total + 1
      assert(total <= 40, "more reports than the storm can make")
    end
    assert.is_true(S.no_events(node))
    assert.same({ ["start t1"] = 1, ["start m1"] = 1, ["start t2"] = 1, ["start bb"] = 11, ["stop bb"] = 10,
      ["start s"] = 1 }, seen)
    assert.is_false(node:call("sup_storm", { "take" }))
    assert.equal(top, node:whereis("sup_top"))
    assert.equal(node:whereis("sup_mid"), S.pid(node, top, "mid"))
    assert.is_true(H.no_message(node, S.exit_from(top), 0))
    assert.is_not_nil(node:info(owner))
  end)
end)
