-- SPEC 4: moonbeam.tcp in passive mode: the packet modes (raw, line, 4) and max_packet.
local T = require "helpers.tcp"

describe("tcp", function()
  local node
  before_each(function() node = T.start() end)
  after_each(function() node:stop() end)

  describe("packet raw", function()
    it("carries any bytes both ways, as sent", function()
      local a, b, port, peer_host, peer_port, cport = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local l, c, s = K.pair()
          local bytes = {}
          for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
          local all = table.concat(bytes)
          assert(c:send(all) == true)
          local got = K.recv_n(s, 256)
          assert(s:send("pong\0") == true)
          local h, p = s:peer()
          return got == all, K.recv_n(c, 5), l:port(), h, p, c:port()
        end)
      end)
      assert.is_true(a)
      assert.equal("pong\0", b)
      assert.is_true(port > 0)
      assert.equal("127.0.0.1", peer_host)
      assert.equal(cport, peer_port)
    end)

    it("delivers everything, in order, then closed when the peer closes", function()
      local n, ok, err = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local _, c, s = K.pair()
          local want = {}
          for i = 1, 2000 do
            local piece = ("%05d:"):format(i) .. ("x"):rep(i % 97)
            want[#want + 1] = piece
            assert(c:send(piece))
          end
          assert(c:close() == true)
          local got, err = K.drain(s)
          return #table.concat(want), table.concat(got) == table.concat(want), err
        end)
      end)
      assert.is_true(n > 0)
      assert.is_true(ok)
      assert.equal("closed", err)
    end)
  end)

  describe("packet line", function()
    it("gives one line per recv without its \\n, keeps \\r, and a last line without \\n before closed", function()
      local frames, err = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local _, c, s = K.pair({ packet = "line" }, { packet = "raw" })
          assert(c:send("one\ntwo\r\n\nthr"))
          assert(c:send("ee\nlast"))
          assert(c:close())
          return K.drain(s)
        end)
      end)
      assert.same({ "one", "two\r", "", "three", "last" }, frames)
      assert.equal("closed", err)
    end)

    it("sends the bytes as given (no newline added), and accepted sockets inherit the listener's mode", function()
      local got = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local _, c, s = K.pair({ packet = "line" }, { packet = "line" })
          assert(s:send("a"))
          assert(s:send("b\nc\n"))
          return { c:recv(K.T), c:recv(K.T) }
        end)
      end)
      assert.same({ "ab", "c" }, got)
    end)

    it("joins a line sent a byte at a time, and splits many lines sent at once", function()
      local one, many = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local _, c, s = K.pair({ packet = "line" }, { packet = "raw" })
          local line = ("0123456789"):rep(10)
          for i = 1, #line do assert(c:send(line:sub(i, i))) end
          assert(c:send("\n"))
          local first = s:recv(K.T)
          local batch = {}
          for i = 1, 500 do batch[i] = "line" .. i .. "\n" end
          assert(c:send(table.concat(batch)))
          local want = {}
          for i = 1, 500 do want[i] = "line" .. i end
          return first == line, K.expect_frames(s, want) or true
        end)
      end)
      assert.is_true(one)
      assert.is_true(many)
    end)
  end)

  describe("packet 4", function()
    it("adds the length prefix on send and strips it on recv; empty frames count", function()
      local wire, a, b, c2 = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local _, raw, s = K.pair({ packet = 4 }, { packet = "raw" })
          assert(s:send("hi"))
          assert(s:send(""))
          local wire = K.recv_n(raw, 10)
          assert(raw:send(K.be32(3) .. "abc" .. K.be32(0) .. K.be32(1) .. "\n"))
          return wire, s:recv(K.T), s:recv(K.T), s:recv(K.T)
        end)
      end)
      assert.equal("\0\0\0\2hi\0\0\0\0", wire)
      assert.equal("abc", a)
      assert.equal("", b)
      assert.equal("\n", c2)
    end)

    it("reassembles frames split across segments, at every split point", function()
      local bad = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local mb = K.mb
          local _, raw, s = K.pair({ packet = 4 }, { packet = "raw" })
          local frame = K.be32(5) .. "hello"
          for cut = 1, #frame - 1 do
            assert(raw:send(frame:sub(1, cut)))
            mb.sleep(2)   -- widens the window for the I/O thread to read the part alone
            assert(raw:send(frame:sub(cut + 1)))
            local bad = K.expect_frames(s, { "hello" })
            if bad then return "cut " .. cut .. ": " .. bad end
          end
          return false
        end)
      end)
      assert.is_false(bad)
    end)

    it("carries frames larger than a read (and than the read-ahead) whole", function()
      local ok = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local _, c, s = K.pair({ packet = 4 })
          local sizes = { 65535, 65536, 65537, 200000, 1 << 20, 3 }
          local sent = {}
          for i, n in ipairs(sizes) do
            sent[i] = string.char(64 + i):rep(n - 1) .. "!"
            assert(c:send(sent[i]))
          end
          return K.expect_frames(s, sent) or true
        end)
      end)
      assert.is_true(ok)
    end)

    it("splits many frames that arrive in one segment", function()
      local ok = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local _, raw, s = K.pair({ packet = 4 }, { packet = "raw" })
          local parts = {}
          for i = 1, 300 do parts[i] = K.be32(#tostring(i)) .. tostring(i) end
          assert(raw:send(table.concat(parts)))
          local want = {}
          for i = 1, 300 do want[i] = tostring(i) end
          return K.expect_frames(s, want) or true
        end)
      end)
      assert.is_true(ok)
    end)

    it("drops a partial frame at the end of input: recv gives closed", function()
      local first, r, err = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local _, raw, s = K.pair({ packet = 4 }, { packet = "raw" })
          assert(raw:send(K.be32(2) .. "ok" .. K.be32(100) .. ("x"):rep(10)))
          assert(raw:close())
          return s:recv(K.T), s:recv(K.T)
        end)
      end)
      assert.equal("ok", first)
      assert.is_nil(r)
      assert.equal("closed", err)
    end)
  end)

  describe("max_packet", function()
    -- Each case: listener opts, the bytes the raw client sends, the frames recv must give first.
    local cases = {
      { "a line longer than max_packet", { packet = "line", max_packet = 8 }, ("y"):rep(9) .. "\n", {} },
      { "an unterminated line past max_packet", { packet = "line", max_packet = 8 }, ("y"):rep(20), {} },
      { "a 4-byte header over max_packet", { packet = 4, max_packet = 8 }, string.pack(">I4", 9) .. "123456789", {} },
      -- found by recv behind a good frame, not by the I/O thread's look at the first one
      { "a line over the bound behind a good one", { packet = "line", max_packet = 8 }, "ok\n" .. ("z"):rep(30) .. "\n", { "ok" } },
      { "a frame over the bound behind a good one", { packet = 4, max_packet = 8 },
        string.pack(">I4", 2) .. "ok" .. string.pack(">I4", 30) .. ("z"):rep(30), { "ok" } },
    }
    for _, case in ipairs(cases) do
      it("closes the connection on " .. case[1] .. ": recv gives packet too large, the peer sees closed", function()
        local frames, r, err, peer_err = T.run(node, function(host, opts, bytes, n)
          require("tcp_kit").main(host, function()
            local K = require "tcp_kit"
            local _, raw, s = K.pair(opts, { packet = "raw" })
            assert(raw:send(bytes))
            local frames = {}
            for i = 1, n do frames[i] = s:recv(K.T) end
            local r, err = s:recv(K.T)
            local d, peer_err = raw:recv(K.T)
            return frames, r, err, d == nil and peer_err
          end)
        end, case[2], case[3], #case[4])
        assert.same(case[4], frames)
        assert.is_nil(r)
        assert.equal("packet too large", err)
        assert.truthy(peer_err == "closed" or peer_err == "econnreset", tostring(peer_err))
      end)
    end

    it("lets a frame of exactly max_packet through, in both modes", function()
      local a, b = T.run(node, function(host)
        require("tcp_kit").main(host, function()
          local K = require "tcp_kit"
          local _, c1, s1 = K.pair({ packet = "line", max_packet = 8 }, { packet = "raw" })
          assert(c1:send("12345678\n"))
          local _, c2, s2 = K.pair({ packet = 4, max_packet = 8 })
          assert(c2:send("abcdefgh"))
          return s1:recv(K.T), s2:recv(K.T)
        end)
      end)
      assert.equal("12345678", a)
      assert.equal("abcdefgh", b)
    end)
  end)
end)
