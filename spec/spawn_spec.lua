-- SPEC 1: mb.self, mb.spawn, mb.spawn_link, mb.spawn_monitor and what a new process state holds.
local H = require "helpers.node"

describe("mb.self", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("returns the pid that spawn returned to the spawner", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { "self", mb.self() })
    end, node:self())
    local msg = H.wait_for(node, "self")
    assert.equal(pid, msg[2])
    assert.equal(tostring(pid), tostring(msg[2]))
  end)

  it("returns the same userdata on every call within a process", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { rawequal(mb.self(), mb.self()), type(mb.self()) })
    end)
    assert.same({ true, "userdata" }, msg)
  end)

  it("gives two processes two different pids", function()
    local a = node:spawn(function(parent) require("moonbeam").send(parent, "a") end, node:self())
    local b = node:spawn(function(parent) require("moonbeam").send(parent, "b") end, node:self())
    assert.are_not.equal(a, b)
    assert.are_not.equal(tostring(a), tostring(b))
  end)
end)

describe("mb.spawn", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("returns a pid at once while the new process is still waiting", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      local m = mb.receive()
      mb.send(parent, { "got", m })
    end, node:self())
    assert.equal("userdata", type(pid))
    assert.is_truthy(tostring(pid):match("^<0%.%d+>$"))
    assert.is_not_nil(node:info(pid))
    node:send(pid, "go")
    assert.same({ "got", "go" }, H.wait_for(node, "got"))
  end)

  it("runs a function with the extra arguments", function()
    local msg = H.run(node, function(parent, a, b)
      require("moonbeam").send(parent, { a + b, type(parent) })
    end, 2, 3)
    assert.same({ 5, "userdata" }, msg)
  end)

  it("accepts a function without any upvalue", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function() end)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { "down", down and down[4] })
    end)
    assert.same({ "down", "normal" }, msg)
  end)

  it("runs a module whose chunk returns a function", function()
    node:spawn("echo_args", node:self(), "a", 1)
    assert.same({ "echo_args", 2, "a", 1 }, H.wait_for(node, "echo_args"))
  end)

  it("runs the main of a module whose chunk returns a table", function()
    node:spawn("main_table", node:self(), "b", 2, true)
    assert.same({ "main_table", 3, "b", 2, true }, H.wait_for(node, "main_table"))
  end)

  it("runs a module given in an options table", function()
    node:spawn({ module = "echo_args" }, node:self(), "c")
    assert.same({ "echo_args", 1, "c" }, H.wait_for(node, "echo_args"))
  end)

  it("resolves a dotted module name to a directory, like package.path", function()
    node:spawn("nested.child", node:self())
    assert.same({ "nested.child" }, H.wait_for(node, "nested.child"))
  end)

  it("spawns from inside a process as well as from the host", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local pid = mb.spawn("echo_args", mb.self(), "inner")
      local m = mb.receive(5000)
      mb.send(parent, { "inner", type(pid), m })
    end)
    assert.same({ "inner", "userdata", { "echo_args", 1, "inner" } }, msg)
  end)

  it("raises when the function captures an upvalue, naming it", function()
    local secret = 42
    local err = H.error_of(node.spawn, node, function() return secret end)
    assert.equal("spawn: function captures upvalue 'secret'", err)
  end)

  it("names the captured upvalue even when the function also uses globals", function()
    local counter = 0
    local err = H.error_of(node.spawn, node, function() print(counter) end)
    assert.equal("spawn: function captures upvalue 'counter'", err)
  end)

  it("raises the upvalue error from mb.spawn inside a process too", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local count = 1
      local ok, err = pcall(mb.spawn, function() return count end)
      mb.send(parent, { ok, err })
    end)
    assert.is_false(msg[1])
    assert.equal("spawn: function captures upvalue 'count'", H.strip(msg[2]))
  end)

  it("raises when the module cannot be found, listing the paths searched", function()
    node:stop()
    node = H.start { path = "spec/fixtures/?.lua;spec/fixtures/nested/?.lua" }
    local before = #node:processes()
    local err = H.error_of(node.spawn, node, "no_such_module")
    assert.is_truthy(err:find("no_such_module", 1, true))
    assert.is_truthy(err:find("spec/fixtures/no_such_module.lua", 1, true))
    assert.is_truthy(err:find("spec/fixtures/nested/no_such_module.lua", 1, true))
    assert.equal(before, #node:processes())
  end)

  it("raises at spawn inside a process when the module cannot be found", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok, err = pcall(mb.spawn, "no_such_module")
      mb.send(parent, { ok, err })
    end)
    assert.is_false(msg[1])
    assert.is_truthy(msg[2]:find("spec/fixtures/no_such_module.lua", 1, true))
  end)

  it("raises when the module does not compile", function()
    local err = H.error_of(node.spawn, node, "broken_syntax")
    assert.is_truthy(err:find("broken_syntax", 1, true))
    assert.is_truthy(err:find("near", 1, true))
  end)

  it("raises for a target that is not a module name, a function or an options table", function()
    assert.has_error(function() node:spawn(true) end)
    assert.has_error(function() node:spawn(nil) end)
  end)

  it("raises for an options table without a module", function()
    assert.has_error(function() node:spawn({ max_heap = 4 * 1024 * 1024 }) end)
  end)

  it("passes extra arguments with their nils, keeping the count", function()
    node:spawn(function(parent, ...)
      require("moonbeam").send(parent, { select("#", ...), ... })
    end, node:self(), 1, nil, "x", nil)
    local msg = H.wait_for(node, nil)
    assert.equal(4, msg[1])
    assert.equal(1, msg[2])
    assert.is_nil(msg[3])
    assert.equal("x", msg[4])
    assert.is_nil(msg[5])
  end)

  it("passes no extra arguments as an empty vararg", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.register("zero_args_parent")
      mb.spawn(function(...)
        require("moonbeam").send("zero_args_parent", { "count", select("#", ...) })
      end)
      mb.send(parent, mb.receive(5000))
    end)
    assert.same({ "count", 0 }, msg)
  end)

  it("copies the arguments: the child's changes do not reach the spawner", function()
    local t = { x = 1, inner = { y = 2 } }
    node:spawn(function(parent, arg)
      arg.x, arg.inner.y = 10, 20
      require("moonbeam").send(parent, { "changed", arg.x, arg.inner.y })
    end, node:self(), t)
    assert.same({ "changed", 10, 20 }, H.wait_for(node, "changed"))
    assert.equal(1, t.x)
    assert.equal(2, t.inner.y)
  end)

  it("raises when an argument cannot be sent", function()
    local err = H.error_of(node.spawn, node, function() end, node:self(), print)
    assert.is_truthy(err:find("function", 1, true))
  end)
end)

describe("a new process state", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("has nothing but Lua's standard globals", function()
    local msg = H.run(node, function(parent)
      local allowed = {}
      for name in ("_G _VERSION assert collectgarbage coroutine debug dofile error getmetatable io ipairs " ..
          "load loadfile math next os package pairs pcall print rawequal rawget rawlen rawset require " ..
          "select setmetatable string table tonumber tostring type utf8 warn xpcall"):gmatch("%S+") do
        allowed[name] = true
      end
      local stray = {}
      for k in pairs(_G) do
        if not allowed[k] then stray[#stray + 1] = tostring(k) end
      end
      table.sort(stray)
      local mb = require "moonbeam"
      mb.send(parent, { stray = stray, moonbeam = _G.moonbeam == nil, mb = _G.mb == nil })
    end)
    assert.same({}, msg.stray)
    assert.is_true(msg.moonbeam)
    assert.is_true(msg.mb)
  end)

  it("has the standard libraries working", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local gen = coroutine.wrap(function() coroutine.yield(1) end)
      mb.send(parent, {
        string.format("%d-%s", 7, "x"), table.concat({ "a", "b" }, ","), math.floor(2.5),
        utf8.char(72, 105), type(os.time()), type(io.write), gen(), load("return 1 + 1")(),
        _VERSION, select(2, pcall(error, "e", 0)),
      })
    end)
    assert.same({ "7-x", "a,b", 2, "Hi", "number", "function", 1, 2, "Lua 5.4", "e" }, msg)
  end)

  it("does not see the spawner's globals", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      SPAWNER_MARK = "set by the spawner"
      mb.spawn(function(p)
        require("moonbeam").send(p, { "child sees", SPAWNER_MARK == nil })
      end, mb.self())
      mb.send(parent, mb.receive(5000))
    end)
    assert.same({ "child sees", true }, msg)
  end)

  it("does not see the host's globals", function()
    rawset(_G, "HOST_MARK_FOR_SPAWN_SPEC", true)
    local ok, msg = pcall(H.run, node, function(parent)
      require("moonbeam").send(parent, { "host mark", HOST_MARK_FOR_SPAWN_SPEC == nil })
    end)
    rawset(_G, "HOST_MARK_FOR_SPAWN_SPEC", nil)
    assert(ok, msg)
    assert.same({ "host mark", true }, msg)
  end)

  it("gets moonbeam through require, one table with every SPEC function", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local missing = {}
      for name in ("self spawn spawn_link spawn_monitor send receive link unlink monitor demonitor trap_exit " ..
          "exit register unregister whereis make_ref send_after cancel_timer sleep now is_alive processes " ..
          "info log log_level halt"):gmatch("%S+") do
        if type(mb[name]) ~= "function" then missing[#missing + 1] = name end
      end
      mb.send(parent, { missing = missing, same = rawequal(mb, require("moonbeam")) })
    end)
    assert.same({}, msg.missing)
    assert.is_true(msg.same)
  end)

  it("can require a module on the node's path", function()
    local msg = H.run(node, function(parent)
      local lib = require "shout"
      require("moonbeam").send(parent, lib.shout("hi"))
    end)
    assert.equal("HI!", msg)
  end)

  it("refuses debug.sethook and keeps running", function()
    local msg = H.run(node, function(parent)
      local set = pcall(debug.sethook, function() end, "l")
      local clear = pcall(debug.sethook)
      require("moonbeam").send(parent, { "sethook", set, clear })
    end)
    assert.same({ "sethook", false, false }, msg)
  end)

  it("keeps the spawned function's debug info, so an error names its line", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function()
        error("boom")
      end)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { "reason", down and down[4] })
    end)
    assert.equal("reason", msg[1])
    assert.equal("string", type(msg[2]))
    assert.is_truthy(msg[2]:match(":%d+: boom$"), msg[2])
  end)
end)

describe("the body of a process", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("is the main coroutine: running says so, it cannot yield, a coroutine in it can", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local main, ismain = coroutine.running()
      local yielded, err = pcall(coroutine.yield, 1)
      local co = coroutine.create(function() return coroutine.isyieldable(), coroutine.yield(2) end)
      local _, two = coroutine.resume(co)
      mb.send(parent, { ismain, coroutine.isyieldable(), coroutine.status(main), yielded, err, two,
                        select(2, coroutine.resume(co, "x")) })
    end)
    assert.same({ true, false, "running", false, "attempt to yield from outside a coroutine", 2, true, "x" }, msg)
  end)

  -- A to-be-closed handler sends "closed ..." to the parent. A process ends before
  -- its EXIT and DOWN go out, so a handler that ran at its end would have sent
  -- before the DOWN: a receive after the DOWN that finds nothing proves none ran.
  local child = [[
    return function(parent, how)
      local mb = require "moonbeam"
      local lua <close> = setmetatable({}, { __close = function() mb.send(parent, "closed lua") end })
      local c <close> = setmetatable({}, { __close = coroutine.wrap(function() mb.send(parent, "closed c") end) })
      local main = coroutine.running()
      -- held by a local: collected only when the state is closed
      local finalized <const> = setmetatable({}, { __gc = function()
        mb.send(parent, { "gc", coroutine.resume(main) })
      end })
      mb.send(parent, "ready")
      if how == "error" then error("boom") end
      if how == "wait" then mb.receive() end
    end
  ]]
  local function ending(how)
    return H.run(node, function(parent, src, how)
      local mb = require "moonbeam"
      local pid, ref = mb.spawn_monitor(load(src)(), mb.self(), how)
      assert(mb.receive(function(m) return m == "ready" end, 5000))
      if how == "wait" then mb.exit(pid, "kill") end
      local seen = {}
      while true do
        local m = mb.receive(5000)
        if type(m) == "table" and m[1] == "DOWN" and m[2] == ref then seen[#seen + 1] = "down " .. tostring(m[4]); break end
        if type(m) == "table" and m[1] == "gc" then m = "gc " .. tostring(m[2]) .. " " .. tostring(m[3]) end
        seen[#seen + 1] = tostring(m)
      end
      seen[#seen + 1] = tostring(mb.receive(0))
      mb.send(parent, seen)
    end, child, how)
  end

  it("runs none of its pending to-be-closed handlers when it is killed", function()
    assert.same({ "gc false cannot resume non-suspended coroutine", "down killed", "nil" }, ending("wait"))
  end)

  it("runs none of its pending to-be-closed handlers when it raises", function()
    local seen = ending("error")
    assert.equal("gc false cannot resume non-suspended coroutine", seen[1])
    assert.is_truthy(seen[2]:match("^down .*: boom$"), seen[2])
    assert.same({ "nil" }, { seen[3] })
    assert.equal(3, #seen)
  end)

  it("closes its to-be-closed variables as Lua does when it returns", function()
    assert.same({ "closed c", "closed lua", "gc false cannot resume non-suspended coroutine", "down normal", "nil" },
                ending("return"))
  end)
end)

describe("mb.spawn_link", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("links atomically: a child that exits at once is seen with its own reason", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      local pid = mb.spawn_link(function() require("moonbeam").exit("early") end)
      local m = mb.receive(function(x) return x[1] == "EXIT" end, 5000)
      mb.send(parent, { "exit", m and m[2] == pid, m and m[3] })
    end)
    assert.same({ "exit", true, "early" }, msg)
  end)

  it("takes the same targets as spawn, with arguments", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      mb.spawn_link("echo_args", mb.self(), 1)
      mb.spawn_link({ module = "main_table" }, mb.self(), 2)
      local a = mb.receive(function(m) return m[1] == "echo_args" end, 5000)
      local b = mb.receive(function(m) return m[1] == "main_table" end, 5000)
      mb.send(parent, { a, b })
    end)
    assert.same({ { "echo_args", 1, 1 }, { "main_table", 1, 2 } }, msg)
  end)

  it("kills a caller that does not trap exits when the child ends abnormally", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local middle, ref = mb.spawn_monitor(function()
        local m = require "moonbeam"
        m.spawn_link(function() require("moonbeam").exit("boom") end)
        m.receive()
      end)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { "middle", down and down[3] == middle, down and down[4] })
    end)
    assert.same({ "middle", true, "boom" }, msg)
  end)

  it("raises like spawn for a module that cannot be found, and links nothing", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok, err = pcall(mb.spawn_link, "no_such_module")
      mb.send(parent, { ok, err, #mb.info(mb.self()).links })
    end)
    assert.is_false(msg[1])
    assert.is_truthy(msg[2]:find("no_such_module", 1, true))
    assert.equal(0, msg[3])
  end)

  it("raises the upvalue error", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local captured = {}
      local ok, err = pcall(mb.spawn_link, function() return captured end)
      mb.send(parent, { ok, err })
    end)
    assert.is_false(msg[1])
    assert.equal("spawn: function captures upvalue 'captured'", H.strip(msg[2]))
  end)
end)

describe("mb.spawn_monitor", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("returns the pid and a ref, and DOWN carries both when the child ends", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local pid, ref = mb.spawn_monitor(function() end)
      local down = mb.receive(function(m) return m[1] == "DOWN" end, 5000)
      mb.send(parent, { type(pid), type(ref), down and down[2] == ref, down and down[3] == pid, down and down[4] })
    end)
    assert.same({ "userdata", "userdata", true, true, "normal" }, msg)
  end)

  it("monitors atomically: a child that exits at once is seen with its own reason", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function() require("moonbeam").exit("early") end)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { "down", down and down[4] })
    end)
    assert.same({ "down", "early" }, msg)
  end)

  it("does not link: the caller outlives a crashing child", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor(function() require("moonbeam").exit("boom") end)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.receive(function() return false end, 300)
      mb.send(parent, { "alive", down and down[4], #mb.info(mb.self()).links })
    end)
    assert.same({ "alive", "boom", 0 }, msg)
  end)

  it("takes the same targets as spawn, with arguments", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _, ref = mb.spawn_monitor("echo_args", mb.self(), "m")
      local a = mb.receive(function(m) return m[1] == "echo_args" end, 5000)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(parent, { a, down and down[4] })
    end)
    assert.same({ { "echo_args", 1, "m" }, "normal" }, msg)
  end)

  it("raises like spawn for a module that cannot be found", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok, err = pcall(mb.spawn_monitor, "no_such_module")
      mb.send(parent, { ok, err })
    end)
    assert.is_false(msg[1])
    assert.is_truthy(msg[2]:find("no_such_module", 1, true))
  end)
end)
