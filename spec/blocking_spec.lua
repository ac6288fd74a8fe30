-- SPEC 1: "Blocking" (blocking calls anywhere in Lua code) and "Preemption".
local H = require "helpers.node"

describe("blocking calls", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  -- Each body tells the host "ready" and then blocks; the host answers so that the block is real.
  local function feed(pid, ...)
    H.wait_for(node, "ready")
    for _, v in ipairs { ... } do node:send(pid, v) end
  end

  it("work inside pcall", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "ready")
      local ok, m = pcall(mb.receive)
      local ok2, m2 = pcall(function() return mb.receive(5000) end)
      local ok3 = pcall(mb.sleep, 10)
      mb.send(parent, { "result", ok, m, ok2, m2, ok3 })
    end, node:self())
    feed(pid, "one", "two")
    assert.same({ "result", true, "one", true, "two", true }, H.wait_for(node, "result"))
  end)

  it("work inside xpcall and nested pcalls", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "ready")
      local ok, m = xpcall(function()
        return select(2, pcall(function() return mb.receive(5000) end))
      end, debug.traceback)
      mb.send(parent, { "result", ok, m })
    end, node:self())
    feed(pid, "deep")
    assert.same({ "result", true, "deep" }, H.wait_for(node, "result"))
  end)

  it("let pcall still catch an ordinary error raised after the block", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "ready")
      local ok, err = pcall(function()
        local m = mb.receive(5000)
        error("after " .. m, 0)
      end)
      mb.send(parent, { "result", ok, err })
    end, node:self())
    feed(pid, "receive")
    assert.same({ "result", false, "after receive" }, H.wait_for(node, "result"))
  end)

  it("work inside a coroutine.wrap generator, which still yields its own values", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "ready")
      local gen = coroutine.wrap(function()
        for _ = 1, 3 do
          local m = mb.receive()
          coroutine.yield(m .. "!")
        end
        return "done"
      end)
      mb.send(parent, { "result", gen(), gen(), gen(), gen() })
    end, node:self())
    feed(pid, "a", "b", "c")
    assert.same({ "result", "a!", "b!", "c!", "done" }, H.wait_for(node, "result"))
  end)

  it("work inside coroutine.resume, which reports status as usual", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "ready")
      local co = coroutine.create(function(x)
        mb.sleep(5)
        local m = mb.receive()
        local y = coroutine.yield(x .. m)
        return y * 2
      end)
      local ok1, v1 = coroutine.resume(co, "got:")
      local s1 = coroutine.status(co)
      local ok2, v2 = coroutine.resume(co, 21)
      mb.send(parent, { "result", ok1, v1, s1, ok2, v2, coroutine.status(co) })
    end, node:self())
    feed(pid, "m")
    assert.same({ "result", true, "got:m", "suspended", true, 42, "dead" }, H.wait_for(node, "result"))
  end)

  it("work inside nested coroutines and pcall within them", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "ready")
      local outer = coroutine.wrap(function()
        local inner = coroutine.wrap(function()
          local ok, m = pcall(mb.receive, 5000)
          coroutine.yield(ok and m)
        end)
        coroutine.yield("inner gave " .. tostring(inner()))
      end)
      mb.send(parent, { "result", outer() })
    end, node:self())
    feed(pid, "x")
    assert.same({ "result", "inner gave x" }, H.wait_for(node, "result"))
  end)

  it("keep an error raised inside a coroutine after a block an ordinary error", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "ready")
      local co = coroutine.create(function()
        mb.receive()
        error("inside", 0)
      end)
      local ok, err = coroutine.resume(co)
      mb.send(parent, { "result", ok, err, coroutine.status(co) })
    end, node:self())
    feed(pid, "go")
    assert.same({ "result", false, "inside", "dead" }, H.wait_for(node, "result"))
  end)

  it("work inside a metamethod and a for-in iterator called from Lua code", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "ready")
      local lazy = setmetatable({}, { __index = function(_, k) return k .. "=" .. mb.receive() end })
      local first = lazy.key
      local seen = {}
      for m in function() local v = mb.receive(5000); if v ~= "end" then return v end end do
        seen[#seen + 1] = m
      end
      mb.send(parent, { "result", first, seen })
    end, node:self())
    feed(pid, "v", "i1", "i2", "end")
    assert.same({ "result", "key=v", { "i1", "i2" } }, H.wait_for(node, "result"))
  end)
end)

describe("preemption", function()
  local node
  before_each(function() node = H.start { schedulers = 1 } end)
  after_each(function() node:stop() end)

  -- Start an echo process and have it answer one ping; fails the spec if it cannot.
  local function echo_answers()
    local echo = node:spawn(function()
      local mb = require "moonbeam"
      local from = mb.receive()
      mb.send(from, { "pong", mb.self() })
    end)
    node:send(echo, node:self())
    return H.wait_for(node, "pong")[2] == echo
  end

  -- Kill `pid` from a process and return the reason its monitor saw.
  local function kill(pid)
    local msg = H.run(node, function(parent, target)
      local mb = require "moonbeam"
      local ref = mb.monitor(target)
      mb.exit(target, "kill")
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { "killed", down and down[4] })
    end, pid)
    return msg[2]
  end

  it("stops an endless loop from starving another process on the same scheduler", function()
    local looper = node:spawn(function(parent)
      require("moonbeam").send(parent, "looping")
      while true do end
    end, node:self())
    H.wait_for(node, "looping")
    assert.is_true(echo_answers())
    assert.equal("killed", kill(looper))
  end)

  it("preempts several loopers, one inside pcall", function()
    for i = 1, 3 do
      node:spawn(function(parent, n)
        require("moonbeam").send(parent, "looping")
        if n == 2 then
          pcall(function() while true do end end)
        else
          local x = 0
          while true do x = (x + 1) % 1000 end
        end
      end, node:self(), i)
      H.wait_for(node, "looping")
    end
    assert.is_true(echo_answers())
    assert.is_true(echo_answers())
  end)

  it("preempts code that keeps calling back from C once it returns to Lua", function()
    local looper = node:spawn(function(parent)
      require("moonbeam").send(parent, "looping")
      local t = {}
      for i = 1, 200 do t[i] = (i * 7919) % 211 end
      while true do
        table.sort(t, function(a, b) return a > b end)
        table.sort(t, function(a, b) return a < b end)
        local _ = ("abcdef"):gsub("%w", function(c) return c:upper() end)
      end
    end, node:self())
    H.wait_for(node, "looping")
    assert.is_true(echo_answers())
    assert.equal("killed", kill(looper))
  end)

  it("leaves a preempted process running correctly to its end", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.spawn(function(p)
        local m = require "moonbeam"
        local sum = 0
        for i = 1, 10000000 do sum = sum + i end
        m.send(p, { "sum", sum })
      end, mb.self())
      local ticks = 0
      mb.spawn(function(p)
        local m = require "moonbeam"
        for _ = 1, 5 do m.send(p, "tick") end
      end, mb.self())
      local sum
      while not (sum and ticks == 5) do
        local m = mb.receive(30000)
        if m == nil then break end
        if m == "tick" then ticks = ticks + 1 elseif m[1] == "sum" then sum = m[2] end
      end
      mb.send(parent, { "sum", sum, ticks })
    end)
    assert.same({ "sum", 10000000 * 10000001 // 2, 5 }, msg)
  end)
end)
