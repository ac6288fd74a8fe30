-- SPEC 1: mb.send, mb.receive (plain and selective) and the copying rules of "Messages".
local H = require "helpers.node"

describe("mb.send", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("delivers to a pid and returns true", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local r = mb.send(parent, "hello")
      mb.send(parent, { "returned", r })
    end)
    assert.equal("hello", msg)
    assert.same({ "returned", true }, H.wait_for(node, "returned"))
  end)

  it("delivers to a registered name and returns true", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.register("named_receiver")
      local r = mb.send("named_receiver", "by name")
      mb.send(parent, { r, mb.receive(5000) })
    end)
    assert.same({ true, "by name" }, msg)
  end)

  it("delivers from the host to a pid and to a name", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.register("host_target")
      mb.send(parent, "registered")
      for _ = 1, 2 do mb.send(parent, { "echo", mb.receive() }) end
    end, node:self())
    H.wait_for(node, "registered")
    node:send(pid, "to pid")
    node:send("host_target", "to name")
    assert.same({ "echo", "to pid" }, H.wait_for(node, "echo"))
    assert.same({ "echo", "to name" }, H.wait_for(node, "echo"))
  end)

  it("drops a message to a dead pid silently and returns true", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local pid, ref = mb.spawn_monitor(function() end)
      mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      local ok, r = pcall(mb.send, pid, "too late")
      mb.send(parent, { ok, r })
    end)
    assert.same({ true, true }, msg)
  end)

  it("raises for a name that nobody registered, naming it", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok, err = pcall(mb.send, "nobody_here", "x")
      mb.send(parent, { ok, err })
    end)
    assert.is_false(msg[1])
    assert.equal("send: no process registered as 'nobody_here'", H.strip(msg[2]))
  end)

  it("raises from the host for a name that nobody registered", function()
    local err = H.error_of(node.send, node, "nobody_here", "x")
    assert.equal("send: no process registered as 'nobody_here'", err)
  end)

  it("raises for a nil message and enqueues nothing", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok = pcall(mb.send, mb.self(), nil)
      local ok2 = pcall(mb.send, mb.self())
      mb.send(parent, { ok, ok2, mb.receive(0) == nil })
    end)
    assert.same({ false, false, true }, msg)
  end)

  it("raises for a destination that is neither a pid nor a name", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { pcall(mb.send, {}, "x") })
    end)
    assert.is_false(msg[1])
  end)
end)

describe("mb.receive", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("returns messages in arrival order", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      for i = 1, 5 do mb.send(mb.self(), i) end
      local got = {}
      for i = 1, 5 do got[i] = mb.receive(1000) end
      mb.send(parent, got)
    end)
    assert.same({ 1, 2, 3, 4, 5 }, msg)
  end)

  it("waits without a timeout until a message comes", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "waiting")
      mb.send(parent, { "got", mb.receive() })
    end, node:self())
    H.wait_for(node, "waiting")
    assert.is_true(H.no_message(node, "got"))
    node:send(pid, "late")
    assert.same({ "got", "late" }, H.wait_for(node, "got"))
  end)

  it("returns nil after the timeout when no message comes, and the process goes on", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local t0 = mb.now()
      local r = mb.receive(50)
      local waited = mb.now() - t0
      mb.send(mb.self(), "after")
      mb.send(parent, { r == nil, waited >= 45, mb.receive(1000) })
    end)
    assert.same({ true, true, "after" }, msg)
  end)

  it("polls with a timeout of 0", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local empty = mb.receive(0)
      mb.send(mb.self(), "queued")
      local got = mb.receive(0)
      mb.send(parent, { empty == nil, got, mb.receive(0) == nil })
    end)
    assert.same({ true, "queued", true }, msg)
  end)

  it("selects the first matching message and leaves the others queued in order", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      for _, v in ipairs { "a", "b", "c", "d", "c2" } do mb.send(mb.self(), v) end
      local picked = mb.receive(function(m) return m:sub(1, 1) == "c" end, 1000)
      local rest = {}
      for i = 1, 4 do rest[i] = mb.receive(0) end
      mb.send(parent, { picked, rest })
    end)
    assert.same({ "c", { "a", "b", "d", "c2" } }, msg)
  end)

  it("treats any truthy match result as a match", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(mb.self(), "x")
      mb.send(mb.self(), "y")
      local picked = mb.receive(function(m) return m == "y" and 0 end, 1000)
      mb.send(parent, { picked, mb.receive(0) })
    end)
    assert.same({ "y", "x" }, msg)
  end)

  it("returns nil after the timeout when nothing matches, keeping every message", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      for i = 1, 3 do mb.send(mb.self(), i) end
      local none = mb.receive(function(m) return m == 99 end, 50)
      local rest = {}
      for i = 1, 3 do rest[i] = mb.receive(0) end
      mb.send(parent, { none == nil, rest })
    end)
    assert.same({ true, { 1, 2, 3 } }, msg)
  end)

  it("waits for a matching message that arrives after non-matching ones", function()
    local pid = node:spawn(function(parent)
      local mb = require "moonbeam"
      mb.send(parent, "ready")
      local m = mb.receive(function(x) return x == "wanted" end)
      local other = mb.receive(0)
      mb.send(parent, { "done", m, other })
    end, node:self())
    H.wait_for(node, "ready")
    node:send(pid, "unwanted")
    node:send(pid, "wanted")
    assert.same({ "done", "wanted", "unwanted" }, H.wait_for(node, "done"))
  end)

  it("raises for an argument that is neither a match function nor a timeout", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.send(parent, { pcall(mb.receive, "soon") })
    end)
    assert.is_false(msg[1])
  end)

  it("lets the host receive selectively with a timeout", function()
    node:spawn(function(parent)
      local mb = require "moonbeam"
      for i = 1, 3 do mb.send(parent, i) end
    end, node:self())
    assert.equal(2, H.wait_for(node, function(m) return m == 2 end))
    assert.equal(1, H.wait_for(node, nil))
    assert.equal(3, H.wait_for(node, nil))
    assert.is_nil(node:receive(nil, 0))
    assert.is_nil(node:receive(nil, 50))
  end)
end)

describe("messages", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("carry every sendable kind of value unchanged", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ref = mb.make_ref()
      local key = { k = 1 }
      local v = {
        t = true, f = false, i = 42, neg = -7, maxi = math.maxinteger, mini = math.mininteger,
        fl = 0.5, whole = 3.0, huge = math.huge, ninf = -math.huge, nan = 0 / 0,
        s = "plain", bytes = "\0\1\255\n" .. string.rep("\0", 100), empty = "",
        pid = mb.self(), ref = ref, nested = { { { "deep" } } }, holes = { 1, nil, 3 },
        [1] = "one", [2.5] = "float key", [true] = "bool key", [key] = "table key",
      }
      v[mb.self()] = "pid key"
      mb.send(mb.self(), v)
      local r = mb.receive(1000)
      local tkey
      for k, val in pairs(r) do if type(k) == "table" then tkey = { k.k, val } end end
      mb.send(parent, {
        r.t == true, r.f == false, r.i == 42, math.type(r.i), r.neg == -7,
        r.maxi == math.maxinteger, r.mini == math.mininteger, r.fl == 0.5,
        math.type(r.whole), r.huge == math.huge, r.ninf == -math.huge, r.nan ~= r.nan,
        r.s == "plain", r.bytes == "\0\1\255\n" .. string.rep("\0", 100), r.empty == "",
        r.pid == mb.self(), rawequal(r.pid, mb.self()), r.ref == ref, r.nested[1][1][1],
        r.holes[1], r.holes[2] == nil, r.holes[3], r[1], r[2.5], r[true], r[mb.self()],
        tkey and tkey[1], tkey and tkey[2],
      })
    end)
    assert.same({
      true, true, true, "integer", true, true, true, true,
      "float", true, true, true, true, true, true,
      true, true, true, "deep", 1, true, 3, "one", "float key", "bool key", "pid key", 1, "table key",
    }, msg)
  end)

  -- Small signals are cached blocks of three sizes (a header and up to 8, 40 or 96
  -- bytes of payload), larger ones blocks of their own size: every size across those
  -- bounds, as a lone string and inside a table, through another process and back.
  it("arrive intact at every size around the signal blocks' bounds", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local echo = mb.spawn(function()
        local mb = require "moonbeam"
        while true do
          local m = mb.receive()
          mb.send(m[1], m[2])
        end
      end)
      local me, bad = mb.self(), {}
      for len = 0, 200 do
        local s = {}
        for i = 1, len do s[i] = string.char((len * 7 + i) % 256) end
        s = table.concat(s)
        mb.send(echo, { me, s })
        mb.send(echo, { me, { s, len } })
        local a, b = mb.receive(5000), mb.receive(5000)
        if a ~= s or type(b) ~= "table" or b[1] ~= s or b[2] ~= len then bad[#bad + 1] = len end
      end
      mb.send(parent, bad)
    end)
    assert.same({}, msg)
  end)

  it("are deep copies: changing the sent table afterwards changes nothing received", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local t = { a = { b = 1 }, list = { 1, 2 } }
      mb.send(mb.self(), t)
      t.a.b, t.list[1], t.new = 2, 99, true
      local r = mb.receive(1000)
      mb.send(parent, { r.a.b, r.list[1], r.new == nil, rawequal(r, t) })
    end)
    assert.same({ 1, 1, true, false }, msg)
  end)

  it("are deep copies between processes: the receiver's changes stay with the receiver", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local peer = mb.spawn(function()
        local m = require "moonbeam"
        local req = m.receive()
        req.data.x = "changed by peer"
        m.send(req.from, { "peer", req.data.x })
      end)
      local data = { x = "original" }
      mb.send(peer, { from = mb.self(), data = data })
      local r = mb.receive(5000)
      mb.send(parent, { r and r[2], data.x })
    end)
    assert.same({ "changed by peer", "original" }, msg)
  end)

  it("do not carry metatables", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local t = setmetatable({ x = 1 }, { __index = function() return "from mt" end })
      mb.send(mb.self(), { t = t })
      local r = mb.receive(1000)
      mb.send(parent, { getmetatable(r.t) == nil, r.t.x, r.t.missing == nil })
    end)
    assert.same({ true, 1, true }, msg)
  end)

  it("keep a table that appears twice as one shared table in the copy", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local shared = { n = 1 }
      mb.send(mb.self(), { a = shared, b = shared, list = { shared } })
      local r = mb.receive(1000)
      local same = rawequal(r.a, r.b) and rawequal(r.a, r.list[1])
      r.a.n = 2
      mb.send(parent, { same, r.b.n, rawequal(r.a, shared) })
    end)
    assert.same({ true, 2, false }, msg)
  end)

  it("refuse a cycle, naming where it closes", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local t = {}
      t.self = t
      local ok, err = pcall(mb.send, mb.self(), t)
      mb.send(parent, { ok, err, mb.receive(0) == nil })
    end)
    assert.is_false(msg[1])
    assert.equal("send: cannot send a cycle (at msg.self)", H.strip(msg[2]))
    assert.is_true(msg[3])
  end)

  it("refuse a function, naming its path", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok, err = pcall(mb.send, mb.self(), { 1, { cb = function() end } })
      mb.send(parent, { ok, err, mb.receive(0) == nil })
    end)
    assert.is_false(msg[1])
    assert.equal("send: cannot send a function (at msg[2].cb)", H.strip(msg[2]))
    assert.is_true(msg[3])
  end)

  it("refuse a function sent as the whole message", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok, err = pcall(mb.send, mb.self(), print)
      mb.send(parent, { ok, err })
    end)
    assert.is_false(msg[1])
    assert.equal("send: cannot send a function (at msg)", H.strip(msg[2]))
  end)

  it("refuse a coroutine, naming its path", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok, err = pcall(mb.send, mb.self(), { co = coroutine.create(print) })
      mb.send(parent, { ok, err, mb.receive(0) == nil })
    end)
    assert.is_false(msg[1])
    local err = H.strip(msg[2])
    assert.is_truthy(err:match("^send: cannot send .+ %(at msg%.co%)$"), err)
    assert.is_true(msg[3])
  end)

  it("refuse other userdata, naming its path", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok, err = pcall(mb.send, mb.self(), { out = io.stdout })
      mb.send(parent, { ok, err, mb.receive(0) == nil })
    end)
    assert.is_false(msg[1])
    local err = H.strip(msg[2])
    assert.is_truthy(err:match("^send: cannot send .+ %(at msg%.out%)$"), err)
    assert.is_true(msg[3])
  end)

  it("refuse a message over the size limit and enqueue nothing", function()
    local msg = H.run_within(node, H.long_timeout, function(parent)
      local mb = require "moonbeam"
      local big = string.rep("x", 64 * 1024 * 1024 + 1024)
      local ok, err = pcall(mb.send, mb.self(), big)
      big = nil
      collectgarbage()
      mb.send(parent, { ok, err, mb.receive(0) == nil })
    end)
    assert.is_false(msg[1])
    assert.equal("send: message too large", H.strip(msg[2]))
    assert.is_true(msg[3])
  end)

  it("carry a large message under the limit", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local big = string.rep("0123456789abcdef", 64 * 1024)
      mb.send(mb.self(), { big, big })
      local r = mb.receive(5000)
      mb.send(parent, { #r[1], r[1] == big, r[2] == big })
    end)
    assert.same({ 1024 * 1024, true, true }, msg)
  end)
end)
