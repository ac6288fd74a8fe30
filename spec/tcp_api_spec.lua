-- SPEC 4: moonbeam.tcp errors by name, timeouts, addresses (IPv4, IPv6, names), close, several
-- acceptors on one listener, and misuse that raises.
local T = require "helpers.tcp"

describe("tcp", function()
  local node
  before_each(function() node = T.start() end)
  after_each(function() node:stop() end)

  describe("errors by name", function()
    it("connect to a closed port: econnrefused", function()
      local r, err = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local l = assert(K.tcp.listen("127.0.0.1", 0))
          local port = l:port()
          assert(l:close())
          return K.tcp.connect("127.0.0.1", port)
        end)
      end)
      assert.is_nil(r)
      assert.equal("econnrefused", err)
    end)

    it("listen on a port in use: eaddrinuse, and the first listener still works", function()
      local r, err, echoed = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local l = assert(K.tcp.listen("127.0.0.1", 0))
          local r, err = K.tcp.listen("127.0.0.1", l:port())
          local c = assert(K.tcp.connect("127.0.0.1", l:port()))
          local s = assert(l:accept(K.T))
          assert(c:send("still"))
          return r, err, K.recv_n(s, 5)
        end)
      end)
      assert.is_nil(r)
      assert.equal("eaddrinuse", err)
      assert.equal("still", echoed)
    end)

    it("a name that does not resolve is an error, not a raise", function()
      local r, err = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          return require("tcp_kit").tcp.connect("no-such-host.invalid", 80, { timeout = 4000 })
        end)
      end)
      assert.is_nil(r)
      assert.is_string(err)
    end)
  end)

  describe("timeouts", function()
    it("accept and recv time out with nil, timeout, and lose nothing that comes after", function()
      local r = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local l = assert(K.tcp.listen("127.0.0.1", 0))
          local a1, e1 = l:accept(20)
          local c = assert(K.tcp.connect("127.0.0.1", l:port()))
          local s = assert(l:accept(K.T))
          local r1, e2 = s:recv(20)
          local r0, e0 = s:recv(0)
          assert(c:send("late"))
          return { a1, e1, r1, e2, r0, e0, K.recv_n(s, 4) }
        end)
      end)
      assert.same({ nil, "timeout", nil, "timeout", nil, "timeout", "late" }, r)
    end)
  end)

  describe("addresses", function()
    it("work over IPv6 loopback", function()
      local got, peer, lport = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local l, c, s = K.pair({ packet = "line" }, nil, "::1")
          assert(c:send("six\n"))
          return s:recv(K.T), (s:peer()), l:port()
        end)
      end)
      assert.equal("six", got)
      assert.equal("::1", peer)
      assert.is_true(lport > 0)
    end)

    it("connect resolves a name (localhost) without blocking the scheduler", function()
      local got = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local l = assert(K.tcp.listen("127.0.0.1", 0))
          local c = assert(K.tcp.connect("localhost", l:port()))
          local s = assert(l:accept(K.T))
          assert(c:send("named"))
          return K.recv_n(s, 5)
        end)
      end)
      assert.equal("named", got)
    end)
  end)

  describe("close", function()
    it("is idempotent, and a closed socket answers nil, closed", function()
      local r = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local l, c, s = K.pair()
          local out = { c:close(), c:close(), l:close(), l:close() }
          local function push(...) out[#out + 1] = K.outcome(...) end
          push(c:recv(10)); push(c:send("x")); push(c:peer()); push(c:port()); push(c:set_active(true))
          push(c:set_owner(K.mb.self())); push(l:accept(10)); push(l:port()); push(l:set_owner(K.mb.self()))
          local _, err = s:recv(K.T)
          out[#out + 1] = err
          return out
        end)
      end)
      assert.same({ true, true, true, true, "closed", "closed", "closed", "closed", "closed", "closed", "closed",
        "closed", "closed", "closed" }, r)
    end)
  end)

  it("lets several processes wait in accept on one listener; each gets its own connection", function()
    local ok, ids = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local N = 8
        local l = assert(K.tcp.listen("127.0.0.1", 0, { packet = "line" }))
        local me = mb.self()
        local acceptors = {}
        for i = 1, N do
          acceptors[i] = mb.spawn(function(parent, lst, T)
            local mb2 = require "moonbeam"
            local s, err = lst:accept(T)
            if not s then mb2.send(parent, { "got", mb2.self(), false, err }) return end
            local line, rerr = s:recv(T)   -- only an owner may recv: the acceptor is
            mb2.send(parent, { "got", mb2.self(), line or rerr })
          end, me, l, K.T)
        end
        for i = 1, N do K.until_waiting(acceptors[i]) end
        local conns = {}
        for i = 1, N do
          conns[i] = assert(K.tcp.connect("127.0.0.1", l:port(), { packet = "line" }))
          assert(conns[i]:send("c" .. i .. "\n"))
        end
        local seen, who = {}, {}
        for _ = 1, N do
          local m = K.await(K.is("got"), "acceptor's answer")
          assert(not who[m[2]], "one acceptor answered twice")
          who[m[2]] = true
          seen[#seen + 1] = m[3]
        end
        table.sort(seen)
        return true, seen
      end)
    end)
    assert.is_true(ok)
    assert.same({ "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8" }, ids)
  end)

  describe("misuse raises", function()
    it("for bad argument types and option values", function()
      local msgs = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local tcp = K.tcp
          local l, c = K.pair()
          local calls = {
            function() tcp.listen({}, 0) end,
            function() tcp.listen("127.0.0.1", "x") end,
            function() tcp.connect("127.0.0.1", 70000) end,
            function() tcp.connect("127.0.0.1", -1) end,
            function() tcp.listen("127.0.0.1", 0, "opts") end,
            function() tcp.listen("127.0.0.1", 0, { packet = 2 }) end,
            function() tcp.listen("127.0.0.1", 0, { packet = "lines" }) end,
            function() tcp.listen("127.0.0.1", 0, { max_packet = 0 }) end,
            function() tcp.listen("127.0.0.1", 0, { backlog = "many" }) end,
            function() tcp.connect("127.0.0.1", l:port(), { timeout = -5 }) end,
            function() c:recv("soon") end,
            function() c:recv(-1) end,
            function() c:send({}) end,
            function() c:send() end,
            function() c:set_active("twice") end,
            function() c:set_active(1) end,
            function() c:set_owner("pid") end,
            function() l:accept(-1) end,
            function() c.recv(l) end,      -- a listener is not a connection
            function() l.accept(c) end,    -- nor the other way round
            function() c.recv(42) end,
            function() l.close(K.mb.self()) end,
          }
          local out = {}
          for i, f in ipairs(calls) do
            local ok, err = pcall(f)
            out[i] = ok and ("call " .. i .. " did not raise") or true
            if not ok and type(err) ~= "string" then out[i] = "call " .. i .. " raised a non-string" end
          end
          return out
        end)
      end)
      for i, v in ipairs(msgs) do assert.equal(true, v, "call " .. i) end
    end)
  end)
end)
