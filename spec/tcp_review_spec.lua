-- Regression tests for moonbeam.tcp bugs found in review (each fixed; see its comment).
local T = require "helpers.tcp"

describe("tcp review", function()
  local node
  before_each(function() node = T.start() end)
  after_each(function() node:stop() end)

  -- Fixed: core/tcp.c, mb_tcp_send: a send whose direct sendmsg (write_now) took only
  -- part of its bytes adds the rest to `unsent` and drops the lock, then mallocs and
  -- copies the rest (up to the whole frame) before mb_io_call queues it. Another
  -- process's send in that window sees unsent > 0, skips write_now and queues its
  -- own request, which can reach the I/O thread first: its bytes go out in the
  -- middle of the first frame (here: a 10-byte frame inside a 1 MiB one), so a
  -- packet-4 stream carries a bad length ("packet too large") or a mixed frame.
  -- Sends from several processes (anyone may send) must not interleave: queue the
  -- rest under the lock, or keep write_now off until the rest is queued.
  it("sends from two processes never interleave inside a frame", function()
    local r = T.run_within(node, 60000, function(host)
      require("tcp_kit").main(host, function()
        local K = require "tcp_kit"
        local mb = K.mb
        local _, c, s = K.pair({ packet = 4 })
        local rounds = 200
        local function sender(parent, conn, piece, n)
          local mb2 = require "moonbeam"
          for _ = 1, n do assert(conn:send(piece)) end
          mb2.send(parent, "sent")
        end
        mb.spawn(sender, mb.self(), c, ("a"):rep(1 << 20), rounds)
        mb.spawn(sender, mb.self(), c, ("b"):rep(10), rounds * 500)
        local big, small = 0, 0
        while big < rounds or small < rounds * 500 do
          local d, err = s:recv(K.T)
          if not d then return "recv: " .. tostring(err) end
          if d == ("b"):rep(10) then small = small + 1
          elseif #d == 1 << 20 and not d:find("[^a]") then big = big + 1
          else return ("a mixed frame of %d bytes"):format(#d) end
        end
        return "ok"
      end)
    end)
    assert.equal("ok", r)
  end)
end)
