-- SPEC 2 "Deadlocks": a call that would close a cycle of processes each blocked in
-- gen_server.call on the next fails at once with "deadlock" (or "calling self"), and the node
-- logs one warning naming the cycle; a call whose `from` was answered with gen_server.reply or
-- handed to another process no longer counts as waiting. Servers are spec/fixtures/gs_echo.lua:
-- its {"call", server, request, timeout} op replies {pcall(gen_server.call, ...)}.
local H = require "helpers.node"
local G = require "helpers.gs"
local C = require "helpers.cli"

-- Every call here waits up to a minute: a deadlock must fail well inside the spec's bounded wait.
local LONG = 60000

-- The request that has `server` call `target` with `request`.
local function via(target, request) return { "call", target, request, LONG } end

-- The error of a failed call inside a {pcall(...)} reply, without a position.
local function failed_with(reply)
  assert.is_false(reply[1], "the call did not fail")
  return H.strip(reply[2])
end

describe("a call to oneself", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("fails at once with calling self, from a server by pid or by name", function()
    local srv = G.server(node, "gs_echo", {}, { name = "gs_self" })
    local r = G.calls(node,
      { "call", srv, via(srv, { "echo", 1 }), LONG },
      { "call", "gs_self", via("gs_self", { "echo", 1 }), LONG },
      { "call", srv, { "echo", "still serving" } })
    assert.equal(G.call_error(srv, "calling self"), failed_with(G.ok(r[1])))
    assert.equal(G.call_error("gs_self", "calling self"), failed_with(G.ok(r[2])))
    assert.equal("still serving", G.ok(r[3]))
  end)

  it("fails at once with calling self from a plain process", function()
    local msg = G.run(node, function(host)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      local ok, err = pcall(gs.call, mb.self(), "me?", 60000)
      mb.send(host, { "self call", ok, err, tostring(mb.self()) })
    end)
    assert.is_false(msg[2])
    assert.equal(G.call_error(msg[4], "calling self"), H.strip(msg[3]))
  end)
end)

describe("a call cycle", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("of two servers fails at once with deadlock, by name and by pid, and both go on", function()
    local a = G.server(node, "gs_echo", {}, { name = "gs_a" })
    local b = G.server(node, "gs_echo", {}, { name = "gs_b" })
    -- gs_a calls gs_b, which calls gs_a: gs_b's call closes the cycle
    local r = G.calls(node,
      { "call", "gs_a", via("gs_b", via("gs_a", { "echo", 1 })), LONG },
      { "call", a, via(b, via(a, { "echo", 2 })), LONG },
      { "call", "gs_a", via("gs_b", { "echo", "no cycle" }), LONG },
      { "call", "gs_b", via("gs_a", { "echo", "nor here" }), LONG })
    local by_name = G.ok(r[1])
    assert.is_true(by_name[1])
    assert.equal(G.call_error("gs_a", "deadlock"), failed_with(by_name[2]))
    local by_pid = G.ok(r[2])
    assert.is_true(by_pid[1])
    assert.equal(G.call_error(a, "deadlock"), failed_with(by_pid[2]))
    assert.same({ true, "no cycle" }, G.ok(r[3]))
    assert.same({ true, "nor here" }, G.ok(r[4]))
  end)

  it("of three servers fails at once with deadlock", function()
    for _, name in ipairs { "gs_a", "gs_b", "gs_c" } do G.server(node, "gs_echo", {}, { name = name }) end
    local r = G.calls(node, { "call", "gs_a", via("gs_b", via("gs_c", via("gs_a", { "echo", 1 }))), LONG })
    local at_a = G.ok(r[1])
    assert.is_true(at_a[1])
    assert.is_true(at_a[2][1])
    assert.equal(G.call_error("gs_a", "deadlock"), failed_with(at_a[2][2]))
  end)

  it("through a plain process blocked in a call fails at once with deadlock", function()
    local srv = G.server(node, "gs_echo", {})
    local msg = G.run(node, function(host, server)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      -- the server calls back this process, which waits in its call to the server
      local reply = gs.call(server, { "call", mb.self(), "back to you", 60000 }, 60000)
      mb.send(host, { "plain in cycle", reply[1], reply[2], tostring(mb.self()) })
    end, srv)
    assert.is_false(msg[2])
    assert.equal(G.call_error(msg[4], "deadlock"), H.strip(msg[3]))
  end)

  it("with a server that holds the call's from unanswered is a deadlock", function()
    local a = G.server(node, "gs_echo", {})
    local b = G.server(node, "gs_echo", { report = node:self() })
    -- a waits on b, which keeps a's from; then b calls a
    local first = G.calls_async(node, { "call", a, via(b, { "hold" }), LONG })
    G.report(node, "holding", b)
    G.calls(node, { "cast", b, { "call_on_go", a, { "echo", "b to a" } } }, { "send", b, "go" })
    local called = G.report(node, "called", b)
    assert.is_false(called[3])
    assert.equal(G.call_error(a, "deadlock"), H.strip(called[4]))
    -- b answers what it held: a's call returns, and a answers the first caller
    G.calls(node, { "cast", b, { "release", "released" } })
    assert.same({ true, "released" }, G.ok(G.results(node, first)[1]))
  end)

  it("formed by two servers calling each other at the same time fails on at least one side, none hangs", function()
    local a = G.server(node, "gs_echo", { report = node:self() })
    local b = G.server(node, "gs_echo", { report = node:self() })
    for round = 1, 20 do
      -- both wait for "go" in handle_cast, then call each other
      G.calls(node,
        { "cast", a, { "call_on_go", b, { "echo", "a" .. round } } },
        { "cast", b, { "call_on_go", a, { "echo", "b" .. round } } },
        { "send", a, "go" }, { "send", b, "go" })
      local failed = 0
      for _, side in ipairs { { a, b, "a" }, { b, a, "b" } } do
        local called = G.report(node, "called", side[1])
        if called[3] then
          assert.equal(side[3] .. round, called[4])
        else
          assert.equal(G.call_error(side[2], "deadlock"), H.strip(called[4]))
          failed = failed + 1
        end
      end
      assert.is_true(failed >= 1, "round " .. round .. ": both calls returned from a cycle")
    end
  end)
end)

describe("a call whose from was answered or handed on", function()
  local node
  before_each(function() node = G.start() end)
  after_each(function() G.stop(node); node = nil end)

  it("no longer counts once the callee replied with gen_server.reply: calling back is no deadlock", function()
    local a = G.server(node, "gs_echo", {})
    local b = G.server(node, "gs_echo", { report = node:self() })
    for round = 1, 10 do
      -- b replies to a's call, then at once calls a, which may not even have woken up yet
      local r = G.calls(node, { "call", a, via(b, { "reply_then_call", "early", a, { "echo", round } }), LONG })
      assert.same({ true, "early" }, G.ok(r[1]))
      local called = G.report(node, "called", b)
      assert.is_true(called[3], tostring(called[4]))
      assert.equal(round, called[4])
    end
  end)

  it("no longer counts once from was handed to another process: calling back is no deadlock", function()
    local a = G.server(node, "gs_echo", {})
    local b = G.server(node, "gs_echo", { report = node:self() })
    -- The helper answers a's call for b, but only once b's call to a has reached a: until then
    -- a waits (for the helper) while b waits on a, and a detector that still sees a waiting on b
    -- reports a false cycle.
    local helper = G.spawn(node, function(host, server_a)
      local mb = require "moonbeam"
      local gs = require "moonbeam.gen_server"
      local m = mb.receive(function(x) return type(x) == "table" and x[1] == "answer_for" end)
      local deadline = mb.now() + 5000
      while mb.info(server_a).message_queue_len == 0 and mb.now() < deadline do mb.sleep(1) end
      mb.send(host, { "helper answers", mb.info(server_a).message_queue_len > 0 })
      gs.reply(m[2], "from the helper")
    end, node:self(), a)
    local r = G.calls(node, { "call", a, via(b, { "delegate_then_call", helper, a, { "echo", "b to a" } }), LONG })
    assert.same({ true, "from the helper" }, G.ok(r[1]))
    assert.is_true(G.wait(node, "helper answers")[2], "b's call never reached a")
    local called = G.report(node, "called", b)
    assert.is_true(called[3], tostring(called[4]))
    assert.equal("b to a", called[4])
  end)

  it("no longer counts once the call timed out: calling back is no deadlock", function()
    local a = G.server(node, "gs_echo", {})
    local b = G.server(node, "gs_echo", {})
    -- a's call to b times out while b holds it; then b calls a
    local r = G.calls(node,
      { "call", a, { "call", b, { "hold" }, 50 }, LONG },
      { "call", b, via(a, { "echo", "b to a" }), LONG })
    assert.equal(G.call_error(b, "timeout"), failed_with(G.ok(r[1])))
    assert.same({ true, "b to a" }, G.ok(r[2]))
  end)
end)

describe("a deadlock's log line (stderr of a moonbeam run)", function()
  it("is one warning naming the cycle", function()
    local r = C.run { "-P", C.modules, C.script "gs_logs.lua", "deadlock" }
    assert.equal(0, r.status, r.stderr)
    local a, b = r.out[1], r.out[2]
    assert.equal(G.call_error("gs_a", "deadlock"), H.strip(r.out[3]))
    local lines = {}
    for _, line in ipairs(r.err) do
      if line:find("deadlock", 1, true) then lines[#lines + 1] = line end
    end
    assert.equal(1, #lines, r.stderr)
    local line = lines[1]
    assert.truthy(line:find("warning", 1, true), line)
    assert.truthy(line:find(a, 1, true) or line:find("gs_a", 1, true), line)
    assert.truthy(line:find(b, 1, true) or line:find("gs_b", 1, true), line)
  end)
end)
