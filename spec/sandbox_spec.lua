-- SPEC 1 "No Lua code can reach the core's private values or corrupt memory": the
-- restricted debug table, text-only load/loadfile/dofile, and one case per hole a
-- review found. A hostile script runs on a real node (the moonbeam command), so a
-- crash shows as an exit status instead of taking the spec run down with it.
local H = require "helpers.node"
local C = require "helpers.cli"

-- Write `src` to a temporary script and run it with the moonbeam command (`env`:
-- {NAME = value} added to its environment).
local function run_source(src, args, env)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(src)
  f:close()
  local argv = {}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = path
  local r = C.run(argv, { env = env, timeout = 90 })   -- an ASan build on a loaded machine
  os.remove(path)
  return r
end

-- Run `body` (Lua source, the body of a spawned function) as a process of a fresh
-- node; then check that the node still serves another process. Returns the run,
-- the hostile process's exit reason and the lines the body printed.
local function hostile(body, opts)
  local r = run_source(([[
local mb = require "moonbeam"
local _, ref = mb.spawn_monitor(%s)
local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 30000)
mb.spawn(function(p) require("moonbeam").send(p, "still serving") end, mb.self())
print("node: " .. (down and "down" or "no down"), mb.receive(function(m) return m == "still serving" end, 30000))
print("reason: " .. (down and tostring(down[4]) or "?"))
]]):format(opts and opts.module and ("%q"):format(opts.module) or
             "function()\n  local mb = require 'moonbeam'\n" .. body .. "\nend"),
    opts and opts.args, opts and opts.env)
  assert.equal(0, r.status, "the node did not survive: " .. r.stderr)
  local lines, reason = {}, nil
  for _, line in ipairs(r.out) do
    if line:sub(1, 6) == "node: " then
      assert.equal("node: down\tstill serving", line, r.stderr)
    elseif line:sub(1, 8) == "reason: " then
      reason = line:sub(9)
    else
      lines[#lines + 1] = line
    end
  end
  assert.is_truthy(reason, "the node did not answer: " .. r.stdout .. r.stderr)
  return r, reason, lines
end

describe("the debug library of a process", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("holds only traceback, getinfo and a refusing sethook", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local names = {}
      for k in pairs(debug) do names[#names + 1] = k end
      table.sort(names)
      local ok, err = pcall(debug.sethook, function() end, "l")
      mb.send(parent, { names, ok, err, require("debug") == debug, package.loaded.debug == debug,
                        type(debug.traceback("x")), debug.getinfo(1, "S").what })
    end)
    assert.same({ "getinfo", "sethook", "traceback" }, msg[1])
    assert.is_false(msg[2])
    assert.is_truthy(msg[3]:find("refused", 1, true), msg[3])
    assert.is_true(msg[4])
    assert.is_true(msg[5])
    assert.equal("string", msg[6])
    assert.equal("Lua", msg[7])
  end)

  it("is the restricted one however it is first reached", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local via_require = require "debug"   -- before the global was touched
      mb.send(parent, { via_require.getregistry == nil, via_require.getlocal == nil, debug == via_require })
    end)
    assert.same({ true, true, true }, msg)
  end)
end)

describe("load, loadfile and dofile in a process", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("load text chunks as usual, with a chunk name and an env", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local f = load("return 1 + 1")
      local g = load("return x", "=named", "t", { x = "from env" })
      local parts, i = { "return ", "'read", "er'" }, 0
      local h = load(function() i = i + 1; return parts[i] end)
      local e = load("return y", "c", "bt", nil)   -- env given as nil: no globals at all
      local bad, err = load("return +")
      mb.send(parent, { f(), g(), h(), (pcall(e)), bad, type(err) })
    end)
    assert.equal(2, msg[1])
    assert.equal("from env", msg[2])
    assert.equal("reader", msg[3])
    assert.is_false(msg[4])
    assert.equal(nil, msg[5])
    assert.equal("string", msg[6])
  end)

  it("refuses binary chunks with nil and a message, whatever the mode", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local bc = string.dump(function() return "loaded" end)
      local res = {}
      for _, mode in ipairs { false, "b", "bt", "t" } do
        local f, err
        if mode then f, err = load(bc, "bin", mode) else f, err = load(bc) end
        res[#res + 1] = { f == nil, type(err) }
      end
      local sent = false
      local f, err = load(function() if sent then return nil end; sent = true; return bc end, "=r", "b")
      res[#res + 1] = { f == nil, type(err) }
      -- mode "b" never loads, a text chunk included
      f, err = load("return 1", "text", "b")
      res[#res + 1] = { f == nil, type(err) }
      mb.send(parent, res)
    end)
    for i, r in ipairs(msg) do
      assert.same({ true, "string" }, r, "case " .. i)
    end
  end)

  it("refuses a malformed binary chunk instead of running it", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local bc = string.dump(function(a, b) return a + b end)
      -- corrupt the code: the loader would take it as it is
      local bad = bc:sub(1, #bc - 40) .. string.rep("\255", 40)
      local f, err = load(bad)
      mb.send(parent, { f == nil, type(err) })
    end)
    assert.same({ true, "string" }, msg)
  end)

  it("loadfile and dofile take text files and refuse binary ones", function()
    local text, bin = os.tmpname(), os.tmpname()
    local f = assert(io.open(text, "w"))
    f:write("return 'from text', ...")
    f:close()
    f = assert(io.open(bin, "wb"))
    f:write(string.dump(function() return "from binary" end))
    f:close()
    local msg = H.run(node, function(parent, text, bin)
      local mb = require "moonbeam"
      local lt = loadfile(text)
      local lb, eb = loadfile(bin)
      local lbb, ebb = loadfile(bin, "b")
      local okd, dt = pcall(dofile, text)
      local okb, db = pcall(dofile, bin)
      local env = loadfile(text, "t", {})
      mb.send(parent, { lt("x"), lb == nil, type(eb), lbb == nil, type(ebb), okd, dt, okb, type(db), env() })
    end, text, bin)
    os.remove(text)
    os.remove(bin)
    assert.same({ "from text", true, "string", true, "string", true, "from text", false, "string", "from text" }, msg)
  end)
end)

describe("a hostile process", function()
  it("cannot swap the decoder's key cache through the registry", function()
    local _, reason = hostile [[
  local me = mb.self()
  mb.send(me, { key = 1 }); mb.receive()
  for k, v in pairs(debug.getregistry()) do
    if type(k) == "userdata" and type(v) == "userdata" then debug.getregistry()[k] = me end
  end
  mb.send(me, { key = 2, other = 3 }); mb.receive()
  mb.send(me, { key = 2, other = 3 }); mb.receive()
]]
    assert.is_truthy(reason:find("getregistry", 1, true), reason)
  end)

  it("cannot load bytecode that Lua does not check", function()
    local _, reason = hostile [[
  local bc = string.dump(function(...) local a, b, c = ...; return a, b, c end)
  local f = assert(load((bc:gsub("\x0f", "\xff"))))
  f()
]]
    assert.is_truthy(reason:find("binary", 1, true), reason)
  end)

  it("cannot change a C function's upvalues", function()
    hostile [[
  local gen = coroutine.wrap(function() coroutine.yield(1) end)
  debug.setupvalue(gen, 1, 42)
  gen()
]]
  end)

  it("cannot empty the key cache's slots", function()
    hostile [[
  local me = mb.self()
  mb.send(me, { key = 1 }); mb.receive()
  for _, v in pairs(debug.getregistry()) do
    if type(v) == "userdata" and v ~= me then
      for i = 1, 64 do debug.setuservalue(v, nil, i) end
    end
  end
  collectgarbage()
  mb.send(me, { key = 1 }); mb.receive()
]]
  end)

  it("cannot rewrite a C frame's slots before its continuation runs", function()
    hostile [[
  local main = coroutine.running()
  local co = coroutine.create(function()
    for level = 0, 4 do
      local info = debug.getinfo(main, level, "f")
      if info and info.func == coroutine.resume then debug.setlocal(main, level, 1, 42) end
    end
    mb.receive(1)
  end)
  coroutine.resume(co)
]]
  end)

  it("cannot run the supervisor spec checker by hand, with a pid or anything else", function()
    local _, reason, out = hostile [[
  local sup = require "moonbeam.supervisor"
  local found = {}
  local spec = setmetatable({}, { __index = function()
    for level = 1, 10 do
      local info = debug.getinfo(level, "fS")
      if info and info.what == "C" then found[#found + 1] = info.func end
    end
  end })
  local ok = pcall(sup.start_link, spec)
  local refused = 0
  for _, f in ipairs(found) do
    for _, args in ipairs { { "x", {} }, { mb.self(), {} }, { mb.make_ref(), {} }, { {}, {} } } do
      local called, err = pcall(f, table.unpack(args))
      if not called and err == "not for scripts" then refused = refused + 1 end
    end
  end
  print(ok, #found > 0, refused > 0)
]]
    assert.same({ "true\ttrue\ttrue" }, out)
    assert.equal("normal", reason)
  end)

  it("cannot join or read upvalues", function()
    hostile [[
  local a, b = 1, 2
  local function f() return a end
  local function g() return b end
  debug.upvaluejoin(f, 1, g, 1)
]]
  end)

  it("cannot run selective receive's matcher by hand", function()
    local _, reason, out = hostile [[
  local me = mb.self()
  mb.send(me, "first"); mb.send(me, "second")
  local matcher
  mb.receive(function(m) matcher = debug.getinfo(2, "f").func; return true end, 0)
  local results = {}
  for _, args in ipairs { { me, function() return true end }, {}, { 1, 2 } } do
    local ok, err = pcall(matcher, table.unpack(args))
    results[#results + 1] = ok and "called" or "refused"
  end
  -- from inside a match function too
  local inner
  mb.receive(function(m) inner = { pcall(matcher, me, function() return true end) }; return true end, 0)
  results[#results + 1] = inner[1] and "called" or "refused"
  print(table.concat(results, " "))
  mb.send(me, "third")
  print(mb.receive(1000))
]]
    assert.same({ "refused refused refused refused", "third" }, out)
    assert.equal("normal", reason)
  end)

  it("cannot break the moonbeam module through its metatable", function()
    local _, reason, out = hostile [[
  local mt = getmetatable(mb)
  print((pcall(mt.__index, 5, "self")), (pcall(mt.__index, nil, "send")))
  print((pcall(mt.__pairs)), (pcall(mt.__pairs, 7)))
]]
    assert.same({ "false\tfalse", "false\tfalse" }, out)
    assert.equal("normal", reason)
  end)

  -- Strings share _G's lazy metatable until string opens, and its __index stays
  -- reachable after: what package.loaded.string holds then is the script's.
  it("cannot crash the node through the lazy string methods with a non-table string library", function()
    local _, reason, out = hostile [[
  local idx = getmetatable(_G).__index
  package.loaded.string = 42
  print(type(("x").len), (pcall(idx, "x", "len")), select(2, pcall(idx, "x", "len")) == nil)
  package.loaded.string = "not a table"
  print(type(("x").upper))
]]
    assert.same({ "nil	true	true", "nil" }, out)
    assert.equal("normal", reason)
  end)

  it("cannot open a library that does not exist through package.preload", function()
    local _, reason, out = hostile [[
  print((pcall(package.preload.table, "no such library")))
]]
    assert.same({ "false" }, out)
    assert.equal("normal", reason)
  end)

  it("gets Lua's own error from a coroutine.wrap generator that resumes itself", function()
    local _, reason, out = hostile [[
  local gen
  gen = coroutine.wrap(function() gen() end)
  print(pcall(gen))
  local outer
  outer = coroutine.wrap(function()
    local inner = coroutine.wrap(function() return pcall(outer) end)
    return inner()
  end)
  print(pcall(outer))
]]
    assert.equal(2, #out, reason)
    assert.is_truthy(out[1]:find("^false\t.*non%-suspended coroutine"), out[1])
    assert.is_truthy(out[2]:find("^true\tfalse\t.*non%-suspended coroutine"), out[2])
    assert.equal("normal", reason)
  end)

  it("calls every C function it finds on its stacks with junk, and the node lives on", function()
    local _, reason, out = hostile [[
  local found, seen = {}, {}
  local skip = { [print] = true, [mb.exit] = true, [mb.halt] = true, [os.exit] = true, [error] = true }
  local function collect(thread)
    for level = 0, 30 do
      local info
      if thread then info = debug.getinfo(thread, level, "fS") else info = debug.getinfo(level + 2, "fS") end
      if not info then break end
      if info.what == "C" and not seen[info.func] and not skip[info.func] then
        seen[info.func] = true
        found[#found + 1] = info.func
      end
    end
  end
  local me = mb.self()
  mb.send(me, "m")
  mb.receive(function() collect(); return true end, 0)
  mb.receive(function() collect(); return false end, 0)
  table.sort({ 3, 2, 1 }, function(a, b) collect(); return a < b end)
  tostring(setmetatable({}, { __tostring = function() collect(); return "" end }))
  mb.log_level("none")
  mb.log("info", "%s", setmetatable({}, { __tostring = function() collect(); return "" end }))
  string.gsub("ab", ".", function() collect() end)
  coroutine.wrap(function() collect() end)()
  local co = coroutine.create(function() collect(); coroutine.yield() end)
  coroutine.resume(co)
  collect(co)
  collect(coroutine.running())
  setmetatable({}, { __gc = function() collect() end })
  collectgarbage()
  local junk = { { me }, { me, me }, { {}, "x" }, { "x", me, 1 }, { 1, 2, 3 }, { coroutine.running() } }
  local calls = 0
  for _, f in ipairs(found) do
    for _, args in ipairs(junk) do
      pcall(f, table.unpack(args))
      calls = calls + 1
    end
  end
  print(#found, calls)
]]
    local n = tonumber(out[1] and out[1]:match("^(%d+)"))
    assert.is_true(n ~= nil and n >= 5, out[1])
    assert.equal("normal", reason)
  end)
end)

describe("C modules", function()
  -- The shared Lua core: its luaopen_debug is the whole debug library (getregistry,
  -- getupvalue, ...). Any path would do: the refusal comes before the file is opened.
  local liblua
  do
    local ls = io.popen("ls /usr/lib/*/liblua5.4.so.0 /usr/lib/liblua5.4.so.0 2>/dev/null")
    liblua = ls:read("l") or "/usr/lib/liblua5.4.so.0"
    ls:close()
  end
  local refused = "package.loadlib: refused (C modules are off; start the node with c_modules)"
  local off = "C modules are off (start the node with c_modules)"
  -- Lua source: print require(name)'s outcome on one line, the debug library's getregistry if it loaded.
  local try_require = [[
  local function try_require(name)
    local ok, v = pcall(require, name)
    print("require " .. name, ok, ok and type(v) == "table" and type(v.getregistry) or (tostring(v):gsub("\n", "|")))
  end
]]

  -- one line of a `module 'NAME' not found:` list ending with the C modules line
  local function not_found(line, name)
    assert.is_truthy(line:find(("require %s\tfalse\tmodule '%s' not found:|"):format(name, name), 1, true), line)
    assert.equal("|\t" .. off, line:sub(-#off - 2), line)
  end

  it("are off by default: package.loadlib refuses before it opens anything", function()
    local _, reason, out = hostile(([[
  local lib = %q
  local f, err, where = package.loadlib(lib, "luaopen_debug")
  print(type(f), err, where)
  if f then print("getregistry: " .. type(f().getregistry)) end
  print(package.loadlib("/nonexistent/lib.so", "*"))
]]):format(liblua))
    assert.same({ "nil\t" .. refused .. "\tabsent", "nil\t" .. refused .. "\tabsent" }, out)
    assert.equal("normal", reason)
  end)

  it("are off by default: require does not search package.cpath", function()
    local _, reason, out = hostile(try_require .. ([[
  package.cpath = %q
  try_require("x-debug")   -- C searcher: luaopen_debug in the file cpath names
  try_require("x.debug")
  print(#package.searchers)
]]):format(liblua))
    not_found(out[1], "x-debug")
    not_found(out[2], "x.debug")
    assert.equal("3", out[3])
    assert.equal("normal", reason)
  end)

  it("are off by default: the light require (package untouched) does not search LUA_CPATH", function()
    local _, reason, out = hostile(try_require .. [[
  try_require("x-debug")
  try_require("lfs")
]], { env = { LUA_CPATH_5_4 = liblua, LUA_CPATH = liblua } })
    not_found(out[1], "x-debug")
    not_found(out[2], "lfs")
    assert.equal("normal", reason)
  end)

  it("are off by default, and Lua's loadlib and searchers stay out of reach", function()
    local _, reason, out = hostile(try_require .. ([[
  local lib = %q
  local p = require "package"
  print("same", p == package, package.loaded.package == p)
  print("loadlib", select(2, p.loadlib(lib, "luaopen_debug")))
  for i, searcher in ipairs(p.searchers) do
    print("searcher " .. i, type(searcher("x-debug")))
  end
  -- a package library opened again, watched through the metamethods of the
  -- tables it is stored in (require is called while it is being set)
  getmetatable(_G).__newindex = function(t, k, v)
    rawset(t, k, v)
    if k == "require" then try_require("x-debug") end
    if k == "package" then print("_G.package.loadlib", select(2, v.loadlib(lib, "luaopen_debug"))) end
  end
  setmetatable(p.loaded, { __newindex = function(t, k, v)
    rawset(t, k, v)
    if k == "package" then print("loaded.package.loadlib", select(2, v.loadlib(lib, "luaopen_debug"))) end
  end })
  p.loaded.package, _G.package, _G.require = nil, nil, nil
  local q = package
  print("again", q ~= p, #q.searchers, select(2, q.loadlib(lib, "luaopen_debug")))
  try_require("x-debug")
]]):format(liblua), { env = { LUA_CPATH_5_4 = liblua, LUA_CPATH = liblua } })
    assert.equal("same\ttrue\ttrue", out[1])
    assert.equal("loadlib\t" .. refused .. "\tabsent", out[2])
    assert.same({ "searcher 1\tstring", "searcher 2\tstring", "searcher 3\tstring" }, { out[3], out[4], out[5] })
    assert.equal("loaded.package.loadlib\t" .. refused .. "\tabsent", out[6])
    assert.equal("_G.package.loadlib\t" .. refused .. "\tabsent", out[7])
    assert.equal("again\ttrue\t3\t" .. refused .. "\tabsent", out[8])
    not_found(out[9], "x-debug")
    assert.equal(9, #out, table.concat(out, "\n"))
    assert.equal("normal", reason)
  end)

  it("load from package.cpath, LUA_CPATH and package.loadlib under --c-modules", function()
    local _, reason, out = hostile(try_require .. ([[
  try_require("x-debug")   -- the light require, from LUA_CPATH_5_4
  print(type(package.loadlib(%q, "luaopen_debug")))
  print(#package.searchers)
]]):format(liblua), { args = { "--c-modules" }, env = { LUA_CPATH_5_4 = liblua } })
    assert.same({ "require x-debug\ttrue\tfunction", "function", "4" }, out)
    assert.equal("normal", reason)
  end)
end)

describe("the standard libraries moonbeam changes", function()
  -- A metamethod on _G or package.loaded runs while a library is being stored there:
  -- what it sees must already be moonbeam's coroutine, os and debug.
  it("are changed before a metamethod on _G or package.loaded sees them, by any route", function()
    local _, reason, out = hostile [[
  local seen, stale = 0, {}
  local original_resume, original_yield
  local function watch(where)
    return function(t, k, v)
      rawset(t, k, v)
      if k ~= "coroutine" and k ~= "os" and k ~= "debug" then return end
      seen = seen + 1
      local now, names = {}, {}
      for name, f in pairs(v) do now[name] = f; names[#names + 1] = name end
      if k == "coroutine" and not original_resume then original_resume, original_yield = v.resume, v.yield end
      if k == "debug" then
        table.sort(names)
        if table.concat(names, " ") ~= "getinfo sethook traceback" then stale[#stale + 1] = where .. " debug: " .. table.concat(names, " ") end
      end
      -- compared once the route is done: a function changed after this is one a script could keep
      stale[#stale + 1] = function()
        for name, f in pairs(v) do if now[name] ~= f then return where .. " " .. k .. "." .. name end end
      end
    end
  end
  getmetatable(_G).__newindex = watch("_G")
  -- the package library untouched: the lazy global and the light require
  local _ = coroutine
  require "os"
  _ = debug
  local p = package
  setmetatable(p.loaded, { __newindex = watch("package.loaded") })
  local routes = {
    global = function(name) return _G[name] end,
    require = function(name) return require(name) end,
    preload = function(name) return p.preload[name](name) end,
  }
  for _, route in ipairs { "require", "global", "preload" } do
    for _, name in ipairs { "coroutine", "os", "debug" } do
      rawset(_G, name, nil)
      rawset(p.loaded, name, nil)
      routes[route](name)
    end
  end
  local changed = {}
  for _, s in ipairs(stale) do
    if type(s) == "function" then s = s() end
    if s then changed[#changed + 1] = s end
  end
  print("seen " .. seen, table.concat(changed, ", "))
  -- the first resume a script could keep: a core yield inside is passed on, not returned
  -- ("later" comes only once this process waits in receive)
  mb.spawn(function(waiter)
    local mb = require "moonbeam"
    while mb.info(waiter) and mb.info(waiter).status ~= "waiting" do mb.sleep(1) end
    mb.send(waiter, "later")
  end, mb.self())
  local co = coroutine.create(function() return mb.receive(function(m) return m == "later" end) end)
  print(original_resume(co))
  print(pcall(original_yield, "out of the body"))
]]
    assert.equal("seen 21\t", out[1])
    assert.equal("true\tlater", out[2])
    assert.is_truthy(out[3]:find("^false\t.*attempt to yield from outside a coroutine"), out[3])
    assert.equal(3, #out, table.concat(out, "\n"))
    assert.equal("normal", reason)
  end)

  -- Run a node from a plain lua5.4 (as an embedding program would) whose one process
  -- keeps the os.exit a metamethod on `watched` ("_G" or "package.loaded") sees and
  -- calls it with 7: Lua's own os.exit would end the whole program there.
  local function captured_exit(watched)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(([[
package.cpath = %q .. "/?.so;" .. package.cpath
local node = require("moonbeam.host").start { schedulers = 1 }
local pid = node:spawn(function(host, watched)
  local mb = require "moonbeam"
  mb.link(host)
  local exit
  local mt = getmetatable(_G)
  if watched == "package.loaded" then mt = {}; setmetatable(package.loaded, mt) end
  mt.__newindex = function(t, k, v) rawset(t, k, v); if k == "os" then exit = v.exit end end
  local _ = os
  print("captured", type(exit))
  exit(7)
  print("after exit")
end, node:self(), %q)
local m = node:receive(function(m) return type(m) == "table" and m[1] == "EXIT" and m[2] == pid end, 10000)
print("host: exit " .. (m and tostring(m[3]) or "none"), "status " .. node:stop())
]]):format(C.build, watched))
    f:close()
    local r = C.run({ path }, { bin = "lua5.4" })
    os.remove(path)
    return r
  end

  for _, watched in ipairs { "_G", "package.loaded" } do
    it("make an os.exit kept through " .. watched .. " halt the node, never the program", function()
      local r = captured_exit(watched)
      assert.equal(0, r.status, "the program ended: " .. r.stdout .. r.stderr)
      assert.same({ "captured\tfunction", "host: exit normal\tstatus 7" }, r.out)
    end)
  end
end)

describe("the first moments and the crash report of a process", function()
  -- Lua code that runs while the core writes a crash report (the reason's
  -- __tostring, finalizers) runs on the process's main state, where the core's own
  -- C functions are on the stack.
  it("give the reason's __tostring and finalizers no private C function to call", function()
    local _, reason = hostile [[
  local me = mb.self()
  local function poke(from)
    for level = from, 12 do
      local info = debug.getinfo(level, "fS")
      if not info then break end
      if info.what == "C" and info.func ~= error then
        for _, args in ipairs { { me }, { "x" }, { {} }, {} } do pcall(info.func, table.unpack(args)) end
      end
    end
  end
  collectgarbage("incremental", 1, 1000)   -- collect all the time, finalize eagerly
  local function arm()
    setmetatable({}, { __gc = function() poke(2); arm() end })
  end
  for _ = 1, 50 do arm() end
  local t = {}
  for i = 1, 2000 do t[i] = { i } end
  error(setmetatable({ "boom" }, { __tostring = function() poke(2); return string.rep("r", 3000) end }))
]]
    assert.is_truthy(reason:find("table:", 1, true), reason)   -- the error value, copied
  end)

  it("give a module process's body nothing to misuse in its boot function", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. C.quote(dir)))
    local f = assert(io.open(dir .. "/pokes_boot.lua", "w"))
    f:write [[
local mb = require "moonbeam"
return function()
  local me = mb.self()
  local n = 0
  for level = 1, 12 do
    local info = debug.getinfo(level, "fS")
    if not info then break end
    if info.what == "C" then
      n = n + 1
      for _, args in ipairs { { me }, { "x" }, { {} }, { function() return 7 end, 1 },
                               { function() return { main = function() return 1 end } end, 5 } } do
        pcall(info.func, table.unpack(args))
      end
    end
  end
  print("C functions below the body: " .. n)
end
]]
    f:close()
    local _, reason, out = hostile(nil, { module = "pokes_boot", args = { "-P", dir .. "/?.lua" } })
    os.remove(dir .. "/pokes_boot.lua")
    os.remove(dir)
    assert.same({ "C functions below the body: 1" }, out)
    assert.equal("normal", reason)
  end)
end)

describe("print", function()
  it("prints a long first argument followed by more", function()
    local r = run_source [[
print(string.rep("a", 3000), "b")
print(string.rep("c", 5000), string.rep("d", 5000), 3, "e")
]]
    assert.equal(0, r.status, r.stderr)
    assert.equal(string.rep("a", 3000) .. "\tb", r.out[1])
    assert.equal(string.rep("c", 5000) .. "\t" .. string.rep("d", 5000) .. "\t3\te", r.out[2])
  end)
end)

describe("the host's decoder", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  -- The host is a plain Lua state with the whole debug library: the place where the
  -- decoder's check of its key cache can be put to the test.
  it("does not take another userdata for its key cache", function()
    local me = node:self()
    node:send(me, { key = 1 })
    assert.same({ key = 1 }, H.wait_for(node))
    local reg, swapped = debug.getregistry(), {}
    for k, v in pairs(reg) do
      if type(k) == "userdata" and type(v) == "userdata" and v ~= me then
        reg[k] = me
        swapped[#swapped + 1] = k
      end
    end
    assert.equal(1, #swapped)
    for i = 1, 3 do
      node:send(me, { key = i, other = "o" .. i })
      assert.same({ key = i, other = "o" .. i }, H.wait_for(node))
    end
    assert.are_not.equal(me, reg[swapped[1]])
    assert.equal("userdata", type(reg[swapped[1]]))
  end)

  it("does not take another userdata for a pid, not even one of a pid's size", function()
    -- a pid's userdata holds its id and its kind's mark in its bytes, which no Lua code can
    -- write; a file handle is a userdata of the same size (a FILE pointer and a close function)
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(mb.self(), { key = 1 })   -- makes the decoder's key cache, another userdata
      mb.receive()
      local ok1 = pcall(mb.send, io.stdout, "x")
      local ok2 = pcall(mb.monitor, io.stderr)
      local ok3 = pcall(mb.send, mb.self(), { to = io.stdout })
      mb.send(parent, { ok1, ok2, ok3, mb.receive(0) == nil })
    end)
    assert.same({ false, false, false, true }, msg)
    assert.is_false((pcall(node.send, node, io.stdout, "x")))
  end)
end)
