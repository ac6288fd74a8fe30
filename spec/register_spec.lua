-- SPEC 1: mb.register, mb.unregister, mb.whereis: node-wide names.
local H = require "helpers.node"

describe("registered names", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("register the caller under a name that whereis finds and send uses", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.register("me")
      mb.send("me", "via name")
      mb.send(parent, { mb.whereis("me") == mb.self(), mb.receive(1000), mb.info(mb.self()).registered_name })
    end)
    assert.same({ true, "via name", "me" }, msg)
  end)

  it("register another process when given its pid", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function()
        local m = require "moonbeam"
        local req = m.receive()
        m.send(req, "b answers")
      end)
      mb.register("other", b)
      mb.send("other", mb.self())
      mb.send(parent, { mb.whereis("other") == b, mb.receive(5000) })
    end)
    assert.same({ true, "b answers" }, msg)
  end)

  it("are node-wide: the host and other processes see them", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.register("everywhere")
      mb.send(parent, "registered")
      mb.receive()
    end, node:self())
    H.wait_for(node, "registered")
    assert.equal(pid, node:whereis("everywhere"))
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { "seen", mb.whereis("everywhere") })
    end)
    assert.equal(pid, msg[2])
  end)

  it("whereis returns nil for a name nobody registered", function()
    assert.is_nil(node:whereis("nobody"))
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { "none", mb.whereis("nobody") == nil })
    end)
    assert.same({ "none", true }, msg)
  end)

  it("unregister frees the name: whereis is nil and send raises", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.register("temp")
      mb.unregister("temp")
      local ok, err = pcall(mb.send, "temp", "x")
      mb.send(parent, { mb.whereis("temp") == nil, ok, err, mb.info(mb.self()).registered_name == nil })
    end)
    assert.is_true(msg[1])
    assert.is_false(msg[2])
    assert.equal("send: no process registered as 'temp'", H.strip(msg[3]))
    assert.is_true(msg[4])
  end)

  it("raise when the name is taken, leaving it with its owner", function()
    local owner = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.register("taken")
      mb.send(parent, "registered")
      mb.receive()
    end, node:self())
    H.wait_for(node, "registered")
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { pcall(mb.register, "taken") })
    end)
    assert.is_false(msg[1])
    assert.equal(owner, node:whereis("taken"))
  end)

  it("raise when the caller registers a name it already holds", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.register("mine")
      local ok = pcall(mb.register, "mine")
      mb.send(parent, { ok, mb.whereis("mine") == mb.self() })
    end)
    assert.same({ false, true }, msg)
  end)

  it("are freed when their process ends: whereis is nil once the DOWN has arrived", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function(p)
        local m = require "moonbeam"
        m.register("short_lived")
        m.send(p, "registered")
        m.receive()
      end, mb.self())
      local ref = mb.monitor(b)
      mb.receive(function(m) return m == "registered" end, 5000)
      local was = mb.whereis("short_lived") == b
      mb.send(b, "go")
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local gone = mb.whereis("short_lived") == nil
      mb.register("short_lived")
      mb.send(parent, { was, gone, mb.whereis("short_lived") == mb.self() })
    end)
    assert.same({ true, true, true }, msg)
  end)

  it("cannot be given to a dead process", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local dead, ref = mb.spawn_monitor(function() end)
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      pcall(mb.register, "ghost", dead)
      mb.send(parent, { "ghost", mb.whereis("ghost") == nil })
    end)
    assert.same({ "ghost", true }, msg)
  end)

  it("raise for a name that is not a string", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { (pcall(mb.register, {})), (pcall(mb.register, nil)) })
    end)
    assert.same({ false, false }, msg)
  end)

  -- Names are any bytes, like Erlang atoms: a NUL does not end them.
  it("keep every byte of a name, a NUL included", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local other = mb.spawn(function()
        local m = require "moonbeam"
        while true do
          local req = m.receive()
          m.send(req[1], { "other got", req[2] })
        end
      end)
      mb.register("a\0b")
      local r = {}
      r.first = mb.whereis("a") == nil and mb.whereis("a\0b") == mb.self() and mb.whereis("a\0c") == nil
      r.own = mb.info(mb.self()).registered_name
      mb.register("a", other)                  -- a different name
      r.both = mb.whereis("a") == other and mb.whereis("a\0b") == mb.self()
      mb.send("a\0b", "to me")
      r.to_me = mb.receive(1000)
      mb.send("a", { mb.self(), "to other" })
      r.to_other = mb.receive(1000)
      mb.send_after(1, "a\0b", "timer to me")
      r.timer = mb.receive(1000)
      r.taken = (pcall(mb.register, "a\0b", other))
      r.bad_send = select(2, pcall(mb.send, "a\0c", "x"))
      mb.unregister("a\0b")
      r.after = mb.whereis("a\0b") == nil and mb.whereis("a") == other and mb.info(mb.self()).registered_name == nil
      r.bad_unregister = (pcall(mb.unregister, "a\0b"))
      mb.exit(other, "kill")
      mb.send(parent, r)
    end)
    assert.is_true(msg.first)
    assert.equal("a\0b", msg.own)
    assert.is_true(msg.both)
    assert.equal("to me", msg.to_me)
    assert.same({ "other got", "to other" }, msg.to_other)
    assert.equal("timer to me", msg.timer)
    assert.is_false(msg.taken)
    assert.is_truthy(msg.bad_send:find("no process registered", 1, true), msg.bad_send)
    assert.is_true(msg.after)
    assert.is_false(msg.bad_unregister)
  end)

  it("with a NUL are freed with their process", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local pid, ref = mb.spawn_monitor(function(p)
        local m = require "moonbeam"
        m.register("x\0y")
        m.send(p, "registered")
        m.receive()
      end, mb.self())
      mb.receive(function(m) return m == "registered" end, 5000)
      mb.register("x")
      mb.exit(pid, "kill")
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local r = { mb.whereis("x\0y") == nil, mb.whereis("x") == mb.self() }
      mb.unregister("x")
      r[3] = (pcall(mb.register, "x\0y"))
      mb.send(parent, r)
    end)
    assert.same({ true, true, true }, msg)
  end)
end)
