-- SPEC 1: the process environment (lazy standard library, require, string methods, the
-- moonbeam module table, pid/ref metatables) and selective receive's match function rules.
-- Each body below runs in a fresh process state: what it touches first is what is tested.
local H = require "helpers.node"

-- Every line of s has something on it (no empty or blank line).
local function no_blank_line(s)
  for line in (s .. "\n"):gmatch("(.-)\n") do
    if not line:match("%S") then return false end
  end
  return true
end

describe("a selective receive's match function", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("cannot call mb.receive, and the message it was matching stays queued", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(mb.self(), "first")
      mb.send(mb.self(), "second")
      local errs = {}
      local got = mb.receive(function(m)
        local ok, err = pcall(mb.receive, 0)
        errs[#errs + 1] = ok and "no error" or err
        return false
      end, 0)
      mb.send(parent, { errs = errs, got = got, after = { mb.receive(0), mb.receive(0), mb.receive(0) } })
    end)
    assert.equal(2, #msg.errs)
    assert.equal("receive: cannot be called from a match function", H.strip(msg.errs[1]))
    assert.equal("receive: cannot be called from a match function", H.strip(msg.errs[2]))
    assert.is_nil(msg.got)
    assert.same({ "first", "second" }, msg.after)
  end)

  it("cannot call mb.demonitor, and the monitor and the message stay", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local child = mb.spawn(function() require("moonbeam").receive() end)
      local ref = mb.monitor(child)
      mb.send(mb.self(), "queued")
      local err
      local got = mb.receive(function(m)
        local ok, e = pcall(mb.demonitor, ref)
        err = ok and "no error" or e
        return false
      end, 0)
      local after = mb.receive(0)
      local still_active = mb.demonitor(ref)
      mb.exit(child, "kill")
      mb.send(parent, { err = err, got = got, after = after, still_active = still_active })
    end)
    assert.equal("demonitor: cannot be called from a match function", H.strip(msg.err))
    assert.is_nil(msg.got)
    assert.equal("queued", msg.after)
    assert.is_true(msg.still_active)
  end)

  it("that raises makes mb.receive raise the same error, and every message stays queued in order", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      for _, m in ipairs { "a", "b", "c" } do mb.send(mb.self(), m) end
      local boom = { "boom" }
      local seen = {}
      local ok, err = pcall(mb.receive, function(m)
        seen[#seen + 1] = m
        if m == "b" then error(boom) end
        return false
      end, 0)
      local after = {}
      for i = 1, 4 do after[i] = mb.receive(0) end
      mb.send(parent, { ok = ok, same_error = err == boom, seen = seen, after = after })
    end)
    assert.is_false(msg.ok)
    assert.is_true(msg.same_error)
    assert.same({ "a", "b" }, msg.seen)
    assert.same({ "a", "b", "c" }, msg.after)
  end)

  it("that raises on a message arriving while receive waits makes receive raise, and the message stays", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(mb.self(), "early")
      mb.send_after(20, mb.self(), "late")
      local ok, err = pcall(mb.receive, function(m)
        if m == "late" then error("late message", 0) end
        return false
      end, 5000)
      mb.send(parent, { ok = ok, err = err, after = { mb.receive(0), mb.receive(0), mb.receive(0) } })
    end)
    assert.is_false(msg.ok)
    assert.equal("late message", msg.err)
    assert.same({ "early", "late" }, msg.after)
  end)
end)

describe("require in a process", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("returns the standard library tables before their globals were touched, the same as the globals", function()
    local msg = H.run(node, function(parent)
      local s, t, m = require "string", require "table", require "math"
      local same = { s == string, t == table, m == math }
      local works = { s.upper("a"), t.concat({ "x", "y" }, "-"), m.max(1, 3) }
      local mb = require "moonbeam"
      mb.send(parent, { same = same, works = works })
    end)
    assert.same({ true, true, true }, msg.same)
    assert.same({ "A", "x-y", 3 }, msg.works)
  end)

  it("returns the other standard libraries before their globals were touched, the same as the globals", function()
    local msg = H.run(node, function(parent)
      local got = {}
      for _, name in ipairs { "coroutine", "io", "os", "utf8", "debug" } do
        local lib = require(name)
        got[#got + 1] = type(lib) == "table" and lib == _G[name]
      end
      local mb = require "moonbeam"
      mb.send(parent, got)
    end)
    assert.same({ true, true, true, true, true }, msg)
  end)

  it("still finds standard libraries once package was touched", function()
    local msg = H.run(node, function(parent)
      local path = package.path
      local u = require "utf8"
      local s = require "string"
      local mb = require "moonbeam"
      mb.send(parent, { type(path), u == utf8, u.char(72, 105), s == string, s.rep("ab", 2) })
    end)
    assert.same({ "string", true, "Hi", true, "abab" }, msg)
  end)

  local function try_lfs(parent, touch)
    if touch then local _ = package.path end
    local ok, lib = pcall(require, "lfs")
    local mb = require "moonbeam"
    mb.send(parent, { "lfs", touch, ok, ok and type(lib) or lib })
  end

  -- lfs is a C module busted itself depends on; if the process's cpath cannot find it,
  -- both processes fail alike and the spec still holds.
  it("finds the same C modules (package.cpath) before package was touched as after, on a node with c_modules", function()
    local cnode = H.start { c_modules = true }
    finally(function() cnode:stop() end)
    local before = H.run(cnode, try_lfs, false)
    local after = H.run(cnode, try_lfs, true)
    assert.same({ "lfs", true, after[3], after[4] }, { before[1], not before[2], before[3], before[4] })
  end)

  it("finds no C module on a node without c_modules, before package was touched or after", function()
    for _, touch in ipairs { false, true } do
      local msg = H.run(node, try_lfs, touch)
      assert.is_false(msg[3])
      assert.equal("module 'lfs' not found:", msg[4]:sub(1, #"module 'lfs' not found:"))
      assert.is_truthy(msg[4]:find("\n\tC modules are off (start the node with c_modules)", 1, true), msg[4])
    end
  end)

  for _, touched in ipairs { false, true } do
    it("of a missing module raises 'module ... not found' listing preload and the files tried, without empty lines"
       .. (touched and " (package touched first)" or ""), function()
      local msg = H.run(node, function(parent, touch)
        if touch then local _ = package.path end
        local ok, err = pcall(require, "nope")
        local mb = require "moonbeam"
        mb.send(parent, { ok, err })
      end, touched)
      assert.is_false(msg[1])
      local err = msg[2]
      assert.equal("string", type(err))
      assert.equal("module 'nope' not found:", err:sub(1, #"module 'nope' not found:"))
      assert.is_truthy(err:find("no field package.preload['nope']", 1, true))
      assert.is_truthy(err:find("no file './nope.lua'", 1, true))
      assert.is_true(no_blank_line(err), "an empty line in:\n" .. err)
    end)
  end
end)

describe("strings in a fresh process", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  -- The body indexes a string with the key it was given before anything else.
  local function index_first(parent, key)
    local v = ("x")[key]
    local mb = require "moonbeam"
    mb.send(parent, { "indexed", v == nil, type(v) })
  end

  it("give nil for a table key before string was touched", function()
    assert.same({ "indexed", true, "nil" }, H.run(node, index_first, {}))
  end)

  it("give nil for a boolean key before string was touched", function()
    assert.same({ "indexed", true, "nil" }, H.run(node, index_first, true))
  end)

  it("give nil for a number key before string was touched", function()
    assert.same({ "indexed", true, "nil" }, H.run(node, index_first, 1))
  end)

  it("have their methods before string was touched", function()
    local msg = H.run(node, function(parent)
      local up = ("abc"):upper()
      local len = ("abcd"):len()
      local f = ("%d-%s"):format(7, "x")
      local mb = require "moonbeam"
      mb.send(parent, { up, len, f, ("x").upper == string.upper })
    end)
    assert.same({ "ABC", 4, "7-x", true }, msg)
  end)
end)

describe("the moonbeam module table", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("lists every function of SPEC 1 through pairs, in a fresh process", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local kinds = {}
      for k, v in pairs(mb) do kinds[k] = type(v) end
      mb.send(parent, kinds)
    end)
    local missing = {}
    for name in ("self spawn spawn_link spawn_monitor send receive link unlink monitor demonitor trap_exit " ..
        "exit register unregister whereis make_ref send_after cancel_timer sleep now is_alive processes info " ..
        "log log_level halt"):gmatch("%S+") do
      if msg[name] ~= "function" then missing[#missing + 1] = name .. "=" .. tostring(msg[name]) end
    end
    assert.same({}, missing)
  end)

  it("lists every function through pairs after some were used", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local _ = mb.self(), mb.now()
      local n = 0
      for _, v in pairs(mb) do if type(v) == "function" then n = n + 1 end end
      mb.send(parent, { n, type(mb.halt) })
    end)
    assert.is_true(msg[1] >= 26, "only " .. msg[1] .. " functions listed")
    assert.equal("function", msg[2])
  end)
end)

describe("pids and refs", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("have a protected metatable in a process: getmetatable returns false, tostring works", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local pid, ref = mb.self(), mb.make_ref()
      local _, mref = mb.spawn_monitor(function() end)
      mb.send(parent, {
        getmetatable(pid), getmetatable(ref), getmetatable(mref), getmetatable(parent),
        tostring(pid), tostring(ref),
      })
    end)
    assert.same({ false, false, false, false }, { msg[1], msg[2], msg[3], msg[4] })
    assert.matches("^<0%.%d+>$", msg[5])
    assert.matches("^#Ref<0%.%d+>$", msg[6])
  end)

  -- Pushing a pid makes no metatable (an idle process that renders nothing saves it):
  -- what renders one (string, the base library, the core's own messages) makes it.
  it("render through string.format in a process that opened nothing before", function()
    local msg = H.run(node, function(parent)
      local s = ("%s|%s"):format(parent, parent)
      local mb = require "moonbeam"
      mb.send(parent, { s, ("%s"):format(mb.make_ref()) })
    end)
    local pid = tostring(node:self())
    assert.equal(pid .. "|" .. pid, msg[1])
    assert.matches("^#Ref<0%.%d+>$", msg[2])
  end)

  it("are named in a failed call's reason in a process that rendered nothing before", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local dead, ref = mb.spawn_monitor(function() end)
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local _, ref2 = mb.spawn_monitor(function(server)
        require("moonbeam.gen_server").call(server, "hello")
      end, dead)
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref2 end, 5000)
      mb.send(parent, { tostring(dead), down[4] })
    end)
    assert.matches("^<0%.%d+>$", msg[1])
    assert.matches("call to " .. msg[1]:gsub("%p", "%%%0") .. ": noproc", msg[2])
  end)

  it("have a protected metatable in the host too", function()
    local pid = node:self()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { "ref", mb.make_ref() })
    end)
    local ref = msg[2]
    assert.is_false(getmetatable(pid))
    assert.is_false(getmetatable(ref))
    assert.matches("^<0%.%d+>$", tostring(pid))
    assert.matches("^#Ref<0%.%d+>$", tostring(ref))
  end)
end)

describe("the host's own pid", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("is a live process whose info, from the host, says it traps exits", function()
    local info = node:info(node:self())
    assert.is_table(info)
    assert.is_true(info.trap_exit)
  end)

  it("is alive and traps exits as seen from a process", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local info = mb.info(parent)
      mb.send(parent, { mb.is_alive(parent), type(info), info and info.trap_exit })
    end)
    assert.same({ true, "table", true }, msg)
  end)
end)

describe("globals in a fresh process", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("read nil for an undefined name, without raising, even as the first access", function()
    local msg = H.run(node, function(parent)
      local first = this_global_is_not_defined          -- luacheck: ignore
      local second = neither_is_this_one                -- luacheck: ignore
      local mb = require "moonbeam"
      mb.send(parent, { "undefined", first == nil, second == nil })
    end)
    assert.same({ "undefined", true, true }, msg)
  end)

  it("have print once it is read, even if rawget did not see it before", function()
    local msg = H.run(node, function(parent)
      local raw_before = rawget(_G, "print")
      local has_print = print ~= nil
      local raw_after = rawget(_G, "print")
      local mb = require "moonbeam"
      mb.send(parent, { raw_before == nil or raw_before == print, has_print, type(print), raw_after == print })
    end)
    assert.same({ true, true, "function", true }, msg)
  end)

  it("can be walked with pairs(_G), listing what was touched and no undefined name", function()
    local msg = H.run(node, function(parent)
      local _ = not_defined_anywhere, print, string  -- luacheck: ignore
      local names = {}
      for k in pairs(_G) do names[k] = true end
      local mb = require "moonbeam"
      mb.send(parent, {
        print = names.print == true, string = names.string == true, require = names.require == true,
        undefined = names.not_defined_anywhere == nil, moonbeam = names.moonbeam == nil,
      })
    end)
    assert.same({ print = true, string = true, require = true, undefined = true, moonbeam = true }, msg)
  end)
end)
