-- helpers/gs: what the gen_server specs share: nodes that check moonbeam.gen_server loads, spec
-- processes whose crash fails the spec at once, and gen_server calls run from a gs_client process.
local H = require "helpers.node"
local G = {}

-- A node as H.start makes it. Raises at once, with the loader's message, when a process cannot
-- require moonbeam.gen_server: every spec fails fast instead of waiting out its timeouts.
function G.start(opts)
  local node = H.start(opts)
  node:spawn(function(host)
    local mb = require "moonbeam"
    local ok, err = pcall(require, "moonbeam.gen_server")
    mb.send(host, { "gs_probe", ok, (not ok) and tostring(err) or nil })
  end, node:self())
  local m = node:receive(H.matcher("gs_probe"), H.timeout)
  if not (m and m[2]) then
    node:stop()
    error("moonbeam.gen_server cannot be required: " .. tostring(m and m[3] or "no answer"), 2)
  end
  return node
end

-- node:stop() for after_each, when before_each may have failed before making the node.
function G.stop(node)
  if node then node:stop() end
end

-- node:spawn(target, ...), plus a watcher: if the process ends with an abnormal reason, the host
-- gets {"gs_crashed", pid, reason} and G.wait fails the spec with it. For processes that must not
-- crash. (A process that ends before the watcher's monitor is set up is not reported.)
function G.spawn(node, target, ...)
  local pid = node:spawn(target, ...)
  node:spawn(function(host, p)
    local mb = require "moonbeam"
    local ref = mb.monitor(p)
    local d = mb.receive(function(m) return type(m) == "table" and m[1] == "DOWN" and m[2] == ref end)
    if d[4] ~= "normal" and d[4] ~= "noproc" then mb.send(host, { "gs_crashed", p, d[4] }) end
  end, node:self(), pid)
  return pid
end

local function crashed(m) return type(m) == "table" and m[1] == "gs_crashed" end

-- As H.wait_for, but a crash of a G.spawn process fails the spec at once, naming its reason.
function G.wait(node, match, timeout)
  local want = H.matcher(match)
  local m = node:receive(function(x) return crashed(x) or not want or want(x) end, timeout or H.timeout)
  if m == nil then
    error(("no message%s reached the host within %d ms"):format(
      type(match) == "string" and (" tagged '" .. match .. "'") or "", timeout or H.timeout), 2)
  end
  if crashed(m) and not (want and want(m)) then
    error(("spec process %s crashed: %s"):format(tostring(m[2]), tostring(m[3])), 2)
  end
  return m
end

-- Spawn fn(host, ...) with G.spawn and return the first message the host gets from then on.
function G.run(node, fn, ...)
  G.spawn(node, fn, node:self(), ...)
  return G.wait(node, nil)
end

-- Start a spec/fixtures/gs_client that runs the ops in order, each {"name", args...} (op.n is
-- the op's length when an argument is nil): a moonbeam.gen_server function, or one of mb's
-- receive, trap_exit, send, is_alive, whereis, info, now. Returns the client's pid at once.
function G.calls_async(node, ...)
  return G.spawn(node, "gs_client", node:self(), { ... })
end

-- The results of a gs_client: results[i] is table.pack(pcall(op_i)).
function G.results(node, client, timeout)
  return G.wait(node, function(m)
    return type(m) == "table" and m[1] == "gs_results" and m[2] == client
  end, timeout)[3]
end

-- Run ops in a new gs_client and return its results and its pid.
function G.calls(node, ...)
  local client = G.calls_async(node, ...)
  return G.results(node, client), client
end

-- The values of a result that succeeded (fails the spec with the error of one that did not).
function G.ok(r)
  assert(r[1], "expected success, got error: " .. tostring(r[2]))
  return table.unpack(r, 2, r.n)
end

-- The error message of a result that failed, without a "chunk:line: " position.
function G.err(r)
  assert(not r[1], "expected an error, got success: " .. tostring(r[2]))
  return H.strip(r[2])
end

-- Start a server from a gs_client (gen_server.start, unlinked) and return its pid.
function G.server(node, module, args, opts)
  local r = G.calls(node, { "start", module, args, opts, n = 4 })
  local pid, reason = G.ok(r[1])
  assert(pid, "gen_server.start(" .. module .. ") failed: " .. tostring(reason))
  return pid
end

-- Monitor pid from a puppet that forwards the DOWN to the host; H.down(node, ref) waits for it.
function G.watch(node, pid)
  return H.watch(node, H.puppet(node, node:self()), pid)
end

-- Send pid an exit signal with `reason` from a puppet, and wait until it was sent.
function G.kill(node, pid, reason)
  H.ask(node, H.puppet(node), "signalled", "signal", pid, reason or "kill")
end

-- "call to <server>: <reason>" as SPEC 2 words it, for a pid or a name.
function G.call_error(server, reason)
  return ("call to %s: %s"):format(tostring(server), reason)
end

-- A report {event, server_pid, ...} from a gs_echo server (from `server` only, if given).
function G.report(node, event, server, timeout)
  return G.wait(node, function(m)
    return type(m) == "table" and m[1] == event and (server == nil or m[2] == server)
  end, timeout)
end

return G
