-- SPEC 1: mb.send_after, mb.cancel_timer, mb.sleep and mb.now.
local H = require "helpers.node"

describe("mb.send_after", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("delivers the message to a pid after the delay and returns a timer ref", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local t0 = mb.now()
      local tref = mb.send_after(50, mb.self(), "tick")
      local m = mb.receive(5000)
      mb.send(parent, { type(tref), m, mb.now() - t0 >= 45 })
    end)
    assert.same({ "userdata", "tick", true }, msg)
  end)

  it("delivers to a registered name", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.register("timer_target")
      mb.send_after(10, "timer_target", "named tick")
      mb.send(parent, { mb.receive(5000) })
    end)
    assert.same({ "named tick" }, msg)
  end)

  it("copies the message when the timer is set", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local t = { v = 1 }
      mb.send_after(20, mb.self(), t)
      t.v = 2
      local m = mb.receive(5000)
      mb.send(parent, { m and m.v })
    end)
    assert.same({ 1 }, msg)
  end)

  it("fires timers in the order of their deadlines", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send_after(200, mb.self(), "late")
      mb.send_after(10, mb.self(), "early")
      mb.send(parent, { mb.receive(5000), mb.receive(5000) })
    end)
    assert.same({ "early", "late" }, msg)
  end)

  it("raises for a message that cannot be sent, and nothing arrives", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok = pcall(mb.send_after, 10, mb.self(), { f = print })
      mb.send(parent, { ok, mb.receive(200) == nil })
    end)
    assert.same({ false, true }, msg)
  end)

  it("aimed at a pid is cancelled when that pid ends", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local target, ref = mb.spawn_monitor(function() require("moonbeam").receive() end)
      local tref = mb.send_after(2000, target, "for the dead")
      mb.send(target, "go")
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { "cancelled", mb.cancel_timer(tref) })
    end)
    assert.same({ "cancelled", false }, msg)
  end)

  it("aimed at a pid that already ended is cancelled at once", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local target, ref = mb.spawn_monitor(function() end)
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local tref = mb.send_after(3600000, target, "for the dead")
      mb.send(parent, { type(tref), mb.cancel_timer(tref) })
    end)
    assert.same({ "userdata", false }, msg)
  end)

  it("aimed at a name is not tied to the process that held the name", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local holder, ref = mb.spawn_monitor(function(p)
        local m = require "moonbeam"
        m.register("holder")
        m.send(p, "registered")
        m.receive()
      end, mb.self())
      assert(mb.receive(5000) == "registered")
      local tref = mb.send_after(3600000, "holder", "by name")
      mb.exit(holder, "kill")
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { type(mb.cancel_timer(tref)) })
    end)
    assert.same({ "number" }, msg)
  end)
end)

describe("mb.cancel_timer", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("returns the milliseconds that were left, and the message never comes", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local tref = mb.send_after(300, mb.self(), "never")
      local left = mb.cancel_timer(tref)
      local late = mb.receive(500)
      mb.send(parent, { type(left), type(left) == "number" and left > 0 and left <= 300, late == nil })
    end)
    assert.same({ "number", true, true }, msg)
  end)

  it("returns false once the timer has fired", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local tref = mb.send_after(10, mb.self(), "fired")
      local m = mb.receive(5000)
      mb.send(parent, { m, mb.cancel_timer(tref) })
    end)
    assert.same({ "fired", false }, msg)
  end)

  it("works from another process: the ms left, and the message never comes", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      -- the other process is up and waiting before the timer is set: only a message's trip,
      -- not a spawn, has to fit in the 300 ms
      local other = mb.spawn(function(p)
        local m = require "moonbeam"
        m.send(p, "up")
        local r = m.receive()
        m.send(p, { "left", m.cancel_timer(r), m.cancel_timer(r) })
      end, mb.self())
      mb.receive(function(m) return m == "up" end, 5000)
      local tref = mb.send_after(300, mb.self(), "never")
      mb.send(other, tref)
      local r = mb.receive(function(m) return type(m) == "table" end, 5000)
      local late = mb.receive(function(m) return m == "never" end, 500)
      mb.send(parent, { type(r[2]), r[2] > 0 and r[2] <= 300, r[3], late == nil, other ~= nil })
    end)
    assert.same({ "number", true, false, true, true }, msg)
  end)

  it("returns false the second time a timer is cancelled", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local tref = mb.send_after(1000, mb.self(), "x")
      local first = mb.cancel_timer(tref)
      mb.send(parent, { type(first), mb.cancel_timer(tref) })
    end)
    assert.same({ "number", false }, msg)
  end)

  it("raises for an argument that is not a timer ref", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { (pcall(mb.cancel_timer, "tref")), (pcall(mb.cancel_timer, mb.self())) })
    end)
    assert.same({ false, false }, msg)
  end)
end)

describe("mb.sleep", function()
  local node
  after_each(function() node:stop() end)

  it("suspends the process for at least the given time", function()
    node = H.start()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local t0 = mb.now()
      mb.sleep(50)
      mb.sleep(0)
      mb.send(parent, { "slept", mb.now() - t0 >= 45 })
    end)
    assert.same({ "slept", true }, msg)
  end)

  it("suspends only the process: on one scheduler another process runs meanwhile", function()
    node = H.start { schedulers = 1 }
    node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "sleeping")
      mb.sleep(3000)
      mb.send(parent, "woke")
    end, node:self())
    H.wait_for(node, "sleeping")
    local echo = node:spawn(function()
      local mb = require "moonbeam"
      local from = mb.receive()
      mb.send(from, "pong")
    end)
    node:send(echo, node:self())
    assert.equal("pong", H.wait_for(node, function(m) return m == "pong" or m == "woke" end))
  end)

  it("leaves the mailbox alone: messages that came meanwhile wait in order", function()
    node = H.start()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(mb.self(), 1)
      mb.send_after(5, mb.self(), 2)
      mb.sleep(50)
      mb.send(parent, { mb.receive(0), mb.receive(0) })
    end)
    assert.same({ 1, 2 }, msg)
  end)

  it("is not ended early by a message: the message waits until the sleep is over", function()
    node = H.start()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local t0 = mb.now()
      mb.send_after(5, mb.self(), "during")   -- wakes the sleeper's process (delivered to its inbox)
      mb.sleep(100)
      mb.send(parent, { mb.now() - t0 >= 95, mb.receive(0) })
    end)
    assert.same({ true, "during" }, msg)
  end)

  it("raises for an argument that is not a number", function()
    node = H.start()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { (pcall(mb.sleep, "long")), (pcall(mb.sleep, {})) })
    end)
    assert.same({ false, false }, msg)
  end)
end)

describe("mb.now", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("returns float milliseconds that never go backwards", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local prev, backwards = mb.now(), false
      for _ = 1, 10000 do
        local t = mb.now()
        if t < prev then backwards = true end
        prev = t
      end
      mb.send(parent, { math.type(mb.now()), backwards })
    end)
    assert.same({ "float", false }, msg)
  end)

  it("counts in milliseconds", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local t0 = mb.now()
      mb.sleep(100)
      local d = mb.now() - t0
      mb.send(parent, { d >= 95, d < 10000 })
    end)
    assert.same({ true, true }, msg)
  end)

  it("is one clock for the node: a later reading in another process is not smaller", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function()
        local m = require "moonbeam"
        for _ = 1, 100 do
          local req = m.receive()
          m.send(req.from, { t0 = req.t, t1 = m.now() })
        end
      end)
      local ok = true
      for _ = 1, 100 do
        mb.send(b, { from = mb.self(), t = mb.now() })
        local r = mb.receive(5000)
        if not r or r.t1 < r.t0 or mb.now() < r.t1 then ok = false end
      end
      mb.send(parent, { "monotonic", ok })
    end)
    assert.same({ "monotonic", true }, msg)
  end)
end)

-- NaN is no number of milliseconds: it raises, where a negative time means "now"
-- for sleep and send_after and raises for receive.
describe("a NaN timeout", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("raises in receive, sleep and send_after instead of meaning forever", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local nan = 0 / 0
      local res = {}
      for _, call in ipairs {
        function() return mb.receive(nan) end,
        function() return mb.receive(function() return true end, nan) end,
        function() return mb.sleep(nan) end,
        function() return mb.send_after(nan, mb.self(), "never") end,
      } do
        local ok, err = pcall(call)
        res[#res + 1] = { ok, tostring(err) }
      end
      mb.send(parent, res)
    end)
    local names = { "receive", "receive", "sleep", "send_after" }
    local args = { "#1", "#2", "#1", "#1" }
    for i, r in ipairs(msg) do
      assert.is_false(r[1], names[i])
      assert.is_truthy(r[2]:find("bad argument " .. args[i] .. " to '" .. names[i] .. "'", 1, true), r[2])
      assert.is_truthy(r[2]:find("nan", 1, true), r[2])
    end
  end)

  it("leaves negative times as they were: now for sleep and send_after, an error for receive", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.sleep(-5)
      mb.send_after(-5, mb.self(), "at once")
      local got = mb.receive(5000)
      local ok, err = pcall(mb.receive, -1)
      mb.send(parent, { got, ok, tostring(err):find(">= 0", 1, true) ~= nil })
    end)
    assert.same({ "at once", false, true }, msg)
  end)
end)
