-- kv.store: the key-value map, a gen_server registered as "kv_store" (a child of the
-- kv application's top supervisor, see app.lua).
--
-- Every write (SET, DEL of a key that is there) is appended to the log and flushed
-- to the OS before the map changes and the caller gets its reply, so a write that
-- was acknowledged survives the store's crash, and the node's: init replays the log
-- (records that do not parse, such as a cut-off last line, are skipped with a
-- warning), then rewrites it compacted (one SET per key) and appends from there.
-- The flush is not an fsync: a power cut may still lose the last writes.
--
-- The client side (Store.call) is used by the connection processes.
local mb = require "moonbeam"
local gen_server = require "moonbeam.gen_server"
local Wal = require "scripts.examples.kv.wal"

local Store = { name = "kv_store" }

-- args: {data = path of the log file}
function Store.init(args)
  local map, stats = Wal.replay(args.data)
  if not map then return "stop", "cannot read " .. args.data .. ": " .. tostring(stats) end
  if stats.skipped > 0 then
    mb.log("warning", "kv store: skipped %d malformed record(s) in %s", stats.skipped, args.data)
  end
  local ok, err = Wal.compact(args.data, map)
  if not ok then return "stop", "cannot rewrite " .. args.data .. ": " .. tostring(err) end
  local log
  log, err = Wal.open(args.data)
  if not log then return "stop", "cannot open " .. args.data .. ": " .. tostring(err) end
  local n = 0
  for _ in pairs(map) do n = n + 1 end
  mb.log("info", "kv store: %d key(s) from %s (%d record(s) replayed)", n, args.data, stats.records)
  return "ok", { map = map, log = log, path = args.data }
end

-- Log `record`, then apply it. A failed write stops the store (a restart replays
-- and compacts the log, dropping a half-written record) after answering ERR.
local function write(state, record, apply)
  local ok, err = Wal.append(state.log, record)
  if not ok then
    local why = "log write failed: " .. tostring(err)
    return "stop", why, { false, why }, state
  end
  apply(state.map)
  return "reply", { true }, state
end

-- Requests: {"set", k, v} and {"del", k} -> {true} or {false, why};
-- {"get", k} -> value or nil; "keys" -> sorted array; "crash" -> the store crashes.
function Store.handle_call(req, from, state)
  if req == "keys" then
    local keys = {}
    for k in pairs(state.map) do keys[#keys + 1] = k end
    table.sort(keys)
    return "reply", keys, state
  elseif req == "crash" then
    error("crash requested by a client (CRASH)", 0)
  elseif req[1] == "get" then
    return "reply", state.map[req[2]], state
  elseif req[1] == "set" then
    local k, v = req[2], req[3]
    return write(state, Wal.set_record(k, v), function(map) map[k] = v end)
  elseif req[1] == "del" then
    local k = req[2]
    if state.map[k] == nil then return "reply", { true }, state end
    return write(state, Wal.del_record(k), function(map) map[k] = nil end)
  end
  return "reply", { false, "bad request" }, state
end

function Store.terminate(_, state)
  state.log:close()
end

-- ---- client side ----

-- Wait (at most `ms`) until a store is registered again: true if one is.
local function await_store(ms)
  local deadline = mb.now() + ms
  while not mb.whereis(Store.name) do
    if mb.now() >= deadline then return false end
    mb.sleep(5)
  end
  return true
end

-- gen_server.call to the store. When the store is down (crashed, being restarted)
-- or dies during the call, wait up to 2 s for its supervisor to restart it and try
-- once more: a write is idempotent, so one that was logged before the crash may be
-- sent again. true, reply; or nil, "store restarting".
function Store.call(req)
  local ok, reply = pcall(gen_server.call, Store.name, req)
  if ok then return true, reply end
  mb.log("info", "kv: %s; retrying once the store is back", tostring(reply))
  if await_store(2000) then
    ok, reply = pcall(gen_server.call, Store.name, req)
    if ok then return true, reply end
  end
  return nil, "store restarting"
end

-- Make the store crash; true once it has (or it was not running).
function Store.crash()
  return not pcall(gen_server.call, Store.name, "crash")
end

return Store
