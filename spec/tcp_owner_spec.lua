-- SPEC 4: who may use a socket (the owner reads, anyone sends), handing sockets on (set_owner,
-- handles in messages), sockets closed with their owner however it ends, listener close waking
-- acceptors, and no fd left behind by thousands of abandoned connections.
local H = require "helpers.node"
local T = require "helpers.tcp"

describe("tcp ownership", function()
  local node
  before_each(function() node = T.start() end)
  after_each(function() node:stop() end)

  it("only the owner reads, changes the mode, hands on or closes; anyone sends and asks addresses", function()
    local r = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local _, c, s = K.pair({ packet = "line" })
        local other = mb.spawn(function(parent, conn, T)
          local mb2 = require "moonbeam"
          local e = require("tcp_kit").outcome
          local port = conn:port()
          mb2.send(parent, { "tried", { e(conn:recv(10)), e(conn:set_active(true)), e(conn:set_owner(mb2.self())),
            e(conn:close()), e(conn:send("from other\n")), (conn:peer()), type(port) } })
        end, mb.self(), s, K.T)
        local m = K.await(K.is("tried"), "the other's answers")
        local out = m[2]
        out[#out + 1] = c:recv(K.T)
        assert(c:send("still mine\n"))
        out[#out + 1] = s:recv(K.T)
        K.until_dead(other)
        return out
      end)
    end)
    assert.same({ "not_owner", "not_owner", "not_owner", "not_owner", true, "127.0.0.1", "number", "from other",
      "still mine" }, r)
  end)

  it("set_owner hands a socket on: the new owner reads, the old one gets not_owner", function()
    local r = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local _, c, s = K.pair({ packet = 4 })
        local heir = mb.spawn(function(parent, T)
          local mb2 = require "moonbeam"
          local a = mb2.receive(T)
          local b = mb2.receive(T)
          local keyed = {}
          keyed[a] = "first"
          local data = a:recv(T)
          mb2.send(parent, { "heir", rawequal(a, b), keyed[b], data, (a:send("back")) })
        end, mb.self(), K.T)
        assert(s:set_owner(heir) == true)
        local out = {}
        local function e(...) out[#out + 1] = K.outcome(...) end
        e(s:recv(10)); e(s:set_active("once")); e(s:set_owner(mb.self())); e(s:close())
        mb.send(heir, s)
        mb.send(heir, s)   -- twice: the same value over there
        assert(c:send("for heir"))
        local m = K.await(K.is("heir"), "heir's report")
        table.move(m, 2, 5, #out + 1, out)
        out[#out + 1] = c:recv(K.T)
        return out
      end)
    end)
    assert.same({ "not_owner", "not_owner", "not_owner", "not_owner", true, "first", "for heir", true, "back" }, r)
  end)

  it("set_owner on an active socket: later data goes to the new owner as messages", function()
    local r = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local _, c, s = K.pair({ packet = "line" })
        assert(s:set_active(true))
        assert(c:send("to me\n"))
        local mine = K.active_msg(s)[3]
        local heir = mb.spawn(function(parent, T)
          local mb2 = require "moonbeam"
          local conn = mb2.receive(T)
          mb2.send(parent, { "ready" })
          local m = mb2.receive(function(x) return type(x) == "table" and x[2] == conn end, T)
          mb2.send(parent, { "heir", m and m[1], m and m[3] })
        end, mb.self(), K.T)
        assert(s:set_owner(heir))
        mb.send(heir, s)
        K.await(K.is("ready"))
        assert(c:send("to heir\n"))
        local m = K.await(K.is("heir"), "heir's report")
        return { mine, m[2], m[3], mb.receive(K.is("tcp"), 0) == nil }
      end)
    end)
    assert.same({ "to me", "tcp", "to heir", true }, r)
  end)

  it("set_owner to a dead process: nil, noproc, and the socket stays the caller's", function()
    local r = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local l, c, s = K.pair()
        local dead = mb.spawn(function() end)
        K.until_dead(dead)
        local out = {}
        local function e(...) out[#out + 1] = K.outcome(...) end
        e(s:set_owner(dead)); e(l:set_owner(dead))
        assert(c:send("kept"))
        e(K.recv_n(s, 4))
        e(l:close())
        return out
      end)
    end)
    assert.same({ "noproc", "noproc", "kept", true }, r)
  end)

  it("a listener handed on: the new owner closes it, the old one may not", function()
    local r = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local l = assert(K.tcp.listen("127.0.0.1", 0))
        local heir = mb.spawn(function(parent, T)
          local mb2 = require "moonbeam"
          local lst = mb2.receive(T)
          mb2.receive(function(m) return m == "close" end, T)
          mb2.send(parent, { "closed", lst:close() })
        end, mb.self(), K.T)
        assert(l:set_owner(heir))
        mb.send(heir, l)
        local _, not_owner = l:close()
        local port = l:port()
        local c = assert(K.tcp.connect("127.0.0.1", port))   -- still listening
        mb.send(heir, "close")
        local m = K.await(K.is("closed"))
        local _, refused = K.tcp.connect("127.0.0.1", port)
        return { not_owner, m[2], refused, c ~= nil }
      end)
    end)
    assert.same({ "not_owner", true, "econnrefused", true }, r)
  end)

  describe("a socket closes when its owner ends", function()
    -- how the owner ends, once it holds the socket and has said so
    local ends = {
      normally = function(node, pid) node:send(pid, "return") end,
      ["by a crash"] = function(node, pid) node:send(pid, "crash") end,
      ["killed while blocked in recv"] = function(node, pid) node:send(pid, "recv") end,
    }
    for how, finish in pairs(ends) do
      it(how .. ": the peer sees closed, and a listener it owned refuses connections", function()
        local watcher = H.puppet(node, node:self())
        local owner = node:spawn(function(host, T)
          local mb = require "moonbeam"
          local conn = mb.receive(T)
          local lst = mb.receive(T)
          mb.send(host, { "holding", mb.self() })
          local cmd = mb.receive(T)
          if cmd == "crash" then error("boom", 0) end
          if cmd == "recv" then mb.send(host, { "blocking" }); conn:recv() end
        end, node:self(), 5000)
        local ref = H.watch(node, watcher, owner)
        node:send(watcher, { "owner", owner })
        local peer = node:spawn(function(host, owner_pid)
          require("tcp_kit").main(host, function()
            local K = require "tcp_kit"
            local mb = K.mb
            local l, c, s = K.pair()
            local l2 = assert(K.tcp.listen("127.0.0.1", 0))
            local port2 = l2:port()
            assert(s:set_owner(owner_pid) and l2:set_owner(owner_pid))
            mb.send(owner_pid, s)
            mb.send(owner_pid, l2)
            mb.send(host, { "handed" })
            local _, err = c:recv(K.T)
            mb.receive(function(m) return m == "refused?" end, K.T)
            local _, refused = K.tcp.connect("127.0.0.1", port2)
            l:close()
            return err, refused
          end)
        end, node:self(), owner)
        H.wait_for(node, "handed")
        H.wait_for(node, "holding")
        finish(node, owner)
        if how:match("killed") then
          H.wait_for(node, "blocking")
          H.poll(node, function() local i = node:info(owner); return i and i.status == "waiting" end)
          node:send(watcher, { "signal", owner, "kill" })
        end
        local reason = H.down(node, ref)
        node:send(peer, "refused?")
        local m = H.wait_for(node, function(x) return type(x) == "table" and (x[1] == "done" or x[1] == "failed") end)
        assert.equal("done", m[1], m[2])
        assert.equal("closed", m[2][1])
        assert.equal("econnrefused", m[2][2])
        assert.equal(how == "normally" and "normal" or how == "by a crash" and "boom" or "killed", reason)
      end)
    end
  end)

  it("listener close wakes a process waiting in accept with closed, and so does its owner's end", function()
    local r = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local function acceptor(lst)
          return mb.spawn(function(parent, l)
            local mb2 = require "moonbeam"
            mb2.send(parent, { "woke", l:accept() })   -- no timeout: only the close can end it
          end, mb.self(), lst)
        end
        local l = assert(K.tcp.listen("127.0.0.1", 0))
        local a = acceptor(l)
        K.until_waiting(a)
        assert(l:close())
        local first = K.await(K.is("woke"), "a woken acceptor")
        -- a listener whose owner ends
        local owner = mb.spawn(function(parent, T)
          local mb2 = require "moonbeam"
          mb2.send(parent, { "listener", assert(require("moonbeam.tcp").listen("127.0.0.1", 0)) })
          mb2.receive(function(m) return m == "end" end, T)
        end, mb.self(), K.T)
        local l2 = K.await(K.is("listener"))[2]
        local b = acceptor(l2)
        K.until_waiting(b)
        mb.send(owner, "end")
        local second = K.await(K.is("woke"), "a woken acceptor")
        return { first[2], first[3], second[2], second[3] }
      end)
    end)
    assert.same({ nil, "closed", nil, "closed" }, r)
  end)

  it("an accepted connection is the accepting process's, and closes when it ends", function()
    local r = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local l = assert(K.tcp.listen("127.0.0.1", 0, { packet = "line" }))
        local acc = mb.spawn(function(parent, lst, T)
          local mb2 = require "moonbeam"
          local s = assert(lst:accept(T))
          mb2.send(parent, { "accepted", s, s:recv(T) })
          mb2.receive(function(m) return m == "end" end, T)
        end, mb.self(), l, K.T)
        local c = assert(K.tcp.connect("127.0.0.1", l:port(), { packet = "line" }))
        assert(c:send("hello\n"))
        local m = K.await(K.is("accepted"))
        local _, mine = m[2]:recv(10)
        mb.send(acc, "end")
        local _, gone = c:recv(K.T)
        return { m[3], mine, gone }
      end)
    end)
    assert.same({ "hello", "not_owner", "closed" }, r)
  end)

  describe("file descriptors", function()
    local pid   -- the node runs in this process
    do
      local f = io.open("/proc/self/stat")
      pid = f:read("n")
      f:close()
    end
    local function fds()
      local n, p = 0, io.popen("ls /proc/" .. pid .. "/fd")
      for _ in p:lines() do n = n + 1 end
      p:close()
      return n
    end

    it("come back to where they were after thousands of connections are abandoned", function()
      -- once by hand first: libuv keeps a spare fd from the first listen on (for EMFILE)
      T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local l, c, s = K.pair()
          local port = l:port()
          c:close(); s:close(); l:close()
          -- the I/O thread takes requests in order: once this is refused, the closes are done
          assert(select(2, K.tcp.connect("127.0.0.1", port)) == "econnrefused")
        end)
      end)
      local base = fds()
      local made = T.run_within(node, 30 * H.timeout, function(host, rounds, per)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local mb = K.mb
          local l = assert(K.tcp.listen("127.0.0.1", 0))   -- abandoned too: closed when we end
          local me, made = mb.self(), 0
          for _ = 1, rounds do
            -- accepts `per` connections; hands half to a process that ends at once, keeps the rest
            local acceptor = mb.spawn(function(parent, lst, n, T)
              local mb2 = require "moonbeam"
              for i = 1, n do
                local s = assert(lst:accept(T))
                if i % 2 == 0 then
                  local child = mb2.spawn(function(t) require("moonbeam").receive(t) end, T)
                  if s:set_owner(child) then mb2.send(child, s) end
                end
              end
              mb2.send(parent, { "accepted" })
            end, me, l, per, K.T)
            for _ = 1, per do
              mb.spawn(function(parent, port)
                local mb2 = require "moonbeam"
                local c = require("moonbeam.tcp").connect("127.0.0.1", port)
                if c then c:send("x") end
                mb2.send(parent, { "connected", c ~= nil })
              end, me, l:port())
            end
            for _ = 1, per do
              if K.await(K.is("connected"), "a connector")[2] then made = made + 1 end
            end
            K.await(K.is("accepted"), "the acceptor")
            K.until_dead(acceptor)
          end
          return made
        end)
      end, 10, 200)
      assert.equal(2000, made)
      local settled = H.poll(node, function() return fds() == base end, 10 * H.timeout)
      assert.is_true(settled, ("%d fds open, %d before"):format(fds(), base))
    end)
  end)
end)
