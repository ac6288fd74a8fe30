-- SPEC 1 "Order of events" and "Exit reasons", where a signal meets a busy or ending
-- process: links and monitors made while the target lived learn its real reason;
-- is_alive and info reflect the exit signals the caller sent; a name never outlives
-- its process.
local H = require "helpers.node"

describe("a link or monitor made while the target is busy", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  -- B (fixtures/busy_spinner) sits in a string.gsub callback, draining no signal,
  -- until A has linked and monitored it; then B errors "boom". A polls
  -- without blocking, so that it waits in a run queue another scheduler takes
  -- from, never in the slot of B's thread.
  it("gets the target's real exit reason, not noproc", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      local b = mb.spawn("busy_spinner", "a_is_linked", "error")
      while not mb.whereis("b_spinning") do end
      local ref = mb.monitor(b)
      mb.link(b)
      mb.register("a_is_linked")
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local exit = mb.receive(function(m) return m[1] == "EXIT" and m[2] == b end, 5000)
      mb.send(parent, { down and down[4], exit and exit[3] })
    end)
    assert.same({ "boom", "boom" }, msg)
  end)
end)

describe("is_alive and info after an exit signal", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  -- the target loops without blocking on the other scheduler: it cannot have
  -- drained the signal when the caller asks
  it("say dead right after exit(pid, 'kill')", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function(a) require("moonbeam").send(a, "looping"); while true do end end, mb.self())
      assert(mb.receive(5000) == "looping")
      mb.exit(b, "kill")
      mb.send(parent, { mb.is_alive(b), mb.info(b) == nil })
    end)
    assert.same({ false, true }, msg)
  end)

  it("say dead right after an abnormal exit signal to a process that does not trap", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function(a) require("moonbeam").send(a, "looping"); while true do end end, mb.self())
      assert(mb.receive(5000) == "looping")
      mb.register("busy_b", b)
      local ref = mb.monitor(b)   -- before the exit: monitoring a dead b would say noproc
      mb.exit(b, "go away")
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { mb.is_alive(b), mb.info(b) == nil, mb.whereis("busy_b") == nil, down and down[4] })
    end)
    assert.same({ false, true, true, "go away" }, msg)
  end)

  it("say alive after an exit signal the target traps, or a normal one it ignores", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function(a)
        local mb = require "moonbeam"
        mb.trap_exit(true)
        mb.send(a, "trapping")
        mb.receive(function(m) return m == "stop" end)
      end, mb.self())
      assert(mb.receive(5000) == "trapping")
      mb.exit(b, "go away")
      local trapped = mb.is_alive(b)
      local c = mb.spawn(function() require("moonbeam").receive() end)
      mb.exit(c, "normal")
      local ignored = mb.is_alive(c)
      mb.send(b, "stop")
      mb.exit(c, "kill")
      mb.send(parent, { trapped, ignored })
    end)
    assert.same({ true, true }, msg)
  end)
end)

describe("info's reductions", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("are above zero for a process reading its own in its first time slice", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { "reductions", mb.info(mb.self()).reductions })
    end)
    assert.equal("reductions", msg[1])
    assert.is_true(msg[2] > 0)
  end)
end)

describe("info's message_queue_len", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("counts messages, not the links and monitors queued beside them", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn("busy_spinner", "counted")
      while not mb.whereis("b_spinning") do end
      mb.send(b, "one")
      local ref = mb.monitor(b)
      mb.link(b)
      mb.send(b, "two")
      local len = mb.info(b).message_queue_len
      mb.unlink(b)
      mb.register("counted")   -- held until b is gone: b leaves its loop on seeing it
      mb.exit(b, "kill")
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { len })
    end)
    assert.same({ 2 }, msg)
  end)
end)

describe("a registered name", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  -- the supervisor restart pattern, hammered: while the holder ends, whereis never
  -- answers with a dead pid, and once its DOWN is in the name is free again
  it("never outlives its process", function()
    node:spawn(function(parent)
      local mb = require "moonbeam"
      local me = mb.self()
      local stale, after_down, refused = 0, 0, 0
      for _ = 1, 1000 do
        local p, ref = mb.spawn_monitor(function(a)
          local mb = require "moonbeam"
          mb.send(a, { "up", (pcall(mb.register, "svc")) })
          mb.receive()
        end, me)
        local up = mb.receive(function(m) return m[1] == "up" end, 5000)
        if not (up and up[2]) then refused = refused + 1 end
        mb.send(p, "go")
        repeat
          -- once it is dead, its name is gone (it may end between the two calls)
          local w = mb.whereis("svc")
          if w and not mb.is_alive(w) and mb.whereis("svc") == w then stale = stale + 1 end
          local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 0)
        until down
        if mb.whereis("svc") then after_down = after_down + 1 end
      end
      mb.send(parent, { "svc", stale, after_down, refused })
    end, node:self())
    assert.same({ "svc", 0, 0, 0 }, H.wait_for(node, "svc", 120000))
  end)
end)
