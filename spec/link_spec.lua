-- SPEC 1: mb.link, mb.unlink, mb.trap_exit, mb.exit/1, mb.exit/2 and "Exit reasons" (propagation).
local H = require "helpers.node"

describe("mb.link and mb.unlink", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("deliver a linked process's end to a trapping caller as an EXIT message", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      local b = mb.spawn(function()
        local m = require "moonbeam"
        m.receive()
        m.exit("bye")
      end)
      mb.link(b)
      mb.send(b, "die")
      local e = mb.receive(function(m) return m[1] == "EXIT" end, 5000)
      mb.send(parent, { e and e[2] == b, e and e[3] })
    end)
    assert.same({ true, "bye" }, msg)
  end)

  it("are bidirectional: the linked process learns of the caller's end", function()
    local b = H.puppet(node, node:self())
    H.ask(node, b, "trap", "trap", true)
    local a = node:spawn(function(peer)
      local mb = require "moonbeam"
      mb.link(peer)
      mb.exit("a_reason")
    end, b)
    local e = H.wait_for(node, "EXIT")
    assert.equal(a, e[2])
    assert.equal("a_reason", e[3])
  end)

  it("unlink removes the link on both sides", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      local b = mb.spawn(function()
        local m = require "moonbeam"
        while true do
          local req = m.receive()
          if req == "die" then m.exit("boom") end
          m.send(req, { "links", #m.info(m.self()).links })
        end
      end)
      mb.link(b)
      local linked = #mb.info(mb.self()).links
      mb.unlink(b)
      -- b handles the unlink before this request: signals from one process keep their order
      mb.send(b, mb.self())
      local mine, theirs = #mb.info(mb.self()).links, mb.receive(function(m) return m[1] == "links" end, 5000)[2]
      local ref = mb.monitor(b)
      mb.send(b, "die")
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local exit = mb.receive(function(m) return m[1] == "EXIT" end, 300)
      mb.send(parent, { linked, mine, theirs, down and down[4], exit == nil })
    end)
    assert.same({ 1, 0, 0, "boom", true }, msg)
  end)

  it("unlink of a pid that is not linked does nothing", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function() require("moonbeam").receive() end)
      local ok = pcall(mb.unlink, b)
      mb.send(parent, { ok, mb.is_alive(b), #mb.info(mb.self()).links })
    end)
    assert.same({ true, true, 0 }, msg)
  end)

  it("linking twice makes one link, removed by one unlink", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function()
        local m = require "moonbeam"
        while true do
          local req = m.receive()
          m.send(req, { "links", #m.info(m.self()).links })
        end
      end)
      mb.link(b)
      mb.link(b)
      local twice = #mb.info(mb.self()).links
      mb.send(b, mb.self())
      local theirs_linked = mb.receive(5000)[2]
      mb.unlink(b)
      mb.send(b, mb.self())
      local theirs = mb.receive(5000)[2]
      mb.send(parent, { twice, theirs_linked, #mb.info(mb.self()).links, theirs })
    end)
    assert.same({ 1, 1, 0, 0 }, msg)
  end)

  it("linking a dead pid delivers an exit signal noproc, seen as EXIT when trapping", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      local dead, ref = mb.spawn_monitor(function() end)
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.link(dead)
      local e = mb.receive(function(m) return m[1] == "EXIT" end, 5000)
      mb.send(parent, { e and e[2] == dead, e and e[3] })
    end)
    assert.same({ true, "noproc" }, msg)
  end)

  it("linking a dead pid ends a caller that does not trap exits, with reason noproc", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local dead, ref = mb.spawn_monitor(function() end)
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local _, ref2 = mb.spawn_monitor(function(pid)
        local m = require "moonbeam"
        m.link(pid)
        m.receive()
      end, dead)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref2 end, 5000)
      mb.send(parent, { "linker", down and down[4] })
    end)
    assert.same({ "linker", "noproc" }, msg)
  end)

  it("raise for an argument that is not a pid", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { (pcall(mb.link, "not a pid")), (pcall(mb.unlink, {})) })
    end)
    assert.same({ false, false }, msg)
  end)
end)

describe("mb.trap_exit", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("is off by default and returns the old flag", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local default = mb.info(mb.self()).trap_exit
      mb.send(parent, { default, mb.trap_exit(true), mb.trap_exit(true), mb.trap_exit(false), mb.trap_exit(false) })
    end)
    assert.same({ false, false, true, true, false }, msg)
  end)

  it("turns an exit signal into an EXIT message naming the sender", function()
    local target = H.puppet(node, node:self())
    H.ask(node, target, "trap", "trap", true)
    local sender = node:spawn(function(pid) require("moonbeam").exit(pid, "custom") end, target)
    local e = H.wait_for(node, "EXIT")
    assert.equal(sender, e[2])
    assert.equal("custom", e[3])
    assert.equal(target, H.ask(node, target, "pong", "ping")[2])
  end)

  it("turns a linked process's normal end into an EXIT message with reason normal", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      local b = mb.spawn_link(function() end)
      local e = mb.receive(function(m) return m[1] == "EXIT" end, 5000)
      mb.send(parent, { e and e[2] == b, e and e[3] })
    end)
    assert.same({ true, "normal" }, msg)
  end)

  it("once turned off lets exit signals end the process again", function()
    local watcher = H.puppet(node, node:self())
    local target = H.puppet(node)
    H.ask(node, target, "trap", "trap", true)
    assert.same({ "trap", true }, H.ask(node, target, "trap", "trap", false))
    local ref = H.watch(node, watcher, target)
    node:send(watcher, { "signal", target, "boom" })
    assert.equal("boom", H.down(node, ref))
  end)
end)

describe("mb.exit(reason)", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("ends the process with the reason and runs nothing after it", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function(w)
        local m = require "moonbeam"
        m.exit("bye")
        m.send(w, "after exit")
      end, mb.self())
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { down and down[4], mb.receive(0) })
    end)
    assert.same({ "bye" }, msg)
  end)

  it("is not caught by pcall", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function(w)
        local m = require "moonbeam"
        local ok = pcall(m.exit, "through pcall")
        m.send(w, { "after pcall", ok })
        pcall(function() m.exit("second") end)
        m.send(w, "after second pcall")
      end, mb.self())
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { down and down[4], mb.receive(0) })
    end)
    assert.same({ "through pcall" }, msg)
  end)

  it("is not caught by xpcall, and its handler does not run", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function(w)
        local m = require "moonbeam"
        xpcall(function() m.exit("through xpcall") end, function(e) m.send(w, { "handler ran", e }) return e end)
        m.send(w, "after xpcall")
      end, mb.self())
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { down and down[4], mb.receive(0) })
    end)
    assert.same({ "through xpcall" }, msg)
  end)

  it("ends the process from inside a coroutine", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function(w)
        local m = require "moonbeam"
        local co = coroutine.wrap(function() m.exit("from coroutine") end)
        pcall(co)
        m.send(w, "after coroutine")
      end, mb.self())
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { down and down[4], mb.receive(0) })
    end)
    assert.same({ "from coroutine" }, msg)
  end)

  it("takes any sendable value as the reason", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function() require("moonbeam").exit({ code = 42, why = "table" }) end)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { down and down[4] })
    end)
    assert.same({ { code = 42, why = "table" } }, msg)
  end)

  it("ends the process normally with reason normal", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function() require("moonbeam").exit("normal") end)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { down and down[4] })
    end)
    assert.same({ "normal" }, msg)
  end)
end)

describe("mb.exit(pid, reason)", function()
  local node, watcher
  before_each(function()
    node = H.start()
    watcher = H.puppet(node, node:self())
  end)
  after_each(function() node:stop() end)

  it("with kill ends even a trapping target, with reason killed", function()
    local target = H.puppet(node)
    H.ask(node, target, "trap", "trap", true)
    local ref = H.watch(node, watcher, target)
    node:send(watcher, { "signal", target, "kill" })
    assert.equal("killed", H.down(node, ref))
  end)

  it("with kill tells the target's links killed, which they may trap", function()
    local target = H.puppet(node)
    local linked = H.puppet(node, node:self())
    H.ask(node, linked, "trap", "trap", true)
    H.ask(node, linked, "linked", "link", target)
    node:send(watcher, { "signal", target, "kill" })
    local e = H.wait_for(node, "EXIT")
    assert.equal(target, e[2])
    assert.equal("killed", e[3])
    assert.equal(linked, H.ask(node, linked, "pong", "ping")[2])
  end)

  it("with kill sent to itself ends the caller with killed", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function()
        local m = require "moonbeam"
        m.trap_exit(true)
        m.exit(m.self(), "kill")
        m.receive()
      end)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { down and down[4] })
    end)
    assert.same({ "killed" }, msg)
  end)

  it("with normal is ignored by a target that does not trap exits", function()
    local target = H.puppet(node)
    -- the signal and the ping go from the same sender, so the ping is handled after the signal
    local msg = H.run(node, function(parent, t)
      local mb = require "moonbeam"
      mb.exit(t, "normal")
      mb.send(t, { "ping", mb.self() })
      local pong = mb.receive(5000)
      mb.send(parent, { "after normal", pong and pong[2] == t, mb.is_alive(t) })
    end, target)
    assert.same({ "after normal", true, true }, msg)
  end)

  it("with normal reaches a trapping target as an EXIT message", function()
    local target = H.puppet(node, node:self())
    H.ask(node, target, "trap", "trap", true)
    node:send(watcher, { "signal", target, "normal" })
    local e = H.wait_for(node, "EXIT")
    assert.equal(watcher, e[2])
    assert.equal("normal", e[3])
  end)

  it("with normal sent to itself ends the caller with normal", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function()
        local m = require "moonbeam"
        m.exit(m.self(), "normal")
        m.receive()
      end)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { down and down[4] })
    end)
    assert.same({ "normal" }, msg)
  end)

  it("with normal sent to itself while trapping arrives as an EXIT message", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      mb.exit(mb.self(), "normal")
      local e = mb.receive(function(m) return m[1] == "EXIT" end, 5000)
      mb.send(parent, { e and e[2] == mb.self(), e and e[3] })
    end)
    assert.same({ true, "normal" }, msg)
  end)

  it("with another reason ends a target that does not trap exits with that reason", function()
    local target = H.puppet(node)
    local ref = H.watch(node, watcher, target)
    node:send(watcher, { "signal", target, { "custom", 1 } })
    assert.same({ "custom", 1 }, H.down(node, ref))
  end)

  it("with shutdown ends a target that does not trap exits", function()
    local target = H.puppet(node)
    local ref = H.watch(node, watcher, target)
    node:send(watcher, { "signal", target, "shutdown" })
    assert.equal("shutdown", H.down(node, ref))
  end)

  it("to a dead pid does nothing", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local dead, ref = mb.spawn_monitor(function() end)
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local ok = pcall(mb.exit, dead, "boom")
      mb.send(parent, { ok, mb.is_alive(mb.self()) })
    end)
    assert.same({ true, true }, msg)
  end)

  it("raises when the target is not a pid", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { (pcall(mb.exit, "not a pid", "boom")), (pcall(mb.exit, {}, "boom")) })
    end)
    assert.same({ false, false }, msg)
  end)
end)

describe("exit reasons", function()
  local node, watcher
  before_each(function()
    node = H.start()
    watcher = H.puppet(node, node:self())
  end)
  after_each(function() node:stop() end)

  it("are normal for a body that returns", function()
    local pid = H.puppet(node)
    local ref = H.watch(node, watcher, pid)
    node:send(pid, { "return" })
    assert.equal("normal", H.down(node, ref))
  end)

  it("are the error value for a Lua error", function()
    local pid = H.puppet(node)
    local ref = H.watch(node, watcher, pid)
    node:send(pid, { "error", { code = 7 } })
    assert.same({ code = 7 }, H.down(node, ref))
  end)

  it("are the tostring of an error value that cannot be sent", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function(w)
        local co = coroutine.create(print)
        require("moonbeam").send(w, { "name", tostring(co) })
        error(co)
      end, mb.self())
      local name = mb.receive(function(m) return m[1] == "name" end, 5000)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { name and name[2], down and down[4] })
    end)
    assert.is_truthy(msg[1]:match("^thread: "))
    assert.equal(msg[1], msg[2])
  end)

  it("that are abnormal end every linked process that does not trap exits, with the same reason", function()
    local a, b, c = H.puppet(node), H.puppet(node), H.puppet(node)
    H.ask(node, a, "linked", "link", b)
    H.ask(node, b, "linked", "link", c)
    local ra, rb, rc = H.watch(node, watcher, a), H.watch(node, watcher, b), H.watch(node, watcher, c)
    node:send(c, { "error", "chain" })
    assert.equal("chain", H.down(node, rc))
    assert.equal("chain", H.down(node, rb))
    assert.equal("chain", H.down(node, ra))
  end)

  it("that are abnormal reach a trapping linked process as EXIT, which then lives on", function()
    local a, b = H.puppet(node, node:self()), H.puppet(node)
    H.ask(node, a, "trap", "trap", true)
    H.ask(node, a, "linked", "link", b)
    node:send(b, { "exit", "abnormal" })
    local e = H.wait_for(node, "EXIT")
    assert.equal(b, e[2])
    assert.equal("abnormal", e[3])
    assert.equal(a, H.ask(node, a, "pong", "ping")[2])
  end)

  for _, case in ipairs {
    { name = "normal", reason = "normal" },
    { name = "shutdown", reason = "shutdown" },
    { name = "{shutdown, x}", reason = { "shutdown", "x" } },
  } do
    it("that are normal (" .. case.name .. ") do not end linked processes", function()
      local a, b = H.puppet(node), H.puppet(node)
      H.ask(node, a, "linked", "link", b)
      local ra, rb = H.watch(node, watcher, a), H.watch(node, watcher, b)
      node:send(b, { "exit", case.reason })
      assert.same(case.reason, H.down(node, rb))
      assert.is_true(H.no_message(node, function(m) return m[1] == "DOWN" and m[2] == ra end))
      assert.equal(a, H.ask(node, a, "pong", "ping")[2])
    end)
  end

  it("of a crash leave an unlinked process alone", function()
    local a, b = H.puppet(node), H.puppet(node)
    local rb = H.watch(node, watcher, b)
    node:send(b, { "error", "crash" })
    assert.equal("crash", H.down(node, rb))
    assert.equal(a, H.ask(node, a, "pong", "ping")[2])
  end)
end)
