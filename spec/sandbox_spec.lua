-- SPEC 1 "No Lua code can reach the core's private values or corrupt memory": the
-- restricted debug table, text-only load/loadfile/dofile, and one case per hole a
-- review found. A hostile script runs on a real node (the moonbeam command), so a
-- crash shows as an exit status instead of taking the spec run down with it.
local H = require "helpers.node"
local C = require "helpers.cli"

-- Write `src` to a temporary script and run it with the moonbeam command.
local function run_source(src, args)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(src)
  f:close()
  local argv = {}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = path
  local r = C.run(argv)
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
local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 10000)
mb.spawn(function(p) require("moonbeam").send(p, "still serving") end, mb.self())
print("node: " .. (down and "down" or "no down"), mb.receive(function(m) return m == "still serving" end, 10000))
print("reason: " .. (down and tostring(down[4]) or "?"))
]]):format(opts and opts.module and ("%q"):format(opts.module) or
             "function()\n  local mb = require 'moonbeam'\n" .. body .. "\nend"),
    opts and opts.args)
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

  it("cannot join or read upvalues", function()
    hostile [[
  local a, b = 1, 2
  local function f() return a end
  local function g() return b end
  debug.upvaluejoin(f, 1, g, 1)
]]
  end)
end)
