-- SPEC 2 under load: many clients call a few gen_servers while the servers are killed mid-call.
-- Every call is answered or fails with a reason, none hangs past its timeout, and no late reply
-- or monitor message is left in a client's mailbox. Servers are spec/fixtures/gs_echo.lua.
local H = require "helpers.node"
local G = require "helpers.gs"

local CLIENTS, CALLS, SERVERS = 50, 20, 3

describe("gen_server under load", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("answers or fails every call of 50 clients while servers are killed mid-call", function()
    -- the keeper starts the servers as stress_1..N and restarts each one that ends
    local keeper = G.spawn(node, function(host, n)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      local index = {}
      local function start(i)
        for _ = 1, 100 do -- the killer may kill a new server before start returns
          local pid = gs.start("gs_echo", {}, { name = "stress_" .. i })
          if pid then index[mb.monitor(pid)] = i; return end
        end
        error("stress_" .. i .. " does not start")
      end
      for i = 1, n do start(i) end
      mb.send(host, { "servers up" })
      while true do
        local m = mb.receive()
        if m == "stop" then break end
        if type(m) == "table" and m[1] == "DOWN" and index[m[2]] then
          local i = index[m[2]]
          index[m[2]] = nil
          start(i)
        end
      end
      mb.send(host, { "keeper stopped" })
    end, node:self(), SERVERS)
    G.wait(node, "servers up")

    local killer = G.spawn(node, function(host, n)
      local mb = require "moonbeam"
      math.randomseed(7)
      local kills = 0
      while not mb.receive(function(m) return m == "stop" end, math.random(2, 8)) do
        local pid = mb.whereis("stress_" .. math.random(n))
        if pid then
          mb.exit(pid, "kill")
          kills = kills + 1
        end
      end
      mb.send(host, { "kills", kills })
    end, node:self(), SERVERS)

    for id = 1, CLIENTS do
      G.spawn(node, function(host, me, n, calls)
        local mb = require "moonbeam"
        local gs = require "moonbeam.gen_server"
        math.randomseed(me)
        for i = 1, calls do
          local name = "stress_" .. math.random(n)
          local server = (i % 2 == 0 and mb.whereis(name)) or name -- pids and names both
          local x = me * 1000 + i
          local req = math.random(3) == 1 and { "sleep", math.random(0, 3), x } or { "echo", x }
          local ok, r = pcall(gs.call, server, req, 2000)
          mb.send(host, { "outcome", me, i, ok, r, x, tostring(server) })
        end
        mb.send(host, { "client done", me, mb.receive(100) })
      end, node:self(), id, SERVERS, CALLS)
    end

    local seen, answered, failed = {}, 0, {}
    for _ = 1, CLIENTS * CALLS do
      local m = G.wait(node, "outcome")
      local key = m[2] .. "/" .. m[3]
      assert.is_nil(seen[key], "two outcomes for call " .. key)
      seen[key] = true
      if m[4] then
        assert.equal(m[6], m[5])
        answered = answered + 1
      else
        local reason = tostring(m[5]):match("^call to " .. m[7]:gsub("%p", "%%%0") .. ": (.*)$")
        assert.truthy(reason == "noproc" or reason == "killed" or reason == "timeout", tostring(m[5]))
        failed[reason] = (failed[reason] or 0) + 1
      end
    end
    for _ = 1, CLIENTS do
      local done = G.wait(node, "client done")
      assert.is_nil(done[3], "a message was left in client " .. done[2] .. "'s mailbox")
    end
    node:send(killer, "stop")
    assert.is_true(G.wait(node, "kills")[2] > 0)
    node:send(keeper, "stop")
    G.wait(node, "keeper stopped")
    assert.is_true(answered > 0)
  end)

  it("fails every queued call with killed when the server is killed", function()
    local srv = G.server(node, "gs_echo", { report = node:self() })
    local clients = {}
    for i = 1, CLIENTS do
      clients[i] = G.calls_async(node, { "call", srv, { "hold" }, 60000 }, { "receive", 100 })
    end
    -- every call has reached the server, which holds them all
    for _ = 1, CLIENTS do G.report(node, "holding", srv) end
    G.kill(node, srv, "kill")
    for i = 1, CLIENTS do
      local r = G.results(node, clients[i])
      assert.equal(G.call_error(srv, "killed"), G.err(r[1]))
      assert.is_nil(G.ok(r[2]))
    end
  end)
end)
