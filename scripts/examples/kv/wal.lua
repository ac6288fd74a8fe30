-- kv.wal: the store's write-ahead log, pure Lua (io only). One record per write:
--
--   SET <key> <length of value> <value>\n
--   DEL <key>\n
--
-- The length makes a record whose tail was cut off (a crash while writing, a full
-- disk) detectable, and lets a value hold any bytes. replay() skips records that do
-- not parse (a truncated last line, garbage) and counts them; it never raises for
-- what is in the file.
local Wal = {}

function Wal.set_record(key, value) return ("SET %s %d %s\n"):format(key, #value, value) end
function Wal.del_record(key) return ("DEL %s\n"):format(key) end

-- Apply the records in `data` (a string) to a new map: map, {records=, skipped=}.
function Wal.decode(data)
  local map, stats = {}, { records = 0, skipped = 0 }
  local pos, n = 1, #data
  while pos <= n do
    local key, len, at = data:match("^SET (%S+) (%d+) ()", pos)
    local nl
    if key then
      len = tonumber(len)
      if len and at + len <= n and data:byte(at + len) == 10 then   -- the value, then "\n"
        map[key] = data:sub(at, at + len - 1)
        stats.records = stats.records + 1
        pos = at + len + 1
        goto continue
      end
    else
      key, nl = data:match("^DEL (%S+)\n()", pos)
      if key then
        map[key] = nil
        stats.records = stats.records + 1
        pos = nl
        goto continue
      end
    end
    -- not a record: skip to the next line (or the end, for a cut-off last line)
    stats.skipped = stats.skipped + 1
    nl = data:find("\n", pos, true)
    pos = nl and nl + 1 or n + 1
    ::continue::
  end
  return map, stats
end

-- Read and decode the log at `path` (a missing file is an empty log): map, stats;
-- or nil and an error when the file exists but cannot be read.
function Wal.replay(path)
  local f, err, code = io.open(path, "rb")
  if not f then
    if code == 2 then return Wal.decode("") end   -- ENOENT: a new store
    return nil, err
  end
  local data, rerr = f:read("a")
  f:close()
  if not data then return nil, rerr end
  return Wal.decode(data)
end

-- Replace the log at `path` with one SET record per key of `map` (sorted), written
-- to a temporary file that is renamed over it, so a crash midway leaves the old log
-- in place. true, or nil and an error.
function Wal.compact(path, map)
  local keys = {}
  for k in pairs(map) do keys[#keys + 1] = k end
  table.sort(keys)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  local ok, werr = true, nil
  for _, k in ipairs(keys) do
    ok, werr = f:write(Wal.set_record(k, map[k]))
    if not ok then break end
  end
  if ok then ok, werr = f:flush() end
  f:close()
  if not ok then os.remove(tmp); return nil, werr end
  local rok, rerr = os.rename(tmp, path)
  if not rok then os.remove(tmp); return nil, rerr end
  return true
end

-- Open the log for appending: a file handle, or nil and an error.
function Wal.open(path)
  local f, err = io.open(path, "ab")
  if not f then return nil, err end
  f:setvbuf("full")
  return f
end

-- Append one record and flush it to the OS: true, or nil and an error.
function Wal.append(f, record)
  local ok, err = f:write(record)
  if not ok then return nil, err end
  ok, err = f:flush()
  if not ok then return nil, err end
  return true
end

return Wal
