-- SPEC 1 "Bad input gets a clear error and loses nothing": the cases a review of the
-- core found, each once a crash, a hang or a lost signal.
local H = require "helpers.node"

describe("robustness", function()
  local node
  before_each(function() node = H.start { schedulers = 1 } end)
  after_each(function() node:stop() end)

  it("survives a finalizer that receives while receive decodes a message", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local me = mb.self()
      for i = 1, 500 do mb.send(me, { i, { string.rep("x", 64) .. i, { i, i + 1 } } }) end
      local taken = 0
      local function arm()
        setmetatable({}, { __gc = function() if mb.receive(0) then taken = taken + 1 end; arm() end })
      end
      arm()
      collectgarbage("incremental", 1, 100)
      local got = 0
      while mb.receive(0) do got = got + 1 end
      collectgarbage("incremental", 200, 100)
      mb.send(parent, { "counts", got, taken })
    end)
    assert.equal("counts", msg[1])
    assert.equal(500, msg[2] + msg[3])   -- every message went to exactly one receive
  end)

  it("refuses to block inside a coroutine resumed from a C callback, and stays sane", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b)
        return coroutine.wrap(function() mb.sleep(5); return a < b end)()
      end)
      local gen = coroutine.wrap(function() coroutine.yield(1); coroutine.yield(2) end)
      mb.send(parent, { "after", ok, err, gen(), gen() })
    end)
    assert.equal("after", msg[1])
    assert.is_false(msg[2])
    assert.is_truthy(tostring(msg[3]):find("cannot block here", 1, true), msg[3])
    assert.equal(1, msg[4])
    assert.equal(2, msg[5])
  end)

  it("refuses to block in a table.sort comparator, then blocks normally", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok, err = pcall(table.sort, { 3, 1, 2 }, function(a, b) mb.receive(); return a < b end)
      mb.send(mb.self(), "later")
      mb.send(parent, { "after", ok, err, mb.receive(1000) })
    end)
    assert.is_false(msg[2])
    assert.equal("later", msg[4])
  end)

  it("spawns from an options table whose module name comes from __index", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local opts = setmetatable({}, { __index = function(_, k)
        if k == "module" then return ("greeter"):rep(1) end
      end })
      local ok, pid = pcall(mb.spawn, opts, parent)
      mb.send(parent, { "spawned", ok, ok and mb.is_alive(pid) ~= nil })
    end)
    assert.equal("spawned", msg[1])
    assert.is_true(msg[2])
  end)

  it("acts on a kill that demonitor's flush came across", function()
    -- a loop, running on the other scheduler, whose only mailbox drain is demonitor
    local node2 = H.start { schedulers = 2 }
    local msg = H.run(node2, function(parent)
      local mb = require "moonbeam"
      local a = mb.spawn(function()
        local mb = require "moonbeam"
        local ref = mb.monitor(mb.self())
        while true do mb.demonitor(ref) end
      end)
      local ref = mb.monitor(a)
      mb.exit(a, "kill")
      local down = mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { "down", down and down[4] })
    end)
    node2:stop()
    assert.same({ "down", "killed" }, msg)
  end)

  it("treats math.huge as forever for receive, sleep and send_after", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local me = mb.self()
      mb.spawn(function(p) local mb = require "moonbeam"; mb.sleep(50); mb.send(p, "late") end, me)
      local t0 = mb.now()
      local got = mb.receive(math.huge)
      local waited = mb.now() - t0
      local tref = mb.send_after(math.huge, me, "never")
      local early = mb.receive(100)
      local left = mb.cancel_timer(tref)
      mb.send(parent, { "huge", got, waited >= 40, early, type(left) })
    end)
    assert.same({ "huge", "late", true, nil, "number" }, { msg[1], msg[2], msg[3], msg[4], msg[5] })
  end)
end)

describe("the host's receive", function()
  it("refuses to run inside its own match function", function()
    local node = H.start()
    node:send(node:self(), "x")
    local ok, err = pcall(node.receive, node, function() node:receive(0); return true end, 1000)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("cannot be called from a match function", 1, true))
    assert.equal("x", node:receive(1000))   -- still queued
    node:stop()
  end)
end)
