-- SPEC 4: moonbeam.tcp active modes (false, "once", true) and their messages, max_packet and a
-- peer closing mid-frame in active mode, and backpressure both ways (send, active reading).
local T = require "helpers.tcp"

describe("tcp active mode", function()
  local node
  before_each(function() node = T.start() end)
  after_each(function() node:stop() end)

  it("true: every frame as {'tcp', conn, data} with the owner's own conn value, then {'tcp_closed', conn}", function()
    local msgs, recv_err = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local _, c, s = K.pair({ packet = "line" }, { packet = "raw" })
        assert(s:set_active(true) == true)
        local _, recv_err = s:recv(10)
        assert(c:send("a\nb\r\n"))
        assert(c:send("\nlast"))
        assert(c:close())
        return K.until_closed(s), recv_err
      end)
    end)
    assert.same({ { "tcp", "conn", "a" }, { "tcp", "conn", "b\r" }, { "tcp", "conn", "" }, { "tcp", "conn", "last" },
      { "tcp_closed", "conn" } }, msgs)
    assert.equal("active", recv_err)
  end)

  it("true with packet 4: many frames in one segment and a frame larger than a read, one message each", function()
    local ok = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local _, raw, s = K.pair({ packet = 4 }, { packet = "raw" })
        assert(s:set_active(true))
        local parts, want = {}, {}
        for i = 1, 200 do want[i] = ("f%d"):format(i); parts[i] = K.be32(#want[i]) .. want[i] end
        want[201] = ("B"):rep(300000)
        parts[201] = K.be32(300000) .. want[201]
        assert(raw:send(table.concat(parts)))
        for i = 1, 201 do
          local m = K.active_msg(s)
          if m[1] ~= "tcp" or m[3] ~= want[i] then return ("frame %d: %s %s"):format(i, m[1], #tostring(m[3])) end
        end
        return true
      end)
    end)
    assert.is_true(ok)
  end)

  it("'once': one message, then passive again until asked again", function()
    local r = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local _, c, s = K.pair({ packet = "line" }, { packet = "raw" })
        assert(s:set_active("once"))
        assert(c:send("one\ntwo\n"))   -- together: only the first may come as a message
        local out = { K.active_msg(s)[3] }
        out[2] = s:recv(K.T)           -- the second waited for a recv
        out[3] = mb.receive(K.is("tcp", s), 0) == nil
        assert(c:send("three\n"))
        out[4] = s:recv(K.T)
        assert(s:set_active("once"))
        assert(c:send("four\n"))
        out[5] = K.active_msg(s)[3]
        assert(s:set_active("once"))
        assert(c:close())
        out[6] = K.active_msg(s)[1]
        return out
      end)
    end)
    assert.same({ "one", "two", true, "three", "four", "tcp_closed" }, r)
  end)

  it("false after true: data goes back to recv, and nothing is lost or doubled", function()
    local r = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local _, c, s = K.pair({ packet = 4 })
        assert(s:set_active(true))
        assert(c:send("m1"))
        local first = K.active_msg(s)[3]
        assert(s:set_active(false) == true)
        assert(c:send("r1"))
        local second = s:recv(K.T)
        return { first, second, mb.receive(K.is("tcp", s), 0) == nil }
      end)
    end)
    assert.same({ "m1", "r1", true }, r)
  end)

  it("'once' on a socket whose peer already closed gives what is left, then tcp_closed", function()
    local r = T.run(node, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local _, c, s = K.pair({ packet = "line" }, { packet = "raw" })
        assert(c:send("x\ny"))
        assert(c:close())
        assert(s:recv(K.T) == "x")
        local out = {}
        for _ = 1, 2 do
          assert(s:set_active("once"))
          local m = K.active_msg(s)
          out[#out + 1] = m[1] .. ":" .. tostring(m[3])
        end
        return out
      end)
    end)
    assert.same({ "tcp:y", "tcp_closed:nil" }, r)
  end)

  describe("errors", function()
    local cases = {
      { "a line over max_packet", { packet = "line", max_packet = 8 }, "good\n" .. ("z"):rep(9) .. "\n" },
      { "an unterminated line past max_packet", { packet = "line", max_packet = 8 }, "good\n" .. ("z"):rep(40) },
      { "a 4-byte header over max_packet", { packet = 4, max_packet = 8 },
        string.pack(">I4", 4) .. "good" .. string.pack(">I4", 9) .. "123456789" },
    }
    for _, case in ipairs(cases) do
      it("on " .. case[1] .. ": the good frame, {'tcp_error', conn, 'packet too large'}, {'tcp_closed', conn}; the peer sees closed", function()
        local msgs, peer_err = T.run(node, function(host, opts, bytes)
          require("tcp_kit").main(host, function()
            local K = require "tcp_kit"
            local _, raw, s = K.pair(opts, { packet = "raw" })
            assert(s:set_active(true))
            assert(raw:send(bytes))
            local msgs = K.until_closed(s)
            local _, peer_err = raw:recv(K.T)
            return msgs, peer_err
          end)
        end, case[2], case[3])
        assert.same({ { "tcp", "conn", "good" }, { "tcp_error", "conn", "packet too large" }, { "tcp_closed", "conn" } },
          msgs)
        assert.truthy(peer_err == "closed" or peer_err == "econnreset", tostring(peer_err))
      end)
    end

    it("a peer closing mid-frame: the partial frame is dropped, then tcp_closed", function()
      local msgs = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local _, raw, s = K.pair({ packet = 4 }, { packet = "raw" })
          assert(s:set_active(true))
          assert(raw:send(K.be32(3) .. "abc" .. K.be32(1000) .. ("h"):rep(500)))
          assert(raw:close())
          local msgs = {}
          for i, m in ipairs(K.until_closed(s)) do msgs[i] = m[1] .. ":" .. tostring(m[3]) end
          return msgs
        end)
      end)
      assert.same({ "tcp:abc", "tcp_closed:nil" }, msgs)
    end)
  end)

  describe("backpressure", function()
    local TOTAL_CHUNKS, CHUNK = 512, 65536   -- 32 MiB: more than loopback's buffers plus the marks

    -- primed: the reader has called recv once, so its socket reads ahead (at most 64 KiB)
    for _, primed in ipairs { false, true } do
      it("send suspends while the peer does not read" .. (primed and " (after one recv)" or "") ..
         ", resumes when it does, and loses nothing", function()
        local blocked, early, ok, sent = T.run(node, function(host, chunks, size, prime)
          require("tcp_kit").main(host, function()
            local K = require "tcp_kit"
            local mb = K.mb
            local _, c, s = K.pair()
            if prime then
              assert(c:send("p"))
              assert(s:recv(K.T) == "p")
            end
            local me = mb.self()
            local sender = mb.spawn(function(parent, conn, n, sz)
              local mb2 = require "moonbeam"
              for i = 1, n do
                local ok, err = conn:send(string.pack(">I4", i) .. string.char(i % 251):rep(sz - 4))
                if not ok then mb2.send(parent, { "sent_all", false, err }) return end
              end
              mb2.send(parent, { "sent_all", true })
            end, me, c, chunks, size)
            K.until_waiting(sender)   -- blocked in send: nobody reads s
            local early = mb.receive(K.is("sent_all"), 300) ~= nil
            local blocked = mb.info(sender) ~= nil and mb.info(sender).status == "waiting"
            -- read it all back, chunk by chunk, in order
            local pending, i, good = "", 0, true
            while i < chunks do
              local d, err = s:recv(K.T)
              if not d then error("recv: " .. err .. " after chunk " .. i) end
              pending = pending .. d
              while #pending >= size do
                i = i + 1
                local want = string.pack(">I4", i) .. string.char(i % 251):rep(size - 4)
                good = good and pending:sub(1, size) == want
                pending = pending:sub(size + 1)
              end
            end
            local done = K.await(K.is("sent_all"), "sender's end")
            return blocked, early, good and pending == "", done[2]
          end)
        end, TOTAL_CHUNKS, CHUNK, primed)
        assert.is_true(blocked)
        assert.is_false(early)
        assert.is_true(ok)
        assert.is_true(sent)
      end)
    end

    it("an active-true socket stops reading while its owner's queue is over the bound, then delivers it all in order", function()
      local peak, stuck, early, ok = T.run(node, function(host, chunks, size)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local mb = K.mb
          local _, c, s = K.pair()
          local me = mb.self()
          local owner = mb.spawn(function(parent, n, sz, T)
            local mb2 = require "moonbeam"
            local conn = mb2.receive(T)
            assert(conn:set_active(true))
            mb2.send(parent, { "active" })
            mb2.receive(function(m) return m == "go" end)   -- sleeps while the tcp messages pile up
            local pending, i, good = "", 0, true
            while i < n do
              local m = mb2.receive(function(x) return type(x) == "table" and x[2] == conn end, T)
              if not m or m[1] ~= "tcp" then mb2.send(parent, { "drained", false, i }) return end
              pending = pending .. m[3]
              while #pending >= sz do
                i = i + 1
                good = good and pending:sub(1, sz) == string.pack(">I4", i) .. string.char(i % 251):rep(sz - 4)
                pending = pending:sub(sz + 1)
              end
            end
            mb2.send(parent, { "drained", good and pending == "", i })
          end, me, chunks, size, K.T)
          assert(s:set_owner(owner))
          mb.send(owner, s)
          K.await(K.is("active"), "owner's active")
          local flooder = mb.spawn(function(parent, conn, n, sz)
            local mb2 = require "moonbeam"
            for i = 1, n do
              if not conn:send(string.pack(">I4", i) .. string.char(i % 251):rep(sz - 4)) then break end
            end
            mb2.send(parent, { "flooded" })
          end, me, c, chunks, size)
          -- sample the owner's memory until the flooder is stuck in send, and a while after
          local peak = 0
          local function sample()
            local info = mb.info(owner)
            if info and info.memory > peak then peak = info.memory end
          end
          local stuck = false
          for _ = 1, K.T do
            sample()
            local f = mb.info(flooder)
            if not f then break end
            if f.status == "waiting" then stuck = true break end
            mb.sleep(1)
          end
          local early = mb.receive(K.is("flooded"), 300) ~= nil
          sample()
          mb.send(owner, "go")
          local d = K.await(K.is("drained"), "owner's drain")
          K.await(K.is("flooded"), "flooder's end")
          return peak, stuck, early, d[2]
        end)
      end, TOTAL_CHUNKS, CHUNK)
      assert.is_true(stuck)
      assert.is_false(early)
      assert.is_true(ok)
      -- the flood reached the owner (the pause starts past 1 MiB queued) and stayed near that: 1 MiB
      -- of queued messages, one more read past it, and the owner's own heap
      assert.is_true(peak > 1024 * 1024, "owner's memory peaked at " .. peak)
      assert.is_true(peak < 4 * 1024 * 1024, "owner's memory peaked at " .. peak)
    end)
  end)
end)
