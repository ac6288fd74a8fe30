-- helpers/tcp: run a tcp spec's body in a process (it requires spec/fixtures/tcp_kit) and get
-- its results back, or fail the spec with the body's traceback.
local H = require "helpers.node"
local T = {}

-- Spawn fn(host, ...) (it calls require("tcp_kit").main(host, body, ...)) and wait up to
-- `timeout` ms (default 4 x H.timeout) for its "done": returns the body's results.
function T.run_within(node, timeout, fn, ...)
  node:spawn(fn, node:self(), ...)
  local m = H.wait_for(node, function(x) return type(x) == "table" and (x[1] == "done" or x[1] == "failed") end,
    timeout)
  if m[1] == "failed" then error(m[2], 2) end
  return table.unpack(m[2], 1, m[2].n)
end

function T.run(node, fn, ...)
  return T.run_within(node, 4 * H.timeout, fn, ...)
end

-- A node for the tcp specs: fixtures on the path, two schedulers, crash reports off.
function T.start()
  return H.start { log_level = "none" }
end

return T
