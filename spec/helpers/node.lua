-- helpers/node: start moonbeam nodes from busted and wait on their messages, every wait bounded.
local M = {}

-- The build tree holding moonbeam/host.so and the moonbeam binary: $MB_BUILD or build/.
M.build = os.getenv("MB_BUILD") or "build"
do
  local cpath = M.build .. "/?.so;"
  if package.cpath:sub(1, #cpath) ~= cpath then package.cpath = cpath .. package.cpath end
end

M.host = require "moonbeam.host"
M.fixtures = "spec/fixtures/?.lua"
-- How long a positive wait may take before the spec fails (ms). Generous: sanitizer builds are slow.
M.timeout = tonumber(os.getenv("MB_SPEC_TIMEOUT")) or 5000
-- The same for a body with long work (thousands of round trips, tens of MiB): M.run_within.
M.long_timeout = 12 * M.timeout
-- How long a "nothing more arrives" check listens (ms). Used only after a synchronising message.
M.quiet = 300

-- A node with the fixtures on its path and two schedulers unless opts says otherwise.
function M.start(opts)
  local o = { schedulers = 2, path = M.fixtures }
  for k, v in pairs(opts or {}) do o[k] = v end
  return M.host.start(o)
end

-- nil (any message), a function, or a string tag: the message itself or its first element.
local function matcher(match)
  if match == nil or type(match) == "function" then return match end
  return function(m) return m == match or (type(m) == "table" and m[1] == match) end
end
M.matcher = matcher

-- The next message matching `match` in the host's mailbox; fails the spec if none within timeout.
function M.wait_for(node, match, timeout)
  timeout = timeout or M.timeout
  local msg = node:receive(matcher(match), timeout)
  if msg == nil then
    local what = type(match) == "string" and (" tagged '" .. match .. "'") or ""
    error(("no message%s reached the host within %d ms"):format(what, timeout), 2)
  end
  return msg
end

-- true if no message matching `match` arrives within `window` ms.
function M.no_message(node, match, window)
  return node:receive(matcher(match), window or M.quiet) == nil
end

-- Spawn fn(host_pid, ...) and return the first message the host receives from then on.
function M.run(node, fn, ...)
  return M.run_within(node, M.timeout, fn, ...)
end

-- M.run for a body whose work is long (thousands of round trips, tens of MiB): waits up to
-- `timeout` ms, so that a slow sanitizer build on a loaded machine still makes it.
function M.run_within(node, timeout, fn, ...)
  node:spawn(fn, node:self(), ...)
  return M.wait_for(node, nil, timeout)
end

local function never() return false end

-- Poll cond() every 10 ms until it is truthy or timeout ms have passed; returns its last value.
function M.poll(node, cond, timeout)
  for _ = 1, math.ceil((timeout or M.timeout) / 10) do
    local v = cond()
    if v then return v end
    node:receive(never, 10)
  end
  return cond()
end

-- An error message without the "chunk:line: " position Lua may put in front of it.
function M.strip(msg)
  if type(msg) ~= "string" then return msg end
  return (msg:gsub("^[^%s:]+:%d+: ", "", 1))
end

-- Call fn(...) expecting it to raise; returns the stripped message.
function M.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error, got none")
  return M.strip(err)
end

-- Does array t hold a value equal (==) to v?
function M.contains(t, v)
  for _, x in ipairs(t) do if x == v then return true end end
  return false
end

-- A spec/fixtures/puppet process, forwarding what it does not understand to `sink` (nil: nobody).
function M.puppet(node, sink)
  return node:spawn("puppet", sink)
end

-- Send {cmd, ..., host_pid} to a puppet and wait for its reply, tagged `reply`.
function M.ask(node, pid, reply, cmd, ...)
  local m = { cmd, ... }
  m[#m + 1] = node:self()
  node:send(pid, m)
  return M.wait_for(node, reply)
end

-- Have `watcher` (a puppet forwarding to the host) monitor `pid`; returns the monitor's ref.
function M.watch(node, watcher, pid)
  return M.ask(node, watcher, "monitoring", "monitor", pid)[3]
end

-- Wait for the DOWN of `ref` (forwarded to the host); returns its reason.
function M.down(node, ref, timeout)
  local m = M.wait_for(node, function(x) return type(x) == "table" and x[1] == "DOWN" and x[2] == ref end, timeout)
  return m[4], m
end

return M
