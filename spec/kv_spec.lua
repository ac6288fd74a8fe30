-- The kv demo (scripts/examples/kv): its line protocol and log as pure Lua, its store as a
-- supervised gen_server, and the whole application driven over real sockets (127.0.0.1, port 0)
-- by client processes in the node: every command, malformed input, crashes of the store and of a
-- connection process with no acknowledged write lost, the log replayed across restarts, and the
-- CLI's main.lua and demo.lua.
local H = require "helpers.node"
local G = require "helpers.gs"
local C = require "helpers.cli"
local Proto = require "scripts.examples.kv.proto"
local Wal = require "scripts.examples.kv.wal"

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

describe("kv.proto.parse", function()
  it("reads each command; a SET value is the rest of the line, spaces kept", function()
    assert.same({ op = "SET", key = "k", value = "v" }, Proto.parse("SET k v"))
    assert.same({ op = "SET", key = "k", value = "hello,  world " }, Proto.parse("SET k hello,  world "))
    assert.same({ op = "SET", key = "k", value = "" }, Proto.parse("SET k "))
    assert.same({ op = "GET", key = "k" }, Proto.parse("GET k"))
    assert.same({ op = "DEL", key = "k" }, Proto.parse("DEL k"))
    assert.same({ op = "KEYS" }, Proto.parse("KEYS"))
    assert.same({ op = "QUIT" }, Proto.parse("QUIT"))
    assert.same({ op = "CRASH" }, Proto.parse("CRASH"))
  end)

  it("takes command words in any case, blanks around words, and a trailing CR", function()
    assert.same({ op = "GET", key = "k" }, Proto.parse("  get\tk  "))
    assert.same({ op = "SET", key = "k", value = "v" }, Proto.parse("set k v\r"))
    assert.same({ op = "QUIT" }, Proto.parse("Quit\r"))
  end)

  it("answers malformed lines with the text of an ERR", function()
    local function err(line) return select(2, Proto.parse(line)) end
    assert.equal("empty line", err(""))
    assert.equal("empty line", err("  \r"))
    assert.equal("unknown command 'FETCH'", err("FETCH k"))
    assert.equal("usage: SET key value", err("SET k"))
    assert.equal("usage: SET key value", err("SET"))
    assert.equal("usage: GET key", err("GET"))
    assert.equal("usage: GET key", err("GET a b"))
    assert.equal("usage: DEL key", err("DEL"))
    assert.equal("usage: KEYS", err("KEYS a"))
    assert.equal("usage: QUIT", err("QUIT now"))
  end)

  it("shows binary garbage back as printable ASCII, cut short", function()
    local _, e = Proto.parse("\0\1\255" .. ("x"):rep(100))
    assert.equal("unknown command '???" .. ("x"):rep(29) .. "...'", e)
  end)

  it("formats the replies", function()
    assert.equal("OK", Proto.ok())
    assert.equal("VALUE a b", Proto.value("a b"))
    assert.equal("NIL", Proto.value(nil))
    assert.equal("ERR oops", Proto.err("oops"))
    assert.equal("KEYS", Proto.keys({}))
    assert.equal("KEYS a b", Proto.keys({ "a", "b" }))
  end)
end)

describe("kv.wal", function()
  it("replays SET and DEL records in order; a value may hold any bytes", function()
    local log = Wal.set_record("a", "1") .. Wal.set_record("b", "two words\n\0") ..
      Wal.set_record("a", "3") .. Wal.del_record("c") .. Wal.set_record("c", "") .. Wal.del_record("a")
    local map, stats = Wal.decode(log)
    assert.same({ b = "two words\n\0", c = "" }, map)
    assert.same({ records = 6, skipped = 0 }, stats)
  end)

  it("skips a cut-off last record, whatever the cut", function()
    local good = Wal.set_record("a", "1") .. Wal.set_record("b", "22")
    local last = Wal.set_record("c", "hello world")
    for cut = 1, #last - 1 do
      local map, stats = Wal.decode(good .. last:sub(1, cut))
      assert.same({ a = "1", b = "22" }, map, "cut at " .. cut)
      assert.same({ records = 2, skipped = 1 }, stats, "cut at " .. cut)
    end
    local map, stats = Wal.decode(good .. Wal.del_record("a"):sub(1, 5))
    assert.same({ a = "1", b = "22" }, map)
    assert.equal(1, stats.skipped)
  end)

  it("skips malformed lines anywhere and keeps the records around them", function()
    local log = Wal.set_record("a", "1") .. "garbage\n" .. "SET b 99 short\n" .. "\n" ..
      Wal.set_record("c", "3") .. "DEL\n"
    local map, stats = Wal.decode(log)
    assert.same({ a = "1", c = "3" }, map)
    assert.same({ records = 2, skipped = 4 }, stats)
  end)

  it("replays a missing file as an empty log; compacts to one record per key", function()
    local path = os.tmpname()
    os.remove(path)
    assert.same({}, (Wal.replay(path)))
    write_file(path, Wal.set_record("a", "1") .. Wal.set_record("a", "2") .. Wal.set_record("b", "x") ..
      Wal.del_record("b") .. "SET cut 5 ab")
    local map = Wal.replay(path)
    assert.is_true(Wal.compact(path, map))
    assert.equal(Wal.set_record("a", "2"), C.slurp(path))
    local f = Wal.open(path)
    assert.is_true(Wal.append(f, Wal.set_record("z", "26")))
    assert.same({ a = "2", z = "26" }, (Wal.replay(path)))
    f:close()
    os.remove(path)
  end)
end)

-- ---- processes ----

-- A process that starts a supervision tree and stays its parent until told {"stop"}: the app
-- (App.start(opts)) or, with opts.store_only, a supervisor of the store alone. The host gets
-- {"kv_started", top, port} or {"kv_failed", reason}; on {"stop"}, {"kv_stopped"} once the tree
-- is gone.
local function keeper(host, opts)
  local mb = require "moonbeam"
  local gen_server = require "moonbeam.gen_server"
  local supervisor = require "moonbeam.supervisor"
  mb.trap_exit(true)
  local top, port
  if opts.store_only then
    top, port = supervisor.start_link { name = "kv_sup", intensity = 10, period = 10, children = {
      { id = "store", module = "scripts.examples.kv.store", name = "kv_store", args = { data = opts.data } } } }
  else
    top, port = require("scripts.examples.kv.app").start(opts)
  end
  if not top then return mb.send(host, { "kv_failed", port }) end
  mb.send(host, { "kv_started", top, port })
  while true do
    local m = mb.receive()
    if m[1] == "stop" then
      gen_server.stop(top)
      return mb.send(host, { "kv_stopped" })
    elseif m[1] == "EXIT" and m[2] == top then
      return mb.send(host, { "kv_down", m[3] })
    end
  end
end

local function start_app(node, opts)
  local k = G.spawn(node, keeper, node:self(), opts)
  local m = G.wait(node, function(x) return x[1] == "kv_started" or x[1] == "kv_failed" end)
  assert(m[1] == "kv_started", "the kv app did not start: " .. tostring(m[2]))
  return { keeper = k, top = m[2], port = m[3] }
end

local function stop_app(node, app)
  node:send(app.keeper, { "stop" })
  G.wait(node, "kv_stopped")
end

-- Kill `pid` with an untrappable exit signal, from a process of the node.
local function kill(node, pid)
  G.spawn(node, function(host, p)
    local mb = require "moonbeam"
    mb.exit(p, "kill")
    mb.send(host, { "kv_killed" })
  end, node:self(), pid)
  G.wait(node, "kv_killed")
end

-- The connection processes running now (supervisor.which_children of kv_conns).
local function conns(node)
  G.spawn(node, function(host)
    local mb = require "moonbeam"
    mb.send(host, { "kv_conns", require("moonbeam.supervisor").which_children("kv_conns") })
  end, node:self())
  return G.wait(node, "kv_conns")[2]
end

-- The pid registered as `name` once it is not `old`.
local function new_pid(node, name, old)
  return H.poll(node, function()
    local p = node:whereis(name)
    return p ~= nil and p ~= old and p
  end)
end

-- A TCP client process (packet "line"): it connects to 127.0.0.1:port, then on {"ask", bytes,
-- reply_wanted} sends the bytes (if any) and, if wanted, reads one line: the host gets
-- {"kv_got", self, line_or_nil, err}. {"close"} closes and ends it.
local function client_body(host, port)
  local mb = require "moonbeam"
  local tcp = require "moonbeam.tcp"
  local c, err = tcp.connect("127.0.0.1", port, { packet = "line" })
  mb.send(host, { "kv_connected", mb.self(), c ~= nil, err })
  if not c then return end
  while true do
    local m = mb.receive()
    if m[1] == "close" then c:close(); return end
    local ok, serr = true, nil
    if m[2] ~= "" then ok, serr = c:send(m[2]) end
    if m[3] then
      if ok then mb.send(host, { "kv_got", mb.self(), c:recv(5000) })
      else mb.send(host, { "kv_got", mb.self(), nil, serr }) end
    end
  end
end

local Client = {}
Client.__index = Client

local function connect(node, port)
  local pid = G.spawn(node, client_body, node:self(), port)
  local m = G.wait(node, function(x) return x[1] == "kv_connected" and x[2] == pid end)
  assert(m[3], "connect failed: " .. tostring(m[4]))
  return setmetatable({ node = node, pid = pid }, Client)
end

-- Send raw bytes and read one reply line: line or nil, err.
function Client:raw(bytes)
  self.node:send(self.pid, { "ask", bytes, true })
  local m = G.wait(self.node, function(x) return x[1] == "kv_got" and x[2] == self.pid end)
  return m[3], m[4]
end

-- Send one command line and return the reply line (or nil, err).
function Client:ask(line) return self:raw(line .. "\n") end

-- Send each {line, reply}'s line and check the reply.
local function exchange(c, script)
  for _, x in ipairs(script) do assert.equal(x[2], c:ask(x[1]), x[1]) end
end

function Client:send(bytes) self.node:send(self.pid, { "ask", bytes, false }) end
function Client:close() self.node:send(self.pid, { "close" }) end

describe("kv.store (no sockets)", function()
  local node, data
  before_each(function()
    node = G.start()
    data = os.tmpname()
  end)
  after_each(function()
    G.stop(node)
    node = nil
    os.remove(data)
  end)

  it("keeps every acknowledged write across CRASH, a kill from outside, and a full restart", function()
    local app = start_app(node, { store_only = true, data = data })
    assert.same({ true }, node:call("kv_store", { "set", "a", "1" }))
    assert.same({ true }, node:call("kv_store", { "set", "b", "two words" }))
    assert.equal("1", node:call("kv_store", { "get", "a" }))

    local store = node:whereis("kv_store")
    assert.is_false(pcall(node.call, node, "kv_store", "crash"))
    store = new_pid(node, "kv_store", store)
    assert.truthy(store, "the store was not restarted")
    assert.equal("two words", node:call("kv_store", { "get", "b" }))
    assert.same({ true }, node:call("kv_store", { "del", "a" }))

    kill(node, store)
    assert.truthy(new_pid(node, "kv_store", store), "the store was not restarted")
    assert.is_nil(node:call("kv_store", { "get", "a" }))
    assert.same({ "b" }, node:call("kv_store", "keys"))

    stop_app(node, app)
    app = start_app(node, { store_only = true, data = data })
    assert.same({ "b" }, node:call("kv_store", "keys"))
    assert.equal("two words", node:call("kv_store", { "get", "b" }))
    -- compacted at each start: one record per key
    assert.equal(Wal.set_record("b", "two words"), C.slurp(data))
    stop_app(node, app)
  end)

  it("starts from a log whose last record was cut off, and writes on cleanly after it", function()
    write_file(data, Wal.set_record("a", "1") .. Wal.set_record("b", "2") .. "SET c 11 hello w")
    local app = start_app(node, { store_only = true, data = data })
    assert.same({ "a", "b" }, node:call("kv_store", "keys"))
    assert.same({ true }, node:call("kv_store", { "set", "c", "3" }))
    stop_app(node, app)
    app = start_app(node, { store_only = true, data = data })
    assert.same({ "a", "b", "c" }, node:call("kv_store", "keys"))
    assert.equal("3", node:call("kv_store", { "get", "c" }))
    stop_app(node, app)
  end)

  it("fails to start, with a reason, when its log cannot be written", function()
    G.spawn(node, keeper, node:self(), { store_only = true, data = "/nonexistent-dir/kv.log" })
    local m = G.wait(node, function(x) return x[1] == "kv_started" or x[1] == "kv_failed" end)
    assert.equal("kv_failed", m[1])
    assert.truthy(tostring(m[2][3]):find("cannot rewrite /nonexistent-dir/kv.log", 1, true), tostring(m[2][3]))
  end)
end)

describe("kv over TCP", function()
  local node, data, app
  before_each(function()
    node = G.start()
    data = os.tmpname()
    app = start_app(node, { port = 0, data = data })
  end)
  after_each(function()
    if node and app then pcall(stop_app, node, app) end
    G.stop(node)
    node, app = nil, nil
    os.remove(data)
  end)

  it("answers each command", function()
    exchange(connect(node, app.port), {
      { "GET greeting", "NIL" },
      { "SET greeting hello, world", "OK" },
      { "GET greeting", "VALUE hello, world" },
      { "SET greeting  two  spaces ", "OK" },
      { "GET greeting", "VALUE  two  spaces " },
      { "SET empty ", "OK" },
      { "GET empty", "VALUE " },
      { "KEYS", "KEYS empty greeting" },
      { "DEL greeting", "OK" },
      { "DEL greeting", "OK" },
      { "GET greeting", "NIL" },
      { "del empty", "OK" },
      { "KEYS", "KEYS" },
      { "set crlf yes\r", "OK" },      -- telnet, nc -C
      { "get crlf\r", "VALUE yes" },
    })
  end)

  it("answers malformed lines and binary garbage with ERR and keeps the connection", function()
    exchange(connect(node, app.port), {
      { "", "ERR empty line" },
      { "FETCH k", "ERR unknown command 'FETCH'" },
      { "SET k", "ERR usage: SET key value" },
      { "GET a b", "ERR usage: GET key" },
      { "KEYS please", "ERR usage: KEYS" },
      { "\0\1\2\255 garbage", "ERR unknown command '????'" },
      { "SET k v", "OK" },
      { "GET k", "VALUE v" },
    })
  end)

  it("answers lines that arrive together, and one that arrives in pieces, in order", function()
    local c = connect(node, app.port)
    c:send("SET a 1\nSET b 2\nGET a\n")
    c:send("GE")
    c:send("T b\nKEY")
    assert.equal("OK", c:raw(""))
    assert.equal("OK", c:raw(""))
    assert.equal("VALUE 1", c:raw(""))
    assert.equal("VALUE 2", c:raw(""))
    assert.equal("KEYS a b", c:raw("S\n"))
  end)

  it("QUIT answers OK and closes the connection", function()
    local c = connect(node, app.port)
    assert.equal("OK", c:ask("QUIT"))
    local line, err = c:raw("")
    assert.is_nil(line)
    assert.equal("closed", err)
  end)

  it("CRASH restarts the store with every acknowledged write; clients keep their connections", function()
    local c, d = connect(node, app.port), connect(node, app.port)
    assert.equal("OK", c:ask("SET a 1"))
    assert.equal("OK", d:ask("SET b 2"))
    local store = node:whereis("kv_store")
    assert.equal("OK", c:ask("CRASH"))
    -- the next calls may find the store down or restarting: they wait for it
    assert.equal("VALUE 1", d:ask("GET a"))
    assert.equal("VALUE 2", c:ask("GET b"))
    assert.are_not.equal(store, node:whereis("kv_store"))
    assert.equal("KEYS a b", c:ask("KEYS"))
  end)

  it("loses no acknowledged write when the store is killed from outside mid-stream", function()
    -- a writer SETs w1..w200 and tells the host which were acknowledged; the store is killed
    -- once 50 are, while the writer goes on
    local writer = G.spawn(node, function(host, port)
      local mb = require "moonbeam"
      local tcp = require "moonbeam.tcp"
      local c = assert(tcp.connect("127.0.0.1", port, { packet = "line" }))
      local acked = {}
      for i = 1, 200 do
        assert(c:send(("SET w%d value %d\n"):format(i, i)))
        local r = assert(c:recv(10000))
        if r == "OK" then acked[#acked + 1] = i end
        if i == 50 then mb.send(host, { "kv_halfway" }); mb.receive(function(m) return m == "go" end) end
      end
      mb.send(host, { "kv_acked", acked })
    end, node:self(), app.port)
    G.wait(node, "kv_halfway")
    local store = node:whereis("kv_store")
    kill(node, store)
    node:send(writer, "go")
    local acked = G.wait(node, "kv_acked")[2]
    assert.is_true(#acked >= 50)
    assert.truthy(new_pid(node, "kv_store", store))
    local c = connect(node, app.port)
    for _, i in ipairs(acked) do
      assert.equal("VALUE value " .. i, c:ask("GET w" .. i))
    end
  end)

  it("a connection process that crashes takes nothing else down", function()
    local a = connect(node, app.port)
    assert.equal("OK", a:ask("SET a 1"))
    local kids = conns(node)
    assert.equal(1, #kids)
    local b = connect(node, app.port)
    assert.equal("OK", b:ask("SET b 2"))
    local store = node:whereis("kv_store")
    kill(node, kids[1].pid)
    local line, err = a:raw("")
    assert.is_nil(line)
    assert.equal("closed", err)
    assert.equal("VALUE 1", b:ask("GET a"))
    assert.equal(store, node:whereis("kv_store"))
    assert.equal("KEYS a b", connect(node, app.port):ask("KEYS"))
    assert.truthy(H.poll(node, function() return #conns(node) == 2 end))   -- b's and the last one
  end)

  it("acceptors that crash are restarted and the listening socket stays open", function()
    local a = connect(node, app.port)
    assert.equal("OK", a:ask("SET a 1"))
    local listener = node:whereis("kv_listener")
    G.spawn(node, function(host)
      local mb = require "moonbeam"
      local supervisor = require "moonbeam.supervisor"
      local old = supervisor.which_children("kv_acceptors")
      for _, c in ipairs(old) do mb.exit(c.pid, "kill") end
      mb.send(host, { "kv_acceptors_killed", #old })
    end, node:self())
    assert.equal(4, G.wait(node, "kv_acceptors_killed")[2])
    for i = 1, 6 do
      assert.equal("VALUE 1", connect(node, app.port):ask("GET a"), "client " .. i)
    end
    assert.equal(listener, node:whereis("kv_listener"))
    assert.equal("VALUE 1", a:ask("GET a"))
  end)

  it("a client that vanishes mid-line affects only its own connection process", function()
    local a, b = connect(node, app.port), connect(node, app.port)
    assert.equal("OK", b:ask("SET b 2"))
    a:send("SET half")
    a:close()
    assert.truthy(H.poll(node, function()
      return #conns(node) == 1
    end))
    assert.equal("VALUE 2", b:ask("GET b"))
    assert.equal("NIL", b:ask("GET half"))
  end)

  it("a line over 1 MiB closes its own connection and nothing else", function()
    local a, b = connect(node, app.port), connect(node, app.port)
    assert.equal("OK", b:ask("SET b 2"))
    local line, err = a:ask("SET big " .. ("x"):rep(1024 * 1024 + 1))
    assert.is_nil(line)
    -- the server may close while the client is still sending: then the send fails with a reset
    assert.truthy(err == "closed" or err == "econnreset" or err == "epipe", err)
    assert.equal("VALUE 2", b:ask("GET b"))
    assert.equal("KEYS b", connect(node, app.port):ask("KEYS"))
  end)

  it("replays the log across a full restart of the application", function()
    local c = connect(node, app.port)
    assert.equal("OK", c:ask("SET kept yes"))
    assert.equal("OK", c:ask("SET gone soon"))
    assert.equal("OK", c:ask("DEL gone"))
    assert.equal("OK", c:ask("SET spaced a b  c"))
    stop_app(node, app)
    assert.is_nil(node:whereis("kv_store"))
    assert.equal("closed", select(2, c:raw("")))
    app = start_app(node, { port = 0, data = data })
    c = connect(node, app.port)
    assert.equal("KEYS kept spaced", c:ask("KEYS"))
    assert.equal("VALUE yes", c:ask("GET kept"))
    assert.equal("VALUE a b  c", c:ask("GET spaced"))
  end)

  it("skips a truncated last log line at replay", function()
    stop_app(node, app)
    write_file(data, Wal.set_record("a", "1") .. "SET b 5 tw")
    app = start_app(node, { port = 0, data = data })
    local c = connect(node, app.port)
    assert.equal("VALUE 1", c:ask("GET a"))
    assert.equal("NIL", c:ask("GET b"))
    assert.equal("OK", c:ask("SET b 2"))
    stop_app(node, app)
    app = start_app(node, { port = 0, data = data })
    assert.equal("KEYS a b", connect(node, app.port):ask("KEYS"))
  end)
end)

describe("kv from the command line", function()
  local function port_of(r) return tonumber(r.stdout:match("kv: listening on 127%.0%.0%.1:(%d+)")) end

  it("main.lua serves until SIGINT, then stops the tree and exits with 0", function()
    local data = os.tmpname()
    local h = C.start({ "scripts/examples/kv/main.lua", "--port", "0", "--data", data })
    assert.is_true(C.wait_output(h, "kv: data in"), "main.lua did not start")
    local port = port_of({ stdout = C.slurp(h.out) })
    local node = G.start()
    local c = connect(node, port)
    assert.equal("OK", c:ask("SET cli works"))
    assert.equal("VALUE works", c:ask("GET cli"))
    C.signal(h, "INT")
    assert.equal(0, C.wait_exit(h))
    assert.equal("closed", select(2, c:raw("")))
    G.stop(node)
    local r = C.finish(h)
    assert.equal("kv: stopped (shutdown)", r.out[#r.out], r.stdout .. r.stderr)
    assert.equal(Wal.set_record("cli", "works"), C.slurp(data))
    os.remove(data)
  end)

  it("main.lua loses no acknowledged write when the whole node is killed (SIGKILL)", function()
    local data = os.tmpname()
    local node = G.start()
    local h = C.start({ "scripts/examples/kv/main.lua", "--port", "0", "--data", data })
    assert.is_true(C.wait_output(h, "kv: data in"), "main.lua did not start")
    local c = connect(node, port_of({ stdout = C.slurp(h.out) }))
    for i = 1, 20 do assert.equal("OK", c:ask("SET k" .. i .. " v" .. i)) end
    C.signal(h, "KILL")
    assert.equal(137, C.wait_exit(h))
    C.finish(h)
    h = C.start({ "scripts/examples/kv/main.lua", "--port", "0", "--data", data })
    assert.is_true(C.wait_output(h, "kv: data in"), "main.lua did not start again")
    c = connect(node, port_of({ stdout = C.slurp(h.out) }))
    for i = 1, 20 do assert.equal("VALUE v" .. i, c:ask("GET k" .. i)) end
    C.signal(h, "TERM")
    assert.equal(0, C.wait_exit(h))
    C.finish(h)
    G.stop(node)
    os.remove(data)
  end)

  it("main.lua refuses bad arguments with a usage line and status 2", function()
    local r = C.run({ "scripts/examples/kv/main.lua", "--port", "x" }, { cwd = C.root })
    assert.equal(2, r.status)
    assert.truthy(r.stderr:find("usage: moonbeam scripts/examples/kv/main.lua", 1, true), r.stderr)
  end)

  it("demo.lua shows the session, the store's restart report, and ends by itself with 0", function()
    local r = C.run({ "scripts/examples/kv/demo.lua" }, { cwd = C.root })
    assert.equal(0, r.status, r.stderr)
    local want = {
      "> SET greeting hello, world", "< OK",
      "> GET greeting", "< VALUE hello, world",
      "> SET greeting", "< ERR usage: SET key value",
      "> FETCH greeting", "< ERR unknown command 'FETCH'",
      "> CRASH", "< OK",
      "> GET greeting", "< VALUE hello, world",
      "> KEYS", "< KEYS greeting",
      "> QUIT", "< OK",
    }
    local got = {}
    for _, l in ipairs(r.out) do if l:match("^[<>] ") then got[#got + 1] = l end end
    assert.same(want, got)
    assert.equal("kv: stopped", r.out[#r.out])
    assert.truthy(r.stderr:find("supervisor report: supervisor <0%.%d+> %(kv_sup%): child 'store' %(<0%.%d+>.-restarted"),
      r.stderr)
  end)
end)
