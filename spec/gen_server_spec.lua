-- SPEC 2: gen_server.start, start_link, call, cast, reply and stop, and node:call / node:cast on a
-- host node (SPEC 7). The callbacks' return shapes, terminate and bad callbacks:
-- gen_server_callbacks_spec.lua; deadlocks: gen_server_deadlock_spec.lua; load: gen_server_stress_spec.lua.
-- Servers are spec/fixtures/gs_echo.lua (and gs_bare, gs_nocall); calls run in gs_client processes.
local H = require "helpers.node"
local G = require "helpers.gs"

-- A call timeout far beyond the spec's bounded waits: a failure that must come at once does.
local LONG = 60000

describe("gen_server.start", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("runs init before returning the server's pid", function()
    local msg = G.run(node, function(host)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      local pid = gs.start("gs_echo", { report = mb.self(), value = "v" })
      -- init's report was sent before start returned: it is already queued
      local init = mb.receive(function(m) return m[1] == "init" end, 0)
      mb.send(host, { "started", type(pid), init and init[2] == pid, init and init[3], mb.is_alive(pid),
        mb.info(pid).module })
    end)
    assert.same({ "started", "userdata", true, "v", true, "gs_echo" }, msg)
  end)

  it("passes args, any sendable value, to init", function()
    local deep = { list = { 1, 2, { "x" } }, flag = false, half = 0.5, [7] = "seven" }
    for _, args in ipairs { "a string", 42, { value = deep } } do
      local srv = G.server(node, "gs_echo", args)
      local want = type(args) == "table" and deep or args
      assert.same(want, G.ok(G.calls(node, { "call", srv, { "get" } })[1]))
    end
  end)

  it("registers the server under opts.name", function()
    local srv = G.server(node, "gs_echo", { value = "named" }, { name = "gs_named" })
    assert.equal(srv, node:whereis("gs_named"))
    assert.equal("named", G.ok(G.calls(node, { "call", "gs_named", { "get" } })[1]))
  end)

  it("returns nil, already_started and the holder's pid for a taken name, and leaves the holder be", function()
    local srv = G.server(node, "gs_echo", { value = "first" }, { name = "gs_taken" })
    local plain = H.puppet(node)
    H.ask(node, plain, "registered", "register", "gs_plain")
    local r = G.calls(node,
      { "start", "gs_echo", { value = "second" }, { name = "gs_taken" } },
      { "start", "gs_echo", {}, { name = "gs_plain" } },
      { "call", "gs_taken", { "get" } })
    assert.same({ true, nil, "already_started", srv }, { r[1][1], r[1][2], r[1][3], r[1][4] })
    assert.same({ true, nil, "already_started", plain }, { r[2][1], r[2][2], r[2][3], r[2][4] })
    assert.equal("first", G.ok(r[3]))
    assert.equal(srv, node:whereis("gs_taken"))
    assert.equal(plain, node:whereis("gs_plain"))
  end)

  it("returns nil and the loader's message for a module that cannot be found", function()
    local r = G.calls(node, { "start", "gs_no_such_module", {} })
    local pid, reason = G.ok(r[1])
    assert.is_nil(pid)
    assert.truthy(tostring(reason):find("gs_no_such_module", 1, true), tostring(reason))
  end)
end)

-- Start gs_echo with cfg through gen_server[fun] ("start" or "start_link") in a process that
-- traps exits or not; it reports what start returned, whether the server (which reports its pid
-- from init) ended, whether an EXIT came after that, and its link count. opts.timeout is 200 for
-- an init that overruns it, and H.timeout for the others: an init that fails at once must not
-- be taken for a timeout when a loaded machine delays the server's start.
local function failed_start(node, fun, cfg, trap)
  local timeout = cfg.init == "sleep" and 200 or H.timeout
  G.spawn(node, function(host, fun_, cfg_, trap_, quiet, timeout_)
    local mb = require "moonbeam"
    local gs = require "moonbeam.gen_server"
    if trap_ then mb.trap_exit(true) end
    cfg_.report = mb.self()
    local pid, reason = gs[fun_]("gs_echo", cfg_, { timeout = timeout_ })
    local init = mb.receive(function(m) return type(m) == "table" and m[1] == "init" end, 5000)
    local down
    if init then
      local ref = mb.monitor(init[2])
      down = mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end, 5000)
    end
    -- the server is gone: any exit signal it sent has had its time to come
    local exit = mb.receive(function(m) return type(m) == "table" and m[1] == "EXIT" end, quiet)
    mb.send(host, { "failed start", pid == nil, reason, init ~= nil, down ~= nil, exit == nil,
      #mb.info(mb.self()).links })
  end, node:self(), fun, cfg, trap, H.quiet, timeout)
  local m = G.wait(node, "failed start")
  return { returned_nil = m[2], reason = m[3], ran_init = m[4], server_ended = m[5], no_exit = m[6], links = m[7] }
end

-- init's failures (SPEC 2 and gs_decisions): each mode and what start returns for it.
local init_failures = {
  { "raises", { init = "raise", reason = "init boom" }, function(reason)
    assert.equal("init boom", H.strip(reason))
    assert.truthy(reason:find("gs_echo%.lua:%d+: init boom"), reason) -- the error value, position included
  end },
  { "returns stop", { init = "stop", reason = "init said stop" }, function(reason)
    assert.equal("init said stop", reason)
  end },
  { "returns ignore", { init = "ignore" }, function(reason) assert.equal("ignore", reason) end },
  { "overruns opts.timeout", { init = "sleep", ms = LONG }, function(reason) assert.equal("timeout", reason) end },
  { "returns a bad value", { init = "bad" }, function(reason)
    local prefix = "bad return from init: "
    assert.equal(prefix, tostring(reason):sub(1, #prefix))
  end },
}

describe("gen_server.start and start_link when init fails", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  for _, case in ipairs(init_failures) do
    local what, cfg, check = case[1], case[2], case[3]

    it("return nil and a reason when init " .. what .. ", and the server ends", function()
      local r = failed_start(node, "start", cfg, false)
      assert.is_true(r.returned_nil)
      check(r.reason)
      assert.is_true(r.ran_init)
      assert.is_true(r.server_ended)
    end)

    it("send no exit signal and leave no link to start_link's caller when init " .. what, function()
      for _, trap in ipairs { true, false } do
        -- a caller that does not trap would die of an exit signal; one that traps would see it
        local r = failed_start(node, "start_link", cfg, trap)
        assert.is_true(r.returned_nil)
        check(r.reason)
        assert.is_true(r.server_ended)
        assert.is_true(r.no_exit)
        assert.equal(0, r.links)
      end
    end)
  end
end)

describe("gen_server.start_link", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("links the server to the caller", function()
    G.spawn(node, function(host)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      mb.trap_exit(true)
      local srv = gs.start_link("gs_echo", {}, { name = "gs_linked" })
      local linked = mb.info(mb.self()).links[1] == srv
      gs.cast(srv, { "crash", "linked crash" })
      local e = mb.receive(function(m) return m[1] == "EXIT" end, 5000)
      mb.send(host, { "linked", linked, mb.whereis("gs_linked") == nil, e and e[2] == srv, e and e[3] })
    end, node:self())
    assert.same({ "linked", true, true, true, "linked crash" }, G.wait(node, "linked"))
  end)
end)

describe("gen_server.call", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("returns handle_call's reply, to a pid or a registered name", function()
    local srv = G.server(node, "gs_echo", {}, { name = "gs_callee" })
    local r = G.calls(node,
      { "call", srv, { "echo", { 1, { a = "b" }, false } } },
      { "call", "gs_callee", { "echo", "by name" }, LONG })
    assert.same({ 1, { a = "b" }, false }, G.ok(r[1]))
    assert.equal("by name", G.ok(r[2]))
  end)

  it("passes handle_call a from that is {caller's pid, ref}", function()
    local srv = G.server(node, "gs_echo", {})
    local r, client = G.calls(node, { "call", srv, { "from" } })
    local from = G.ok(r[1])
    assert.equal(client, from[1])
    assert.equal("userdata", type(from[2]))
  end)

  it("fails at once with noproc for a dead server or an unknown name", function()
    local srv = G.server(node, "gs_echo", {})
    local r = G.calls(node, { "stop", srv }, { "call", srv, "x", LONG }, { "call", "gs_nobody", "x", LONG })
    assert.is_true(G.ok(r[1]))
    assert.equal(G.call_error(srv, "noproc"), G.err(r[2]))
    assert.equal(G.call_error("gs_nobody", "noproc"), G.err(r[3]))
  end)

  it("fails with the server's exit reason when the server dies during the call", function()
    local function dies(op, reason)
      local srv = G.server(node, "gs_echo", {})
      assert.equal(G.call_error(srv, reason), G.err(G.calls(node, { "call", srv, op, LONG })[1]))
    end
    dies({ "crash", "crashed in call" }, "crashed in call")
    dies({ "exit", "exited in call" }, "exited in call")
    dies({ "stop_noreply", "stopped in call" }, "stopped in call")
    dies({ "stop_noreply", "normal" }, "normal")
    -- killed by another process while it holds the call
    local srv = G.server(node, "gs_echo", { report = node:self() }, { name = "gs_victim" })
    local client = G.calls_async(node, { "call", "gs_victim", { "hold" }, LONG })
    G.report(node, "holding", srv)
    G.kill(node, srv, "kill")
    assert.equal(G.call_error("gs_victim", "killed"), G.err(G.results(node, client)[1]))
  end)

  it("fails with timeout, and the reply that comes after it never reaches the caller", function()
    local srv = G.server(node, "gs_echo", {}, { name = "gs_slow" })
    local r = G.calls(node,
      { "call", srv, { "hold" }, 50 },
      { "call", "gs_slow", { "hold" }, 50 },
      -- the server answers both timed-out calls, then this one: the late replies went first
      { "call", srv, { "release", "late" } },
      { "receive", H.quiet })
    assert.equal(G.call_error(srv, "timeout"), G.err(r[1]))
    assert.equal(G.call_error("gs_slow", "timeout"), G.err(r[2]))
    assert.equal("released", G.ok(r[3]))
    assert.is_nil(G.ok(r[4]))
  end)

  it("times out after 5000 ms by default, as init under start does", function()
    local srv = G.server(node, "gs_echo", {})
    local caller = G.calls_async(node, { "now" }, { "call", srv, { "hold" } }, { "now" })
    local starter = G.calls_async(node, { "now" }, { "start", "gs_echo", { init = "sleep", ms = LONG } }, { "now" })
    local c = G.results(node, caller, H.timeout + 5000)
    local s = G.results(node, starter, H.timeout + 5000)
    assert.equal(G.call_error(srv, "timeout"), G.err(c[2]))
    assert.same({ true, nil, "timeout" }, { s[2][1], s[2][2], s[2][3] })
    -- a timer never fires early, so this bound is safe: both waited the default, not less
    assert.is_true(G.ok(c[3]) - G.ok(c[1]) >= 4900)
    assert.is_true(G.ok(s[3]) - G.ok(s[1]) >= 4900)
  end)

  it("takes math.huge for no timeout, and raises for a bad timeout or server", function()
    local srv = G.server(node, "gs_echo", {})
    local r = G.calls(node,
      { "call", srv, { "echo", "no timeout" }, math.huge },
      { "call", srv, "x", -1 },
      { "call", srv, "x", 0 / 0 },
      { "call", 42, "x" },
      { "call", { srv }, "x" },
      { "call", srv, { "echo", "still fine" } })
    assert.equal("no timeout", G.ok(r[1]))
    for i = 2, 5 do assert.is_false(r[i][1], "op " .. i .. " did not raise") end
    assert.equal("still fine", G.ok(r[6]))
  end)

  it("is answered later by gen_server.reply after handle_call returned noreply", function()
    local srv = G.server(node, "gs_echo", { report = node:self() })
    local client = G.calls_async(node, { "call", srv, { "hold" }, LONG })
    G.report(node, "holding", srv)
    G.calls(node, { "cast", srv, { "release", "answered later" } })
    assert.equal("answered later", G.ok(G.results(node, client)[1]))
  end)

  it("is answered by another process that was handed from in a message", function()
    local helper = G.spawn(node, function(host)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      local m = mb.receive(function(x) return type(x) == "table" and x[1] == "answer_for" end)
      mb.send(host, { "helper replied", gs.reply(m[2], "from the helper") })
    end, node:self())
    local srv = G.server(node, "gs_echo", {})
    assert.equal("from the helper", G.ok(G.calls(node, { "call", srv, { "delegate", helper }, LONG })[1]))
    assert.is_true(G.wait(node, "helper replied")[2])
  end)

  it("reaches a plain process as {'$gen_call', from, request}, which can answer it", function()
    local plain = G.spawn(node, function(host)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      local call = mb.receive()
      local replied = gs.reply(call[2], { "plain reply", call[3] })
      local cast = mb.receive()
      mb.send(host, { "plain saw", call[1], type(call[2]), replied, cast[1], cast[2] })
    end, node:self())
    local r = G.calls(node, { "call", plain, "question", LONG }, { "cast", plain, "note" })
    assert.same({ "plain reply", "question" }, G.ok(r[1]))
    assert.is_true(G.ok(r[2]))
    assert.same({ "plain saw", "$gen_call", "table", true, "$gen_cast", "note" }, G.wait(node, "plain saw"))
  end)

  it("lets callbacks block: call another server, sleep, receive, pcall around a failing call", function()
    local other = G.server(node, "gs_echo", { value = "other's" })
    local srv = G.server(node, "gs_echo", { report = node:self() })
    local r = G.calls(node,
      { "call", srv, { "call", other, { "get" }, LONG } },
      { "call", srv, { "sleep", 20, "after sleep" } },
      { "call", srv, { "call", "gs_nobody", { "get" }, LONG } },
      { "call", srv, { "echo", "still serving" } })
    assert.same({ true, "other's" }, G.ok(r[1]))
    assert.equal("after sleep", G.ok(r[2]))
    local failed = G.ok(r[3])
    assert.is_false(failed[1])
    assert.equal(G.call_error("gs_nobody", "noproc"), H.strip(failed[2]))
    assert.equal("still serving", G.ok(r[4]))
    -- a selective receive in handle_call: the message it skips is handled afterwards by handle_info
    local client = G.calls_async(node, { "call", srv, { "wait_for", "awaited" }, LONG })
    G.report(node, "waiting", srv)
    node:send(srv, "not this one")
    node:send(srv, "awaited")
    assert.equal("awaited", G.ok(G.results(node, client)[1]))
    assert.equal("not this one", G.report(node, "info", srv)[3])
  end)

  it("raises the encoder's message for a request that cannot be sent; the server lives on", function()
    local srv = G.server(node, "gs_echo", {})
    local msg = G.run(node, function(host, server, quiet)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      local ok, err = pcall(gs.call, server, { "echo", { cb = print } }, 60000)
      local ok2, v = pcall(gs.call, server, { "echo", "after" })
      mb.send(host, { "bad request", ok, err, ok2, v, mb.receive(quiet) })
    end, srv, H.quiet)
    assert.is_false(msg[2])
    assert.truthy(msg[3]:find("cannot send a function", 1, true), msg[3])
    assert.truthy(msg[3]:find("cb)", 1, true), msg[3]) -- the path names the bad value
    assert.same({ true, "after" }, { msg[4], msg[5] })
    assert.is_nil(msg[6])
  end)

  it("fails with the encoder's message when the reply cannot be sent: the server crashes, not the node", function()
    local srv = G.server(node, "gs_echo", {})
    local ref = G.watch(node, srv)
    local err = G.err(G.calls(node, { "call", srv, { "bad_reply" }, LONG })[1])
    local prefix = G.call_error(srv, "")
    assert.equal(prefix, err:sub(1, #prefix))
    assert.truthy(err:find("cannot send a function", 1, true), err)
    assert.truthy(err:find("fn)", 1, true), err)
    assert.truthy(tostring(H.down(node, ref)):find("cannot send a function", 1, true))
    local again = G.server(node, "gs_echo", {})
    assert.equal("node lives", G.ok(G.calls(node, { "call", again, { "echo", "node lives" } })[1]))
  end)
end)

describe("gen_server.call in a busy loop", function()
  local node
  before_each(function() node = G.start { schedulers = 1 } end)
  after_each(function() G.stop(node); node = nil end)

  it("is preempted: another server on the one scheduler still answers, and a kill ends the call", function()
    local spinner = G.server(node, "gs_echo", { report = node:self() })
    local other = G.server(node, "gs_echo", { value = "alive" })
    local client = G.calls_async(node, { "call", spinner, { "spin" }, LONG })
    G.report(node, "spinning", spinner)
    assert.equal("alive", G.ok(G.calls(node, { "call", other, { "get" } })[1]))
    G.kill(node, spinner, "kill")
    assert.equal(G.call_error(spinner, "killed"), G.err(G.results(node, client)[1]))
  end)
end)

describe("gen_server.cast", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("returns true and reaches handle_cast in order with calls, by pid or name", function()
    local srv = G.server(node, "gs_echo", {}, { name = "gs_casted" })
    local r = G.calls(node,
      { "cast", srv, { "set", "by pid" } }, { "call", srv, { "get" } },
      { "cast", "gs_casted", { "set", "by name" } }, { "call", srv, { "get" } })
    assert.is_true(G.ok(r[1]))
    assert.equal("by pid", G.ok(r[2]))
    assert.is_true(G.ok(r[3]))
    assert.equal("by name", G.ok(r[4]))
  end)

  it("returns true for a dead server or an unknown name", function()
    local srv = G.server(node, "gs_echo", {})
    local r = G.calls(node, { "stop", srv }, { "cast", srv, "x" }, { "cast", "gs_nobody", "x" })
    assert.is_true(G.ok(r[2]))
    assert.is_true(G.ok(r[3]))
  end)
end)

describe("gen_server.reply", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("returns true, and raises for a from that is not one", function()
    local msg = G.run(node, function(host)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      local srv = gs.start("gs_echo", {})
      local from = gs.call(srv, { "from" })
      mb.send(host, { "replies", gs.reply(from, "nobody waits"), (pcall(gs.reply, "junk", 1)),
        (pcall(gs.reply, {}, 1)), (pcall(gs.reply, { 42, "x" }, 1)), mb.receive(0) })
    end)
    -- a reply to a call that already returned is dropped too
    assert.same({ "replies", true, false, false, false }, msg)
  end)
end)

describe("gen_server.stop", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("runs terminate with the reason and state, and returns once the server is gone", function()
    local srv = G.server(node, "gs_echo", { report = node:self(), value = "last state" })
    local r = G.calls(node, { "stop", srv, "bye" }, { "is_alive", srv })
    assert.is_true(G.ok(r[1]))
    assert.is_false(G.ok(r[2]))
    assert.same({ "terminate", srv, "bye", "last state" }, G.report(node, "terminate", srv))
  end)

  it("stops with reason normal by default, by pid or name, and without a terminate callback", function()
    local srv = G.server(node, "gs_echo", { report = node:self() }, { name = "gs_stopped" })
    local bare = G.server(node, "gs_bare", {})
    local r = G.calls(node, { "stop", "gs_stopped" }, { "stop", bare }, { "is_alive", bare })
    assert.is_true(G.ok(r[1]))
    assert.equal("normal", G.report(node, "terminate", srv)[3])
    assert.is_nil(node:whereis("gs_stopped"))
    assert.is_true(G.ok(r[2]))
    assert.is_false(G.ok(r[3]))
  end)

  it("raises noproc for a dead server or an unknown name", function()
    local srv = G.server(node, "gs_echo", {})
    local r = G.calls(node, { "stop", srv }, { "stop", srv }, { "stop", "gs_nobody" })
    assert.equal("stop of " .. tostring(srv) .. ": noproc", G.err(r[2]))
    assert.equal("stop of gs_nobody: noproc", G.err(r[3]))
  end)

  it("raises timeout when terminate does not finish in time", function()
    local srv = G.server(node, "gs_echo", { report = node:self(), terminate = "block" })
    local r = G.calls(node, { "stop", srv, "normal", 100 })
    assert.equal("stop of " .. tostring(srv) .. ": timeout", G.err(r[1]))
  end)

  it("raises terminate's error, and the server ends with it", function()
    local srv = G.server(node, "gs_echo", { terminate = "raise", terminate_reason = "terminate failed" })
    local ref = G.watch(node, srv)
    local r = G.calls(node, { "stop", srv })
    assert.equal("stop of " .. tostring(srv) .. ": terminate failed", G.err(r[1]))
    assert.equal("terminate failed", H.down(node, ref))
  end)
end)

describe("node:call and node:cast on a host node", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("call a server by pid or name and return its reply; cast returns true", function()
    local srv = G.server(node, "gs_echo", { value = "v" }, { name = "gs_hosted" })
    assert.equal("v", node:call(srv, { "get" }))
    assert.same({ "by name" }, node:call("gs_hosted", { "echo", { "by name" } }, 2000))
    assert.is_true(node:cast("gs_hosted", { "set", "cast by name" }))
    assert.equal("cast by name", node:call(srv, { "get" }))
    assert.is_true(node:cast(srv, { "set", "cast by pid" }))
    assert.equal("cast by pid", node:call("gs_hosted", { "get" }))
  end)

  it("raise noproc at once for a dead server or unknown name; cast still returns true", function()
    local srv = G.server(node, "gs_echo", {})
    G.ok(G.calls(node, { "stop", srv })[1])
    assert.equal(G.call_error(srv, "noproc"), H.error_of(node.call, node, srv, "x", 2000))
    assert.equal(G.call_error("gs_nobody", "noproc"), H.error_of(node.call, node, "gs_nobody", "x", 2000))
    assert.is_true(node:cast(srv, "x"))
    assert.is_true(node:cast("gs_nobody", "x"))
  end)

  it("raise the server's exit reason when it dies during the call", function()
    local srv = G.server(node, "gs_echo", {})
    assert.equal(G.call_error(srv, "host call crash"),
      H.error_of(node.call, node, srv, { "crash", "host call crash" }, 2000))
  end)

  it("raise timeout, and the late reply never reaches the host's mailbox", function()
    local srv = G.server(node, "gs_echo", {})
    assert.equal(G.call_error(srv, "timeout"), H.error_of(node.call, node, srv, { "hold" }, 50))
    assert.equal("released", node:call(srv, { "release", "late" }, 2000))
    assert.is_nil(node:receive(nil, H.quiet))
  end)

  it("raise calling self for the host's own pid", function()
    local me = node:self()
    assert.equal(G.call_error(me, "calling self"), H.error_of(node.call, node, me, "x", 2000))
  end)

  it("raise the encoder's message for a request that cannot be sent; the server lives on", function()
    local srv = G.server(node, "gs_echo", {})
    local err = H.error_of(node.call, node, srv, { "echo", { cb = print } }, 2000)
    assert.truthy(err:find("cannot send a function", 1, true), err)
    assert.equal("after", node:call(srv, { "echo", "after" }, 2000))
  end)
end)
