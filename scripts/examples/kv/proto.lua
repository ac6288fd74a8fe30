-- kv.proto: the kv server's line protocol, pure (no sockets, no processes).
--
--   SET key value   -> OK            value: the rest of the line after the key and one
--                                    space or tab, kept as is (spaces included, may be empty)
--   GET key         -> VALUE value | NIL
--   DEL key         -> OK            (also for a key that is not there)
--   KEYS            -> KEYS k1 k2 ... (one line, keys sorted; just "KEYS" when empty)
--   QUIT            -> OK, then the server closes the connection
--   CRASH           -> OK once the store has crashed (an admin command: the store
--                      process dies and its supervisor restarts it)
--
-- Command words are case-insensitive; a key is any run of bytes without whitespace.
-- A trailing "\r" is dropped (telnet and nc -C send CRLF). Anything else gets
-- "ERR message" and the connection stays open.
local Proto = {}

local usage = {
  SET = "usage: SET key value", GET = "usage: GET key", DEL = "usage: DEL key",
  KEYS = "usage: KEYS", QUIT = "usage: QUIT", CRASH = "usage: CRASH",
}

-- A client's bytes shown back in an ERR line: printable ASCII only, and short.
local function shown(s)
  if #s > 32 then s = s:sub(1, 32) .. "..." end
  return (s:gsub("[^\32-\126]", "?"))
end

-- The command of one line (without its "\n"): {op=, key=, value=}, or nil and the
-- text of the ERR reply.
function Proto.parse(line)
  line = line:gsub("\r$", "")
  local word, rest = line:match("^%s*(%S+)(.*)$")
  if not word then return nil, "empty line" end
  local op = word:upper()
  if not usage[op] then return nil, ("unknown command '%s'"):format(shown(word)) end
  if op == "SET" then
    local key, value = rest:match("^%s+(%S+)%s(.*)$")
    if key then return { op = op, key = key, value = value } end
  elseif op == "GET" or op == "DEL" then
    local key = rest:match("^%s+(%S+)%s*$")
    if key then return { op = op, key = key } end
  elseif rest:match("^%s*$") then
    return { op = op }
  end
  return nil, usage[op]
end

-- Reply lines (without the "\n").
function Proto.ok() return "OK" end
function Proto.value(v) if v == nil then return "NIL" end return "VALUE " .. v end
function Proto.err(msg) return "ERR " .. msg end
function Proto.keys(list)
  if #list == 0 then return "KEYS" end
  return "KEYS " .. table.concat(list, " ")
end

return Proto
