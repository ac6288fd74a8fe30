-- gen_server upgrades (SPEC 2's code_change): a reload of the callback module (node:reload, the
-- host's face of the code cache) makes each server running it swap to the new code between two
-- messages, through code_change(old_vsn, state, extra) when the new module has one. A failed
-- code_change, or one that returns something else than "ok", keeps the old code.
local H = require "helpers.node"
local G = require "helpers.gs"

local dir, node

-- Write the callback module gs_up.lua into the node's private directory.
local function write(src)
  local f = assert(io.open(dir .. "/gs_up.lua", "w"))
  f:write(src)
  f:close()
end

local V1 = [[
return { vsn = "one",
  init = function(n) return "ok", { n = n } end,
  handle_call = function(req, from, s)
    if type(req) == "table" then   -- {"nap", pid}: say so, then sleep inside the callback
      require("moonbeam").send(req[2], "napping")
      require("moonbeam").sleep(200)
    end
    s.n = s.n + 1
    return "reply", { "v1", s.n }, s
  end }
]]

-- Start a gs_up server (from a process: start is for processes) and return its pid.
local function start_server(arg)
  node:spawn(function(host, a)
    local mb = require "moonbeam"
    local gs = require "moonbeam.gen_server"
    mb.send(host, { "server", gs.start("gs_up", a) })
  end, node:self(), arg)
  local m = H.wait_for(node, "server")
  assert(m[2], "the server did not start")
  return m[2]
end

describe("gen_server upgrades", function()
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir))
    write(V1)
    node = G.start { path = dir .. "/?.lua;" .. H.fixtures }
  end)
  after_each(function()
    G.stop(node)
    node = nil
    os.remove(dir .. "/gs_up.lua")
    os.remove(dir)
  end)

  it("call code_change with the old vsn, the state and nil, and serve with the new code and state", function()
    local pid = start_server(10)
    assert.same({ "v1", 11 }, node:call(pid, "x"))
    write [[
return { vsn = "two",
  code_change = function(old_vsn, s, extra) return "ok", { count = s.n * 100, old = old_vsn, extra = extra } end,
  handle_call = function(req, from, s) s.count = s.count + 1; return "reply", { "v2", s.count, s.old, s.extra }, s end }
]]
    assert.is_true(node:reload("gs_up"))
    assert.same({ "v2", 1101, "one" }, node:call(pid, "x"))
    assert.same({ "v2", 1102, "one" }, node:call(pid, "x"))
  end)

  it("swap to a new module without code_change and keep the state", function()
    local pid = start_server(1)
    assert.same({ "v1", 2 }, node:call(pid, "x"))
    write [[return { handle_call = function(req, from, s) return "reply", { "plain", s.n }, s end }]]
    assert.is_true(node:reload("gs_up"))
    assert.same({ "plain", 2 }, node:call(pid, "x"))
  end)

  it("finish the callback under way with the old code and upgrade before the next message", function()
    local pid = start_server(0)
    -- a client's call runs in the old handle_call (it sleeps) while the reload happens
    node:spawn(function(host, p)
      local gs = require "moonbeam.gen_server"
      require("moonbeam").send(host, { "napped", gs.call(p, { "nap", host }) })
    end, node:self(), pid)
    H.wait_for(node, "napping")
    write [[return { handle_call = function(req, from, s) return "reply", { "new", s.n }, s end }]]
    assert.is_true(node:reload("gs_up"))
    assert.same({ "v1", 1 }, H.wait_for(node, "napped")[2])
    assert.same({ "new", 1 }, node:call(pid, "x"))
  end)

  it("keep the old code and state when code_change raises or returns something else, until another reload", function()
    local pid = start_server(5)
    for _, bad in ipairs {
      [[return { code_change = function() error("no upgrade today") end,
                handle_call = function(r, f, s) return "reply", { "never" }, s end }]],
      [[return { code_change = function(old, s) return "sure", s end,
                handle_call = function(r, f, s) return "reply", { "never" }, s end }]],
    } do
      write(bad)
      assert.is_true(node:reload("gs_up"))
      assert.equal("v1", node:call(pid, "x")[1])
      assert.equal("v1", node:call(pid, "x")[1])   -- not tried again at each message
    end
    assert.same({ "v1", 10 }, node:call(pid, "x"))
    write [[return { handle_call = function(r, f, s) return "reply", { "fixed", s.n }, s end }]]
    assert.is_true(node:reload("gs_up"))
    assert.same({ "fixed", 10 }, node:call(pid, "x"))
  end)

  it("keep the old code when the new module does not return a table", function()
    local pid = start_server(0)
    write [[return 42]]
    assert.is_true(node:reload("gs_up"))
    assert.same({ "v1", 1 }, node:call(pid, "x"))
  end)

  it("leave the cache and the servers alone when the new source does not compile", function()
    local pid = start_server(0)
    write "return {"
    local ok, err = node:reload("gs_up")
    assert.is_nil(ok)
    assert.truthy(err:find("gs_up.lua:1:", 1, true), err)
    assert.same({ "v1", 1 }, node:call(pid, "x"))
    assert.is_true(start_server(7) ~= nil)   -- new servers still get the old, compiled code
  end)

  it("make require in the server's callbacks return the module it runs", function()
    local pid = start_server(0)
    write [[
local M = {}
function M.handle_call(r, f, s) return "reply", { require("gs_up") == M }, s end
return M]]
    assert.is_true(node:reload("gs_up"))
    assert.same({ true }, node:call(pid, "x"))
  end)
end)
