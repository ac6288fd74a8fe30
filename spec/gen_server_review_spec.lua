-- gen_server under hostile callback modules: what a module returns, how many values a callback
-- returns, metatables on the module and on package.loaded, and calls that hand `from` on. Each
-- case writes its callback module into a private directory on the node's path.
local H = require "helpers.node"
local G = require "helpers.gs"

local LONG = 60000

local dir, node

-- Write the callback module `name` (name.lua in the node's private directory).
local function module(name, src)
  local f = assert(io.open(dir .. "/" .. name .. ".lua", "w"))
  f:write(src)
  f:close()
end

local function starts(s, prefix)
  return type(s) == "string" and s:sub(1, #prefix) == prefix
end

local function setup()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir " .. dir))
  node = G.start { path = dir .. "/?.lua;" .. H.fixtures }
end

local function teardown()
  G.stop(node)
  node = nil
  os.execute("rm -rf " .. dir)
end

-- A callback module whose handle_call returns what `returns` (Lua source of an expression list,
-- with req and s in scope) for the request "bad", and replies "ok" otherwise.
local function returning(returns)
  return ([[
return { vsn = 1, init = function(a) return "ok", a end,
  handle_call = function(req, from, s)
    if req == "bad" then return %s end
    return "reply", "ok", s
  end }
]]):format(returns)
end

-- A callback module that replies "v1" to every call.
local V1 = [[
return { vsn = 1, init = function(a) return "ok", a end, handle_call = function(r, f, s) return "reply", "v1", s end }
]]

describe("a callback that returns a great many values", function()
  before_each(setup)
  after_each(teardown)

  it("crashes the server with a bad-return reason of bounded length, its first values shown", function()
    module("gs_many", returning [[
"bogus", table.unpack((function() local t = {} for i = 1, 20000 do t[i] = s end return t end)())]])
    local srv = G.server(node, "gs_many", string.rep("x", 3000))
    local ref = G.watch(node, srv)
    local err = G.err(G.calls(node, { "call", srv, "bad", LONG })[1])
    assert.is_true(starts(err, G.call_error(srv, "bad return from handle_call: bogus, xxx")), err)
    local reason = H.down(node, ref)
    assert.is_true(starts(reason, "bad return from handle_call: bogus, xxx"), reason)
    assert.is_true(#reason <= 4096, "a reason of " .. #reason .. " bytes")
  end)

  it("from code_change keeps the old code, and the node lives", function()
    module("gs_cc", V1)
    local srv = G.server(node, "gs_cc", 0)
    for _, n in ipairs { 100000, 900000 } do
      module("gs_cc", ([[
return { vsn = 2,
  code_change = function(old, s) local t = {} for i = 1, %d do t[i] = i end return table.unpack(t) end,
  handle_call = function(req, from, s) return "reply", "v2", s end }
]]):format(n))
      assert.is_true(node:reload("gs_cc"))
      assert.equal("v1", node:call(srv, "x"))
    end
  end)

  it("from init fails the start with a bounded reason", function()
    module("gs_many_init", [[
return { init = function(a) local t = {} for i = 1, 900000 do t[i] = a end return table.unpack(t) end }
]])
    local r = G.calls(node, { "start", "gs_many_init", string.rep("y", 300) })
    local pid, reason = G.ok(r[1])
    assert.is_nil(pid)
    assert.is_true(starts(reason, "bad return from init: yyy"), reason)
    assert.is_true(#reason <= 4096, "a reason of " .. #reason .. " bytes")
  end)
end)

describe("a module chunk", function()
  before_each(setup)
  after_each(teardown)

  it("is its first result, as require takes it", function()
    module("gs_two", [[
return "first", { init = function(a) return "ok", a end, handle_call = function(r, f, s) return "reply", r, s end }
]])
    module("gs_none", "return")
    for _, name in ipairs { "gs_two", "gs_none" } do
      local pid, reason = G.ok(G.calls(node, { "start", name, { init = 1 } })[1])
      assert.is_nil(pid)
      assert.equal(("module '%s' did not return a table"):format(name), reason)
    end
  end)

  it("of an upgrade is its first result too", function()
    module("gs_up2", V1)
    local srv = G.server(node, "gs_up2", 0)
    module("gs_up2", [[return 5, { handle_call = function(r, f, s) return "reply", "v2", s end }]])
    assert.is_true(node:reload("gs_up2"))
    assert.equal("v1", node:call(srv, "x"))
    assert.equal("v1", node:call(srv, "x"))
  end)
end)

describe("a callback module with metatables", function()
  before_each(setup)
  after_each(teardown)

  it("whose __index raises fails start_link with the error, and no exit signal reaches the caller", function()
    module("gs_idx", [[return setmetatable({}, { __index = function(t, k) error("no field " .. k) end })]])
    local r = G.calls(node, { "start_link", "gs_idx", 1 }, { "receive", 0 })
    local pid, reason = G.ok(r[1])
    assert.is_nil(pid)
    assert.truthy(tostring(reason):find("no field init", 1, true), tostring(reason))
    assert.is_nil(G.ok(r[2]))   -- the client lives on, and no EXIT is queued
  end)

  it("whose package.loaded refuses new keys still starts and serves", function()
    module("gs_ro", [[
setmetatable(package.loaded, { __newindex = function() error("package.loaded is read-only") end })
return { init = function(a) return "ok", a end, handle_call = function(r, f, s) return "reply", r, s end }
]])
    local pid, reason = G.ok(G.calls(node, { "start_link", "gs_ro", 1 })[1])
    assert.is_truthy(pid, tostring(reason))
    assert.equal("echo", node:call(pid, "echo"))
  end)

  it("whose __index raises or blocks while serving crashes the server through terminate", function()
    module("gs_idx2", [[
local mb = require "moonbeam"
local M = { init = function(host) return "ok", host end }
function M.handle_call(r, f, host) return "reply", r, host end
function M.terminate(reason, host) mb.send(host, { "terminated", mb.self(), reason }) end
return setmetatable(M, { __index = function(t, k)
  if k == "handle_cast" then error("no casts here") end
  if k == "handle_info" then mb.sleep(1) end
end })
]])
    for _, case in ipairs { { "cast", "no casts here" }, { "send", "cannot block here" } } do
      local srv = G.server(node, "gs_idx2", node:self())
      local ref = G.watch(node, srv)
      assert.equal("fine", node:call(srv, "fine"))
      if case[1] == "cast" then node:cast(srv, "x") else node:send(srv, "x") end
      local m = G.wait(node, "terminated")
      assert.equal(srv, m[2])
      assert.truthy(tostring(m[3]):find(case[2], 1, true), tostring(m[3]))
      assert.equal(m[3], H.down(node, ref))
    end
  end)

  it("inherited through __index serves as usual", function()
    module("gs_base", [[return { init = function(a) return "ok", a end, handle_call = function(r, f, s) return "reply", { "base", r }, s end }]])
    module("gs_child", [[return setmetatable({ vsn = "c" }, { __index = require "gs_base" })]])
    local srv = G.server(node, "gs_child", 0)
    assert.same({ "base", "hi" }, node:call(srv, "hi"))
  end)
end)

-- A server module for the hand-off cases: {"call", server, request} calls server from
-- handle_call and replies {pcall(...)}; {"exit_to", pid} hands `from` to pid in an exit signal's
-- reason and does not reply; a cast {"call", server, request, host} calls server and tells host.
local HAND = [[
local mb = require "moonbeam"
local gs = require "moonbeam.gen_server"
local M = {}
function M.init(a) return "ok", a end
function M.handle_call(req, from, s)
  if req[1] == "call" then return "reply", { pcall(gs.call, req[2], req[3], 60000) }, s end
  if req[1] == "exit_to" then mb.exit(req[2], { "take", from }); return "noreply", s end
  return "reply", req[2], s
end
function M.handle_cast(req, s)
  mb.send(req[4], { "calling" })
  mb.send(req[4], { "called", pcall(gs.call, req[2], req[3], 60000) })
  return "noreply", s
end
return M
]]

describe("a call whose from was handed on", function()
  before_each(setup)
  after_each(teardown)

  it("in an exit signal's reason no longer counts as waiting on the server (no false deadlock)", function()
    module("gs_hand", HAND)
    local a, b = G.server(node, "gs_hand", 0), G.server(node, "gs_hand", 0)
    -- w traps exits, takes the `from` b hands it, and answers it when the host says go
    local w = G.spawn(node, function(host)
      local mb = require "moonbeam"
      mb.trap_exit(true)
      mb.send(host, { "w ready" })
      local e = mb.receive(function(m) return type(m) == "table" and m[1] == "EXIT" end)
      mb.send(host, { "w has from" })
      mb.receive(function(m) return m == "go" end)
      require("moonbeam.gen_server").reply(e[3][2], "from w")
    end, node:self())
    G.wait(node, "w ready")
    -- a calls b, which hands a's call to w: a now waits on w, not on b
    local client = G.calls_async(node, { "call", a, { "call", b, { "exit_to", w } }, LONG })
    G.wait(node, "w has from")
    -- b calls a: a is busy until w answers, then serves b; no cycle
    node:cast(b, { "call", a, { "echo", "hi" }, node:self() })
    G.wait(node, "calling")
    assert.truthy(H.poll(node, function() return node:info(b).status == "waiting" end))
    node:send(w, "go")
    assert.same({ true, "from w" }, G.ok(G.results(node, client)[1]))
    local m = G.wait(node, "called")
    assert.is_true(m[2], tostring(m[3]))
    assert.equal("hi", m[3])
  end)

  it("in a process the host spawned no longer counts as waiting on the host", function()
    module("gs_hand", HAND)
    local a = G.server(node, "gs_hand", 0)
    local client = G.calls_async(node, { "call", a, { "call", node:self(), "q" }, LONG })
    local m = H.wait_for(node, function(x) return type(x) == "table" and x[1] == "$gen_call" end)
    -- w answers a's call to the host once the host waits in its own call to a
    G.spawn(node, function(host, from)
      local mb = require "moonbeam"
      for _ = 1, 500 do
        if mb.info(host).status == "waiting" then break end
        mb.sleep(10)
      end
      require("moonbeam.gen_server").reply(from, "from w")
    end, node:self(), m[2])
    assert.equal("hi", node:call(a, { "echo", "hi" }, LONG))
    assert.same({ true, "from w" }, G.ok(G.results(node, client)[1]))
  end)
end)

describe("gen_server.reply with a from whose pid is not the caller's", function()
  before_each(setup)
  after_each(teardown)

  it("leaves the caller's call monitoring the server: the server's end still fails the call", function()
    module("gs_forge", [[
local mb = require "moonbeam"
local gs = require "moonbeam.gen_server"
return { init = function(host) return "ok", host end,
  handle_call = function(req, from, host)
    gs.reply({ host, from[2] }, "to the wrong process")
    mb.send(host, { "forged" })
    return "noreply", host
  end }
]])
    local srv = G.server(node, "gs_forge", node:self())
    local client = G.calls_async(node, { "call", srv, "x", 20000 })
    G.wait(node, "forged")
    G.kill(node, srv, "kill")
    assert.equal(G.call_error(srv, "killed"), G.err(G.results(node, client, 30000)[1]))
  end)
end)

describe("an upgrade", function()
  before_each(setup)
  after_each(teardown)

  local function v(vsn, extra)
    return ([[
local mb = require "moonbeam"
return { vsn = %q,
  code_change = function(old, s)
    %s
    s.path[#s.path + 1] = tostring(old) .. ">" .. %q
    return "ok", s
  end,
  handle_call = function(req, from, s) return "reply", { %q, s.path }, s end }
]]):format(vsn, extra or "", vsn, vsn)
  end

  it("superseded again while its code_change waits runs the newest code_change next, before the message", function()
    module("gs_up3", [[
return { vsn = "one", init = function(host) return "ok", { host = host, path = {} } end,
  handle_call = function(req, from, s) return "reply", { "one", s.path }, s end }
]])
    local srv = G.server(node, "gs_up3", node:self())
    module("gs_up3", v("two", [[mb.send(s.host, { "in code_change" })
    mb.receive(function(m) return m == "go" end)]]))
    assert.is_true(node:reload("gs_up3"))
    local client = G.calls_async(node, { "call", srv, "x", LONG })
    G.wait(node, "in code_change")
    module("gs_up3", v("three"))
    assert.is_true(node:reload("gs_up3"))
    node:send(srv, "go")
    assert.same({ "three", { "one>two", "two>three" } }, G.ok(G.results(node, client)[1]))
    -- reloaded many times between two messages: one upgrade, to the last
    for i = 4, 9 do
      module("gs_up3", v("v" .. i))
      assert.is_true(node:reload("gs_up3"))
    end
    assert.same({ "v9", { "one>two", "two>three", "three>v9" } }, node:call(srv, "y"))
  end)
end)

describe("a server whose callbacks run no Lua code", function()
  local one
  before_each(function()
    setup()
    one = G.start { schedulers = 1, path = dir .. "/?.lua;" .. H.fixtures }
  end)
  after_each(function() G.stop(one); teardown() end)

  it("still lets the other processes of its scheduler run while it works through a backlog", function()
    -- handle_cast is table.unpack: the cast {"noreply", 1} with state 1 returns "noreply", 1
    module("gs_cnative", [[
local mb = require "moonbeam"
return { init = function(host) return "ok", 1 end, handle_cast = table.unpack,
  handle_call = function(req, from, s)
    mb.send(req, { "blocked" })
    mb.receive(function(m) return m == "go" end)
    return "reply", "went", s
  end }
]])
    local srv = G.server(one, "gs_cnative", 0)
    local client = G.calls_async(one, { "call", srv, one:self(), LONG })
    G.wait(one, "blocked")
    local backlog = 200000
    for _ = 1, backlog do one:cast(srv, { "noreply", 1 }) end
    one:send(srv, "go")
    -- queued behind the server: it runs once the server gives way
    one:spawn(function(host, s)
      local mb = require "moonbeam"
      mb.send(host, { "x ran", mb.info(s).message_queue_len })
    end, one:self(), srv)
    assert.equal("went", G.ok(G.results(one, client, LONG)[1]))
    local m = G.wait(one, "x ran", LONG)
    assert.is_true(m[2] > 0, "the server worked through its whole backlog before anything else ran")
  end)
end)

describe("callback code that finds the loop's functions on its stack", function()
  before_each(setup)
  after_each(teardown)

  it("cannot run them: the server serves on, its state and module untouched", function()
    module("gs_poke", [[
local M = {}
function M.init(a) return "ok", { n = a } end
function M.handle_call(req, from, s)
  if req == "poke" then
    local tried, refused = 0, 0
    for level = 1, 100 do
      local info = debug.getinfo(level, "fS")
      if not info then break end
      if info.what == "C" and info.func ~= pcall then
        for _, args in ipairs { {}, { s }, { "x", 1, 2 }, { from, s, M } } do
          tried = tried + 1
          local ok = pcall(info.func, table.unpack(args))
          if not ok then refused = refused + 1 end
        end
      end
    end
    s.n = s.n + 1
    return "reply", { tried, refused }, s
  end
  s.n = s.n + 1
  return "reply", s.n, s
end
return M
]])
    local srv = G.server(node, "gs_poke", 0)
    local r = node:call(srv, "poke")
    assert.is_true(r[1] > 0)
    assert.equal(r[1], r[2])   -- every one refused
    assert.equal(2, node:call(srv, "n"))
  end)
end)
