-- SPEC 1: links and monitors by the thousand (the sets of core/sets.c grown,
-- churned and shrunk through the public calls). Correctness only; the cost is
-- measured by bench/links.lua.
local H = require "helpers.node"

describe("many links and monitors", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("keeps 100,000 monitors of one target apart: own refs, demonitor, one DOWN each", function()
    local N = 100000
    local msg = H.run_within(node, H.long_timeout, function(parent, n)
      local mb = require "moonbeam"
      local self = mb.self()
      local target = mb.spawn(function()
        local m = require "moonbeam"
        m.receive()
        m.exit("stop")
      end)
      local refs, index, distinct = {}, {}, 0
      for i = 1, n do
        local r = mb.monitor(target)
        if not index[r] then distinct = distinct + 1 end
        refs[i], index[r] = r, i
      end
      local held = mb.info(self).monitors
      local all_target = true
      for _, p in ipairs(held) do if p ~= target then all_target = false end end
      local first, again = 0, 0
      for i = 1, n, 2 do if mb.demonitor(refs[i]) then first = first + 1 end end
      for i = 1, n, 2 do if mb.demonitor(refs[i]) then again = again + 1 end end
      local left = #mb.info(self).monitors
      mb.send(target, "stop")
      -- exactly the even refs come DOWN, once each
      local downs, wrong, got = 0, 0, {}
      for _ = 1, n // 2 do
        local d = mb.receive(function(m) return m[1] == "DOWN" end, 5000)
        if not d then break end
        local i = index[d[2]]
        if not i or i % 2 == 1 or got[i] or d[3] ~= target or d[4] ~= "stop" then wrong = wrong + 1 end
        got[i or 0] = true
        downs = downs + 1
      end
      -- the target sent all its DOWNs at once; a stray one would be queued by now
      local extra = mb.receive(function(m) return m[1] == "DOWN" end, 0)
      mb.send(parent, {
        distinct, #held, all_target, first, again, left, downs, wrong, extra == nil, #mb.info(self).monitors,
      })
    end, N)
    assert.same({ N, N, true, N // 2, 0, N // 2, N // 2, 0, true, 0 }, msg)
  end)

  it("links to and unlinks from 5,000 processes and hears the end of exactly those still linked", function()
    local N = 5000
    local msg = H.run_within(node, H.long_timeout, function(parent, n)
      local mb = require "moonbeam"
      local self = mb.self()
      mb.trap_exit(true)
      local kids, index = {}, {}
      for i = 1, n do
        kids[i] = mb.spawn(function()
          local m = require "moonbeam"
          while true do
            local q = m.receive()
            if q == "stop" then m.exit("bye") end
            m.send(q[2], { "pong", m.self(), #m.info(m.self()).links })
          end
        end)
        index[kids[i]] = i
      end
      -- our links as reported by info, as a set of kid indexes (nil on a stranger or a duplicate)
      local function linked()
        local set, count = {}, 0
        for _, p in ipairs(mb.info(self).links) do
          local i = index[p]
          if not i or set[i] then return nil, -1 end
          set[i], count = true, count + 1
        end
        return set, count
      end
      for i = 1, n do mb.link(kids[i]) end
      for i = 1, n do mb.link(kids[i]) end   -- a second link is the same link
      local _, all = linked()
      for i = 2, n, 2 do mb.unlink(kids[i]) end
      local odd, half = linked()
      local odd_only = odd ~= nil
      for i = 1, n do if (odd and odd[i] or false) ~= (i % 2 == 1) then odd_only = false end end
      -- each kid's own side: it answers after it has acted on our link and unlink
      for i = 1, n do mb.send(kids[i], { "ping", self }) end
      local sides = 0
      for _ = 1, n do
        local r = mb.receive(function(m) return m[1] == "pong" end, 5000)
        if not r then break end
        if r[3] == index[r[2]] % 2 then sides = sides + 1 end
      end
      -- end them all; the even ones are watched so that we know when all have ended
      local watched = {}
      for i = 2, n, 2 do watched[mb.monitor(kids[i])] = true end
      for i = 1, n do mb.send(kids[i], "stop") end
      local exits, wrong, got = 0, 0, {}
      for _ = 1, n // 2 do
        local e = mb.receive(function(m) return m[1] == "EXIT" end, 5000)
        if not e then break end
        local i = index[e[2]]
        if not i or i % 2 == 0 or got[i] or e[3] ~= "bye" then wrong = wrong + 1 end
        got[i or 0] = true
        exits = exits + 1
      end
      local downs = 0
      for _ = 1, n // 2 do
        local d = mb.receive(function(m) return m[1] == "DOWN" and watched[m[2]] end, 5000)
        if not d then break end
        downs = downs + 1
      end
      -- a kid sends to its links before its monitors: a stray EXIT would be queued by now
      local extra = mb.receive(function(m) return m[1] == "EXIT" end, 0)
      mb.send(parent, { all, half, odd_only, sides, exits, wrong, downs, extra == nil, #mb.info(self).links })
    end, N)
    assert.same({ N, N // 2, true, N, N // 2, 0, N // 2, true, 0 }, msg)
  end)
end)
