-- SPEC 1: "Order of events": signals between two processes keep their order; a process's
-- name and liveness are gone before its EXIT and DOWN signals go out.
local H = require "helpers.node"

describe("order of events", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("delivers 10000 messages from one sender in send order", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.spawn(function(dest)
        local m = require "moonbeam"
        for i = 1, 10000 do m.send(dest, i) end
      end, mb.self())
      local bad = 0
      for i = 1, 10000 do
        if mb.receive(5000) ~= i then bad = bad + 1 end
      end
      mb.send(parent, { "out of order", bad })
    end)
    assert.same({ "out of order", 0 }, msg)
  end)

  it("delivers 10000 messages from a process to the host in send order", function()
    node:spawn(function(dest)
      local m = require "moonbeam"
      for i = 1, 10000 do m.send(dest, i) end
    end, node:self())
    local bad = 0
    for i = 1, 10000 do
      if H.wait_for(node, nil) ~= i then bad = bad + 1 end
    end
    assert.equal(0, bad)
  end)

  it("keeps each sender's order when two senders interleave", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      for s = 1, 2 do
        mb.spawn(function(dest, id)
          local m = require "moonbeam"
          for i = 1, 5000 do m.send(dest, { id, i }) end
        end, mb.self(), s)
      end
      local last, bad = { 0, 0 }, 0
      for _ = 1, 10000 do
        local m = mb.receive(5000)
        if not m or m[2] ~= last[m[1]] + 1 then bad = bad + 1 else last[m[1]] = m[2] end
      end
      mb.send(parent, { "bad", bad, last[1], last[2] })
    end)
    assert.same({ "bad", 0, 5000, 5000 }, msg)
  end)

  it("delivers an EXIT after the messages the process sent before it ended", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      mb.spawn_link(function(dest)
        local m = require "moonbeam"
        for i = 1, 1000 do m.send(dest, i) end
        error("after the messages", 0)
      end, mb.self())
      local got = 0
      while true do
        local m = mb.receive(5000)
        if type(m) == "number" then got = got + 1 else
          mb.send(parent, { "before exit", got, m and m[1], m and m[3] })
          return
        end
      end
    end)
    assert.same({ "before exit", 1000, "EXIT", "after the messages" }, msg)
  end)

  it("delivers a DOWN after the messages the process sent before it ended", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.spawn_monitor(function(dest)
        local m = require "moonbeam"
        for i = 1, 1000 do m.send(dest, i) end
      end, mb.self())
      local got = 0
      while true do
        local m = mb.receive(5000)
        if type(m) == "number" then got = got + 1 else
          mb.send(parent, { "before down", got, m and m[1], m and m[4] })
          return
        end
      end
    end)
    assert.same({ "before down", 1000, "DOWN", "normal" }, msg)
  end)

  it("delivers an exit signal after the messages sent before it", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      mb.spawn(function(dest)
        local m = require "moonbeam"
        for i = 1, 100 do m.send(dest, i) end
        m.exit(dest, "signal after messages")
      end, mb.self())
      local got = 0
      while true do
        local m = mb.receive(5000)
        if type(m) == "number" then got = got + 1 else
          mb.send(parent, { "before signal", got, m and m[1], m and m[3] })
          return
        end
      end
    end)
    assert.same({ "before signal", 100, "EXIT", "signal after messages" }, msg)
  end)

  it("has is_alive false, the name free and the pid unlisted by the time DOWN arrives", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local results = {}
      for round = 1, 50 do
        local name = "ephemeral_" .. round
        local b = mb.spawn(function(p, n)
          local m = require "moonbeam"
          m.register(n)
          m.send(p, "registered")
          m.receive()
        end, mb.self(), name)
        local ref = mb.monitor(b)
        mb.receive(function(m) return m == "registered" end, 5000)
        mb.send(b, "go")
        mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
        local listed = false
        for _, p in ipairs(mb.processes()) do if p == b then listed = true end end
        if mb.is_alive(b) or mb.whereis(name) ~= nil or listed or mb.info(b) ~= nil then
          results[#results + 1] = round
        end
      end
      mb.send(parent, { "stale rounds", results })
    end)
    assert.same({ "stale rounds", {} }, msg)
  end)

  it("has is_alive false and the name free by the time EXIT arrives", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      local stale = 0
      for round = 1, 50 do
        local name = "linked_ephemeral_" .. round
        local b = mb.spawn_link(function(p, n)
          local m = require "moonbeam"
          m.register(n)
          m.send(p, "registered")
          m.receive()
          m.exit("shutdown")
        end, mb.self(), name)
        mb.receive(function(m) return m == "registered" end, 5000)
        mb.send(b, "go")
        mb.receive(function(m) return m[1] == "EXIT" and m[2] == b end, 5000)
        if mb.is_alive(b) or mb.whereis(name) ~= nil then stale = stale + 1 end
      end
      mb.send(parent, { "stale", stale })
    end)
    assert.same({ "stale", 0 }, msg)
  end)
end)
