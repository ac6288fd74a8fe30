-- SPEC 1: mb.monitor and mb.demonitor.
local H = require "helpers.node"

describe("mb.monitor", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("returns a ref and sends DOWN with ref, pid and reason when the pid ends", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function()
        local m = require "moonbeam"
        m.receive()
        m.exit("monitored reason")
      end)
      local ref = mb.monitor(b)
      mb.send(b, "die")
      local down = mb.receive(function(m) return m[1] == "DOWN" end, 5000)
      mb.send(parent, {
        type(ref), down and down[2] == ref, down and down[3] == b, down and down[4], down and #down,
      })
    end)
    assert.same({ "userdata", true, true, "monitored reason", 4 }, msg)
  end)

  it("reports a normal end with reason normal", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function() require("moonbeam").receive() end)
      local ref = mb.monitor(b)
      mb.send(b, "go")
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { down and down[4] })
    end)
    assert.same({ "normal" }, msg)
  end)

  it("sends DOWN with noproc at once for a dead pid", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local dead, ref = mb.spawn_monitor(function() end)
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local ref2 = mb.monitor(dead)
      local down = mb.receive(function(m) return m[1] == "DOWN" end, 5000)
      mb.send(parent, { down and down[2] == ref2, down and down[3] == dead, down and down[4] })
    end)
    assert.same({ true, true, "noproc" }, msg)
  end)

  it("gives each monitor its own ref and its own DOWN", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function() require("moonbeam").receive() end)
      local r1, r2 = mb.monitor(b), mb.monitor(b)
      mb.send(b, "go")
      local d1 = mb.receive(function(m) return m[1] == "DOWN" and m[2] == r1 end, 5000)
      local d2 = mb.receive(function(m) return m[1] == "DOWN" and m[2] == r2 end, 5000)
      mb.send(parent, { r1 ~= r2, d1 ~= nil, d2 ~= nil })
    end)
    assert.same({ true, true, true }, msg)
  end)

  it("is one-way: the monitored process is not affected when the monitoring one crashes", function()
    local watcher = H.puppet(node, node:self())
    local target = H.puppet(node)
    local monitoring = H.puppet(node)
    H.ask(node, monitoring, "monitoring", "monitor", target)
    local ref = H.watch(node, watcher, monitoring)
    node:send(monitoring, { "error", "monitor crash" })
    assert.equal("monitor crash", H.down(node, ref))
    assert.equal(target, H.ask(node, target, "pong", "ping")[2])
  end)

  it("does not end the monitoring process when the monitored one crashes", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function() require("moonbeam").receive(); error("crash", 0) end)
      local ref = mb.monitor(b)
      mb.send(b, "go")
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.receive(function() return false end, 300)
      mb.send(parent, { "still here", down and down[4] })
    end)
    assert.same({ "still here", "crash" }, msg)
  end)

  it("raises for an argument that is not a pid", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { (pcall(mb.monitor, "not a pid")), (pcall(mb.monitor, 42)) })
    end)
    assert.same({ false, false }, msg)
  end)
end)

describe("mb.demonitor", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("removes the monitor: no DOWN comes for it", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function() require("moonbeam").receive() end)
      local r1 = mb.monitor(b)
      local r2 = mb.monitor(b)
      local before = #mb.info(mb.self()).monitors
      mb.demonitor(r1)
      local after = #mb.info(mb.self()).monitors
      mb.send(b, "go")
      local d2 = mb.receive(function(m) return m[1] == "DOWN" and m[2] == r2 end, 5000)
      local d1 = mb.receive(function(m) return m[1] == "DOWN" and m[2] == r1 end, 300)
      mb.send(parent, { before, after, d2 ~= nil, d1 == nil })
    end)
    assert.same({ 2, 1, true, true }, msg)
  end)

  it("flushes the monitor's DOWN if it is already queued", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function() require("moonbeam").receive() end)
      local ref = mb.monitor(b)
      mb.send(mb.self(), "before")
      mb.send(b, "go")
      -- look at the queue without taking anything until the DOWN is in it (bounded)
      local queued, deadline = false, mb.now() + 5000
      while not queued and mb.now() < deadline do
        mb.receive(function(m)
          if type(m) == "table" and m[1] == "DOWN" and m[2] == ref then queued = true end
          return false
        end, 10)
      end
      mb.demonitor(ref)
      local rest = {}
      while true do
        local m = mb.receive(0)
        if m == nil then break end
        rest[#rest + 1] = m
      end
      mb.send(parent, { queued, rest })
    end)
    assert.same({ true, { "before" } }, msg)
  end)

  it("does nothing for a monitor that already fired or a ref it never made", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function() end)
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { (pcall(mb.demonitor, ref)), (pcall(mb.demonitor, mb.make_ref())) })
    end)
    assert.same({ true, true }, msg)
  end)

  it("raises for an argument that is not a ref", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { (pcall(mb.demonitor, mb.self())), (pcall(mb.demonitor, "ref")) })
    end)
    assert.same({ false, false }, msg)
  end)
end)
