-- SPEC 1: mb.is_alive, mb.processes and mb.info.
local H = require "helpers.node"

describe("mb.is_alive", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("is true for a live process and for the caller, false once it has ended", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b, ref = mb.spawn_monitor(function() require("moonbeam").receive() end)
      local live = mb.is_alive(b)
      mb.send(b, "go")
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { live, mb.is_alive(mb.self()), mb.is_alive(b) })
    end)
    assert.same({ true, true, false }, msg)
  end)

  it("raises for an argument that is not a pid", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { (pcall(mb.is_alive, "pid")), (pcall(mb.is_alive, mb.make_ref())) })
    end)
    assert.same({ false, false }, msg)
  end)
end)

describe("mb.processes", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("lists the live processes, the caller included, each once", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local kids = {}
      for i = 1, 3 do kids[i] = mb.spawn(function() require("moonbeam").receive() end) end
      local list = mb.processes()
      local seen, dups, found = {}, 0, 0
      for _, p in ipairs(list) do
        if seen[p] then dups = dups + 1 end
        seen[p] = true
      end
      for i = 1, 3 do if seen[kids[i]] then found = found + 1 end end
      mb.send(parent, { found, seen[mb.self()] == true, dups, type(list[1]) })
    end)
    assert.same({ 3, true, 0, "userdata" }, msg)
  end)

  it("no longer lists a process once it has ended", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b, ref = mb.spawn_monitor(function() require("moonbeam").receive() end)
      mb.send(b, "go")
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local listed = false
      for _, p in ipairs(mb.processes()) do if p == b then listed = true end end
      mb.send(parent, { "listed", listed })
    end)
    assert.same({ "listed", false }, msg)
  end)

  it("is seen from the host too", function()
    local a = node:spawn("waiter")
    local b = node:spawn("waiter")
    local list = node:processes()
    assert.is_true(H.contains(list, a))
    assert.is_true(H.contains(list, b))
  end)
end)

describe("mb.info", function()
  local node
  after_each(function() node:stop() end)

  it("returns nil for a dead pid, in a process and from the host", function()
    node = H.start()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b, ref = mb.spawn_monitor(function() end)
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { "dead", mb.info(b) == nil, b })
    end)
    assert.same({ "dead", true }, { msg[1], msg[2] })
    assert.is_nil(node:info(msg[3]))
  end)

  it("reports the caller as running", function()
    node = H.start()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { mb.info(mb.self()).status })
    end)
    assert.same({ "running" }, msg)
  end)

  it("reports a process blocked in receive as waiting", function()
    node = H.start()
    local pid = node:spawn("waiter", node:self())
    H.wait_for(node, "ready")
    assert.equal("waiting", H.poll(node, function()
      local i = node:info(pid)
      return i and i.status == "waiting" and i.status
    end))
  end)

  it("reports a process preempted on the only scheduler as runnable", function()
    node = H.start { schedulers = 1 }
    local looper = node:spawn(function(parent)
      require("moonbeam").send(parent, "looping")
      local n = 0
      while true do n = n + 1 end
    end, node:self())
    H.wait_for(node, "looping")
    local msg = H.run(node, function(parent, pid)
      local mb = require "moonbeam"
      mb.send(parent, { "status", mb.info(pid).status })
    end, looper)
    assert.same({ "status", "runnable" }, msg)
  end)

  it("reports the module a process was spawned from", function()
    node = H.start()
    local pid = node:spawn("waiter", node:self())
    H.wait_for(node, "ready")
    assert.equal("waiter", node:info(pid).module)
    local opt = node:spawn({ module = "waiter" }, node:self())
    H.wait_for(node, "ready")
    assert.equal("waiter", node:info(opt).module)
  end)

  it("counts the queued messages in message_queue_len", function()
    node = H.start()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local empty = mb.info(mb.self()).message_queue_len
      for i = 1, 3 do mb.send(mb.self(), i) end
      local three = mb.info(mb.self()).message_queue_len
      mb.receive(0)
      mb.send(parent, { empty, three, mb.info(mb.self()).message_queue_len })
    end)
    assert.same({ 0, 3, 2 }, msg)
  end)

  it("counts messages queued behind a selective receive", function()
    node = H.start()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "ready")
      mb.receive(function(m) return m == "the one" end)
    end, node:self())
    H.wait_for(node, "ready")
    for i = 1, 4 do node:send(pid, i) end
    assert.equal(4, H.poll(node, function()
      local i = node:info(pid)
      return i and i.message_queue_len == 4 and 4
    end))
  end)

  it("reports memory in bytes, its queued messages included", function()
    node = H.start()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local big = string.rep("m", 1024 * 1024)
      collectgarbage()
      collectgarbage("stop")
      local before = mb.info(mb.self()).memory
      mb.send(mb.self(), big)
      local after = mb.info(mb.self()).memory
      collectgarbage("restart")
      mb.send(parent, { type(before), before > 0, after - before >= 1000 * 1000 })
    end)
    assert.same({ "number", true, true }, msg)
  end)

  it("reports reductions that are positive once it ran and grow as it runs", function()
    node = H.start()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      local x = 0
      while true do
        for i = 1, 200000 do x = x + i % 7 end
        mb.send(parent, { "worked", x })
        mb.receive()
      end
    end, node:self())
    H.wait_for(node, "worked")
    local r1 = H.poll(node, function() return node:info(pid).status == "waiting" and node:info(pid).reductions end)
    node:send(pid, "again")
    H.wait_for(node, "worked")
    local r2 = H.poll(node, function() return node:info(pid).status == "waiting" and node:info(pid).reductions end)
    assert.equal("number", type(r1))
    assert.is_true(r1 > 0)
    assert.is_true(r2 > r1)
  end)

  it("reports reductions that grow while a process runs without ever yielding (the ticker's count)", function()
    node = H.start()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "looping")
      local x = 0
      while true do x = x + 1 end
    end, node:self())
    H.wait_for(node, "looping")
    local r1 = H.poll(node, function() return node:info(pid).status == "running" and node:info(pid).reductions end)
    assert.equal("number", type(r1))
    -- only the ticker counts now: the loop neither receives nor yields
    local r2 = H.poll(node, function()
      local r = node:info(pid).reductions
      return r > r1 and r
    end)
    assert.is_truthy(r2)
    assert.equal("running", node:info(pid).status)
    node:spawn(function(target) require("moonbeam").exit(target, "kill") end, pid)
    assert.is_truthy(H.poll(node, function() return node:info(pid) == nil end))
  end)

  it("lists the links, counts the monitors, and tells trap_exit and registered_name", function()
    node = H.start()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local b = mb.spawn(function()
        local m = require "moonbeam"
        local req = m.receive()
        m.send(req, m.info(m.self()))
        m.receive()
      end)
      local c = mb.spawn(function() require("moonbeam").receive() end)
      local i0 = mb.info(mb.self())
      mb.link(b)
      mb.monitor(c)
      mb.trap_exit(true)
      mb.register("info_subject")
      local i1 = mb.info(mb.self())
      -- b handles the link before this request: signals from one process keep their order
      mb.send(b, mb.self())
      local ib = mb.receive(5000)
      mb.send(parent, {
        #i0.links, #i0.monitors, i0.trap_exit, i0.registered_name == nil,
        #i1.links, i1.links[1] == b, #i1.monitors, i1.trap_exit, i1.registered_name,
        #ib.links, ib.links[1] == mb.self(), ib.registered_name == nil,
      })
    end)
    assert.same({ 0, 0, false, true, 1, true, 1, true, "info_subject", 1, true, true }, msg)
  end)

  it("raises for an argument that is not a pid", function()
    node = H.start()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { (pcall(mb.info, "pid")), (pcall(mb.info, 1)) })
    end)
    assert.same({ false, false }, msg)
  end)
end)
