-- SPEC 2: the gen_server callbacks: every return shape of the callback table, the server timeout,
-- terminate and exit signals, bad and missing callbacks, and the log lines a server writes
-- (read from a moonbeam run's stderr, spec/fixtures/cli/gs_logs.lua). code_change waits for hot
-- reload. Servers are spec/fixtures/gs_echo.lua (gs_bare, gs_nocall); calls run in gs_client.
local H = require "helpers.node"
local G = require "helpers.gs"
local C = require "helpers.cli"

local LONG = 60000

-- Does `s` (any value) start with the string `prefix`?
local function starts(s, prefix)
  return type(s) == "string" and s:sub(1, #prefix) == prefix
end

-- The reported message of the next "info" report from srv.
local function info(node, srv)
  return G.report(node, "info", srv)[3]
end

local function is_timeout_info(m) return m[1] == "info" and m[3] == "timeout" end

describe("a server timeout", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("delivers 'timeout' to handle_info when init returns one, again each time it is returned", function()
    local srv = G.server(node, "gs_echo", { report = node:self(), init = "timeout", ms = 10, timeouts = 3 })
    for _ = 1, 3 do assert.equal("timeout", info(node, srv)) end
    -- the third handle_info returned no timeout: no fourth comes
    G.ok(G.calls(node, { "call", srv, "sync" })[1])
    assert.is_true(H.no_message(node, is_timeout_info))
  end)

  it("follows a reply, a noreply, a cast's noreply and an info's noreply that return one", function()
    local srv = G.server(node, "gs_echo", { report = node:self() })
    assert.equal("r", G.ok(G.calls(node, { "call", srv, { "reply_timeout", "r", 10 } })[1]))
    assert.equal("timeout", info(node, srv))
    local held = G.calls_async(node, { "call", srv, { "noreply_timeout", 10 }, LONG })
    assert.equal("timeout", info(node, srv))
    G.calls(node, { "cast", srv, { "release", "held answered" } })
    assert.equal("held answered", G.ok(G.results(node, held)[1]))
    G.calls(node, { "cast", srv, { "noreply_timeout", 10 } })
    assert.equal("timeout", info(node, srv))
    node:send(srv, { "noreply_timeout", 10 })
    assert.same({ "noreply_timeout", 10 }, info(node, srv))
    assert.equal("timeout", info(node, srv))
  end)

  it("is cancelled by a message that comes first", function()
    local srv = G.server(node, "gs_echo", { report = node:self() })
    -- the callback queues a message for the server before returning a 50 ms timeout
    local r = G.calls(node, { "call", srv, { "reply_timeout_poked", "r", 50 } }, { "call", srv, "sync" })
    assert.equal("r", G.ok(r[1]))
    assert.equal("poke", info(node, srv))
    assert.is_true(H.no_message(node, is_timeout_info))
  end)
end)

describe("stop returns", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("from handle_call with a reply answer the caller, run terminate and end the server", function()
    local srv = G.server(node, "gs_echo", { report = node:self(), value = "st" })
    local ref = G.watch(node, srv)
    local r = G.calls(node, { "call", srv, { "stop_reply", "done", "last words" }, LONG })
    assert.equal("last words", G.ok(r[1]))
    assert.same({ "terminate", srv, "done", "st" }, G.report(node, "terminate", srv))
    assert.equal("done", H.down(node, ref))
  end)

  it("are told apart by their count: stop, reason, nil, state replies nil", function()
    local srv = G.server(node, "gs_echo", { report = node:self() })
    local r = G.calls(node, { "call", srv, { "stop_reply", "normal", nil, n = 3 }, LONG })
    assert.is_true(r[1][1], tostring(r[1][2]))
    assert.is_nil(r[1][2])
    assert.equal("normal", G.report(node, "terminate", srv)[3])
  end)

  it("from handle_call without a reply fail the call with the reason, after terminate", function()
    local srv = G.server(node, "gs_echo", { report = node:self() })
    local err = G.err(G.calls(node, { "call", srv, { "stop_noreply", "no answer" }, LONG })[1])
    assert.equal(G.call_error(srv, "no answer"), err)
    assert.equal("no answer", G.report(node, "terminate", srv)[3])
  end)

  it("from handle_cast and handle_info run terminate and end the server with the reason", function()
    local srv = G.server(node, "gs_echo", { report = node:self() })
    local ref = G.watch(node, srv)
    G.calls(node, { "cast", srv, { "stop", "cast stop" } })
    assert.equal("cast stop", G.report(node, "terminate", srv)[3])
    assert.equal("cast stop", H.down(node, ref))
    srv = G.server(node, "gs_echo", { report = node:self() })
    ref = G.watch(node, srv)
    node:send(srv, { "stop", "info stop" })
    assert.equal("info stop", G.report(node, "terminate", srv)[3])
    assert.equal("info stop", H.down(node, ref))
  end)
end)

describe("handle_info", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("gets plain messages and the DOWN messages of the server's monitors", function()
    local srv = G.server(node, "gs_echo", { report = node:self() })
    node:send(srv, { "plain", 1 })
    assert.same({ "plain", 1 }, info(node, srv))
    local p = H.puppet(node)
    local ref = G.ok(G.calls(node, { "call", srv, { "monitor", p } })[1])
    node:send(p, { "exit", "puppet gone" })
    assert.same({ "DOWN", ref, p, "puppet gone" }, info(node, srv))
  end)
end)

describe("terminate and exit signals", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("run terminate on an exit signal from the parent when the server traps exits", function()
    -- the parent (start_link's caller) signals the server as a supervisor does
    G.spawn(node, function(host)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      mb.trap_exit(true)
      local srv = gs.start_link("gs_echo", { trap = true, report = host, value = "kept" })
      local ref = mb.monitor(srv)
      mb.exit(srv, "shutdown")
      local down = mb.receive(function(m) return m[1] == "DOWN" and m[2] == ref end, 5000)
      mb.send(host, { "parent saw", srv, down and down[4] })
    end, node:self())
    local saw = G.wait(node, "parent saw")
    assert.equal("shutdown", saw[3])
    assert.same({ "terminate", saw[2], "shutdown", "kept" }, G.report(node, "terminate", saw[2]))
  end)

  it("run terminate with the parent's reason when the parent ends", function()
    local parent = node:spawn(function(host)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      local srv = gs.start_link("gs_echo", { trap = true, report = host })
      mb.send(host, { "started", srv })
      mb.receive(function(m) return m == "end now" end)
      mb.exit("parent ended")
    end, node:self())
    local srv = G.wait(node, "started")[2]
    local ref = G.watch(node, srv)
    node:send(parent, "end now")
    assert.equal("parent ended", G.report(node, "terminate", srv)[3])
    assert.equal("parent ended", H.down(node, ref))
  end)

  it("give other processes' EXIT messages to handle_info, and the server goes on", function()
    local srv = G.server(node, "gs_echo", { trap = true, report = node:self() })
    local p = H.puppet(node)
    G.ok(G.calls(node, { "call", srv, { "link", p } })[1])
    node:send(p, { "exit", "linked one ended" })
    assert.same({ "EXIT", p, "linked one ended" }, info(node, srv))
    assert.equal("alive", G.ok(G.calls(node, { "call", srv, { "echo", "alive" } })[1]))
    assert.is_true(H.no_message(node, "terminate", 0))
  end)

  it("run terminate with the reason when a callback raises", function()
    local srv = G.server(node, "gs_echo", { report = node:self() })
    local ref = G.watch(node, srv)
    G.calls(node, { "cast", srv, { "crash", "cast crashed" } })
    assert.equal("cast crashed", G.report(node, "terminate", srv)[3])
    assert.equal("cast crashed", H.down(node, ref))
  end)
end)

describe("bad callbacks", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("crash the server when handle_call returns a bad value, and the call fails saying so", function()
    local what = "bad return from handle_call: "
    for _, op in ipairs { "bad_shape", "bad_none" } do
      local srv = G.server(node, "gs_echo", { report = node:self() })
      local ref = G.watch(node, srv)
      local err = G.err(G.calls(node, { "call", srv, { op }, LONG })[1])
      assert.is_true(starts(err, G.call_error(srv, what)), err)
      assert.is_true(starts(H.down(node, ref), what))
      assert.is_true(starts(G.report(node, "terminate", srv)[3], what)) -- terminate runs, as in OTP
    end
  end)

  it("crash the server when handle_cast or handle_info returns a bad value", function()
    local srv = G.server(node, "gs_echo", {})
    local ref = G.watch(node, srv)
    G.calls(node, { "cast", srv, { "bad_shape" } })
    local reason = H.down(node, ref)
    assert.is_true(starts(reason, "bad return from handle_cast: "), tostring(reason))
    srv = G.server(node, "gs_echo", {})
    ref = G.watch(node, srv)
    node:send(srv, { "bad_shape" })
    reason = H.down(node, ref)
    assert.is_true(starts(reason, "bad return from handle_info: "), tostring(reason))
  end)

  it("crash the server on a call when handle_call is missing", function()
    local srv = G.server(node, "gs_nocall", {})
    local ref = G.watch(node, srv)
    assert.equal(G.call_error(srv, "missing handle_call"), G.err(G.calls(node, { "call", srv, "x", LONG })[1]))
    assert.equal("missing handle_call", H.down(node, ref))
  end)

  it("drop casts and messages when handle_cast or handle_info is missing; the server goes on", function()
    local srv = G.server(node, "gs_bare", {})
    local r = G.calls(node, { "cast", srv, "dropped" }, { "send", srv, "dropped too" }, { "call", srv, "still here" })
    assert.is_true(G.ok(r[1]))
    assert.equal("still here", G.ok(r[3]))
  end)
end)

-- The lines of a gs_logs.lua run's stderr that contain `text`.
local function lines_with(r, text)
  local found = {}
  for _, line in ipairs(r.err) do
    if line:find(text, 1, true) then found[#found + 1] = line end
  end
  return found
end

describe("gen_server log lines (stderr of a moonbeam run)", function()
  it("are one crash report for a crash, naming pid, module, last message and reason, state cut short", function()
    local r = C.run { "-P", C.modules, C.script "gs_logs.lua", "crash" }
    assert.equal(0, r.status, r.stderr)
    local pid = r.out[1]
    assert.equal(G.call_error(pid, "kaboom-gs"), H.strip(r.out[2]))
    -- two servers stopped with normal reasons wrote none
    assert.equal(1, C.count(r.stderr, "crash report"), r.stderr)
    local head = lines_with(r, "crash report")[1]
    assert.truthy(head:find(pid, 1, true), head)
    assert.truthy(head:find("gs_echo", 1, true), head)
    assert.truthy(r.stderr:find("last-message-marker", 1, true), r.stderr)
    assert.truthy(r.stderr:find("kaboom-gs", 1, true), r.stderr)
    -- the state is a 1 MiB string: the report shows a bounded part of it
    assert.is_true(#r.stderr < 256 * 1024, "stderr holds " .. #r.stderr .. " bytes")
  end)

  it("are one warning each for a cast and a message dropped for a missing callback, naming both", function()
    local r = C.run { "-P", C.modules, C.script "gs_logs.lua", "missing" }
    assert.equal(0, r.status, r.stderr)
    assert.same({ "still here" }, r.out)
    for _, case in ipairs { { "handle_cast", "cast-marker" }, { "handle_info", "info-marker" } } do
      local found = lines_with(r, case[1])
      assert.equal(1, #found, r.stderr)
      for _, text in ipairs { "warning", "gs_bare", case[2] } do
        assert.truthy(found[1]:find(text, 1, true), found[1])
      end
    end
    assert.equal(0, C.count(r.stderr, "crash report"))
  end)
end)
