-- SPEC 1: "Pids, refs and handles" and mb.make_ref.
local H = require "helpers.node"

describe("pids", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("print as <0.ID>", function()
    local pid = node:spawn("waiter")
    assert.is_truthy(tostring(pid):match("^<0%.%d+>$"), tostring(pid))
    assert.is_truthy(tostring(node:self()):match("^<0%.%d+>$"), tostring(node:self()))
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { tostring(mb.self()), mb.self() })
    end)
    assert.is_truthy(msg[1]:match("^<0%.%d+>$"), msg[1])
    assert.equal(msg[1], tostring(msg[2]))
  end)

  it("compare equal with == when they name the same process", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(mb.self(), { mb.self() })
      local copy = mb.receive(1000)[1]
      local other = mb.spawn(function() end)
      mb.send(parent, { copy == mb.self(), copy ~= other, mb.self() ~= other })
    end)
    assert.same({ true, true, true }, msg)
  end)

  it("are the same value within one state, so they work as table keys", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local seen = { [mb.self()] = "me" }
      mb.send(mb.self(), { mb.self(), mb.self() })
      local r = mb.receive(1000)
      mb.send(parent, { rawequal(r[1], mb.self()), rawequal(r[1], r[2]), seen[r[1]] })
    end)
    assert.same({ true, true, "me" }, msg)
    local a = node:spawn("waiter")
    local keys = { [a] = "a" }
    node:spawn(function(parent, pid) require("moonbeam").send(parent, { "back", pid }) end, node:self(), a)
    local back = H.wait_for(node, "back")[2]
    assert.is_true(rawequal(a, back))
    assert.equal("a", keys[back])
  end)

  it("are never reused during the node's life", function()
    local msg = H.run_within(node, H.long_timeout, function(parent)
      local mb = require "moonbeam"
      local names, dups, n = {}, 0, 2000
      for _ = 1, n do
        local pid, ref = mb.spawn_monitor(function() end)
        mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
        local s = tostring(pid)
        if names[s] then dups = dups + 1 end
        names[s] = true
      end
      mb.send(parent, { "distinct", dups })
    end)
    assert.same({ "distinct", 0 }, msg)
  end)
end)

describe("mb.make_ref", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("prints as #Ref<...>", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ref = mb.make_ref()
      mb.send(parent, { type(ref), tostring(ref) })
    end)
    assert.equal("userdata", msg[1])
    assert.is_truthy(msg[2]:match("^#Ref<[%d%.]+>$"), msg[2])
  end)

  it("makes node-unique refs, across processes", function()
    node:spawn(function(parent)
      local mb = require "moonbeam"
      local t = {}
      for i = 1, 5000 do t[i] = mb.make_ref() end
      mb.send(parent, t)
    end, node:self())
    node:spawn(function(parent)
      local mb = require "moonbeam"
      local t = {}
      for i = 1, 5000 do t[i] = mb.make_ref() end
      mb.send(parent, t)
    end, node:self())
    local seen, dups, total = {}, 0, 0
    for _ = 1, 2 do
      for _, ref in ipairs(H.wait_for(node, nil)) do
        local s = tostring(ref)
        if seen[s] then dups = dups + 1 end
        seen[s] = true
        total = total + 1
      end
    end
    assert.equal(10000, total)
    assert.equal(0, dups)
  end)

  it("makes refs that compare with == and work as table keys after a round trip", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local a, b = mb.make_ref(), mb.make_ref()
      local by = { [a] = "a" }
      mb.send(mb.self(), { a })
      local back = mb.receive(1000)[1]
      mb.send(parent, { back == a, a ~= b, rawequal(back, a), by[back], a ~= mb.self() })
    end)
    assert.same({ true, true, true, "a", true }, msg)
  end)

  it("never makes a ref that equals a pid", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local refs, pids = {}, { mb.self() }
      for i = 1, 300 do
        refs[i] = mb.make_ref()
        pids[#pids + 1] = mb.spawn(function() end)
      end
      local equal = 0
      for _, r in ipairs(refs) do
        for _, p in ipairs(pids) do
          if r == p or p == r then equal = equal + 1 end
        end
      end
      mb.send(parent, { "equal", equal })
    end)
    assert.same({ "equal", 0 }, msg)
  end)
end)
