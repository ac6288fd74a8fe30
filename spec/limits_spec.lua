-- SPEC 1: the max_heap spawn option and "out of memory" ("Exit reasons", "Preemption").
local H = require "helpers.node"

describe("max_heap", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("ends a process that allocates past it with reason out of memory", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor({ module = "hog", max_heap = 2 * 1024 * 1024 })
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 20000)
      mb.send(parent, { "hog", down and down[4] })
    end)
    assert.same({ "hog", "out of memory" }, msg)
  end)

  it("ends the process even when the allocation fails inside pcall", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor({ module = "hog_pcall", max_heap = 2 * 1024 * 1024 }, mb.self())
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 20000)
      -- anything the hog sent before its end is queued ahead of the DOWN
      local survived = mb.receive(function(m) return m[1] == "survived" end, 0)
      mb.send(parent, { "hog_pcall", down and down[4], survived == nil })
    end)
    assert.same({ "hog_pcall", "out of memory", true }, msg)
  end)

  for _, how in ipairs({ "wrap", "resume" }) do
    it("ends the process when the allocation fails inside a coroutine (" .. how .. ") under pcall", function()
      local msg = H.run(node, function(parent, how)
        local mb = require "moonbeam"
        local _, ref = mb.spawn_monitor({ module = "hog_coroutine", max_heap = 2 * 1024 * 1024 }, how)
        local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 20000)
        mb.send(parent, { "hog_coroutine", down and down[4] })
      end, how)
      assert.same({ "hog_coroutine", "out of memory" }, msg)
    end)
  end

  it("ends a process whose queued messages cross it, though it receives nothing", function()
    local pid = node:spawn({ module = "quiet_sleeper", max_heap = 1024 * 1024 }, node:self())
    H.wait_for(node, "sleeping")
    local watcher = H.puppet(node, node:self())
    local ref = H.watch(node, watcher, pid)
    local chunk = string.rep("q", 1024)
    for _ = 1, 2048 do node:send(pid, chunk) end
    assert.equal("out of memory", H.down(node, ref))
    assert.is_nil(node:info(pid))
  end)

  it("leaves every other process running", function()
    local bystander = H.puppet(node)
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, r1 = mb.spawn_monitor({ module = "hog", max_heap = 2 * 1024 * 1024 })
      local _, r2 = mb.spawn_monitor({ module = "hog_pcall", max_heap = 2 * 1024 * 1024 }, mb.self())
      local d1 = mb.receive(function(m) return m[1] == "DOWN" and m[2] == r1 end, 20000)
      local d2 = mb.receive(function(m) return m[1] == "DOWN" and m[2] == r2 end, 20000)
      mb.send(parent, { "both", d1 and d1[4], d2 and d2[4] })
    end)
    assert.same({ "both", "out of memory", "out of memory" }, msg)
    assert.equal(bystander, H.ask(node, bystander, "pong", "ping")[2])
    node:spawn("echo_args", node:self(), "after")
    assert.same({ "echo_args", 1, "after" }, H.wait_for(node, "echo_args"))
  end)

  it("lets a process that stays under it work and end normally", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor({ module = "modest", max_heap = 2 * 1024 * 1024 }, mb.self())
      local report = mb.receive(function(m) return m[1] == "modest" end, 5000)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { report and report[2], down and down[4] })
    end)
    assert.same({ 100, "normal" }, msg)
  end)

  it("lets a fresh process start well within a 2 MiB heap", function()
    local pid = node:spawn({ module = "waiter", max_heap = 2 * 1024 * 1024 }, node:self())
    H.wait_for(node, "ready")
    local info = node:info(pid)
    assert.is_true(info.memory > 0)
    assert.is_true(info.memory < 2 * 1024 * 1024)
  end)
end)
