/* test_tcp: moonbeam.tcp hammered from many processes on several schedulers at
 * once: connecting, echoing, switching modes, handing sockets on and closing,
 * while a killer ends their owners at random; and a node stopped with sockets
 * open. The node must stay whole: no crash, no race (TSan), no leak (ASan), no
 * fd left open once it is freed, and every echo that arrives is the right one. */
#include <dirent.h>
#include "nodecheck.h"

/* The open fds of this process. */
static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  CHECK(d != NULL);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1;   /* d's own */
}

/* The open fds once a node has used a socket and been freed: libuv keeps a few
 * for the life of the process (its signal lock pipe), so the count is taken
 * after one such node, and must not grow with the next. */
static int fds_after_warmup(void) {
  CHECK_EQ_INT(check_run_script(
    "local tcp = require 'moonbeam.tcp'\n"
    "local l = assert(tcp.listen('127.0.0.1', 0))\n"
    "local c = assert(tcp.connect('127.0.0.1', l:port()))\n"
    "assert(l:accept(5000)):close()\n"
    "c:close()\n"
    "l:close()\n", 1), 0);
  return count_fds();
}

/* The roles, as one module: mb.spawn("chaos", role, ...) runs R[role](...). */
static const char chaos_module[] =
  "local mb = require 'moonbeam'\n"
  "local tcp = require 'moonbeam.tcp'\n"
  "local R = {}\n"
  "local function is_for(c) return function(m) return type(m) == 'table' and m[2] == c end end\n"
  /* the server side of a connection: echoes frames; at random hands the socket
   * on, flips to active 'once' for a frame, closes it, or ends without closing */
  "function R.handler(T)\n"
  "  local c = mb.receive(T)\n"
  "  if type(c) ~= 'userdata' then return end\n"
  "  while true do\n"
  "    local r = math.random(16)\n"
  "    if r == 1 then\n"
  "      local h = mb.spawn('chaos', 'handler', T)\n"
  "      if c:set_owner(h) then mb.send(h, c) end\n"
  "      return\n"
  "    elseif r == 2 then return\n"
  "    elseif r == 3 then assert(c:close() == true) return\n"
  "    elseif r == 4 then\n"
  "      c:set_active('once')\n"
  "      local m = mb.receive(is_for(c), T)\n"
  "      if not m or m[1] ~= 'tcp' then return end\n"
  "      if not c:send(m[3]) then return end\n"
  "    else\n"
  "      local d = c:recv(T)\n"
  "      if not d or not c:send(d) then return end\n"
  "    end\n"
  "  end\n"
  "end\n"
  /* one of several processes accepting on the same listener */
  "function R.acceptor(l, T)\n"
  "  while true do\n"
  "    local c, err = l:accept(T)\n"
  "    if not c then if err == 'closed' then return end else\n"
  "      local h = mb.spawn('chaos', 'handler', T)\n"
  "      if c:set_owner(h) then mb.send(h, c) else c:close() end\n"
  "    end\n"
  "  end\n"
  "end\n"
  /* a client: sends numbered frames and checks each echo; may hand its socket to
   * an heir that goes on with the count, or die by its own kill */
  "function R.client(port, T, boss, c, i)\n"
  "  if not c then\n"
  "    c = tcp.connect('127.0.0.1', port, { packet = 4 })\n"
  "    if not c then return end\n"
  "    i = 0\n"
  "  end\n"
  "  for _ = 1, math.random(30) do\n"
  "    i = i + 1\n"
  "    local msg = ('%d:%d'):format(i, math.random(1000000))\n"
  "    if not c:send(msg) then return end\n"
  "    local r = math.random(10)\n"
  "    if r == 1 then\n"
  "      local h = mb.spawn('chaos', 'heir', port, T, boss)\n"
  "      if c:set_owner(h) then mb.send(h, { c, i, msg }) end\n"
  "      return\n"
  "    elseif r == 2 then mb.exit(mb.self(), 'kill')\n"
  "    elseif r == 3 then c:set_active(true)\n"
  "      local m = mb.receive(is_for(c), T)\n"
  "      if not m or m[1] ~= 'tcp' then return end\n"
  "      if m[3] ~= msg then mb.send(boss, { 'mismatch', msg, m[3] }) end\n"
  "      c:set_active(false)\n"
  "    else\n"
  "      local d = c:recv(T)\n"
  "      if not d then return end\n"
  "      if d ~= msg then mb.send(boss, { 'mismatch', msg, d }) end\n"
  "    end\n"
  "  end\n"
  "  if math.random(2) == 1 then c:close() end\n"
  "end\n"
  /* the heir of a client's socket: the echo of its last frame is still due */
  "function R.heir(port, T, boss)\n"
  "  local m = mb.receive(T)\n"
  "  if type(m) ~= 'table' then return end\n"
  "  local d = m[1]:recv(T)\n"
  "  if not d then return end\n"
  "  if d ~= m[3] then mb.send(boss, { 'mismatch', m[3], d }) end\n"
  "  return R.client(port, T, boss, m[1], m[2])\n"
  "end\n"
  /* kills at random any process but the ones it is told to spare */
  "function R.killer(spare)\n"
  "  local keep = {}\n"
  "  for _, p in ipairs(spare) do keep[p] = true end\n"
  "  keep[mb.self()] = true\n"
  "  while not mb.receive(0) do\n"
  "    local ps = mb.processes()\n"
  "    local p = ps[math.random(#ps)]\n"
  "    if not keep[p] then mb.exit(p, 'kill') end\n"
  "    mb.sleep(math.random(0, 2))\n"
  "  end\n"
  "end\n"
  "return function(role, ...)\n"
  "  return R[role](...)\n"
  "end\n";

static const char chaos_main[] =
  "local mb = require 'moonbeam'\n"
  "local tcp = require 'moonbeam.tcp'\n"
  "local T = 3000\n"
  "local l = assert(tcp.listen('127.0.0.1', 0, { packet = 4 }))\n"
  "local port = l:port()\n"
  "local spare = { mb.self() }\n"
  "for i = 1, 3 do spare[#spare + 1] = mb.spawn('chaos', 'acceptor', l, T) end\n"
  "local killer = mb.spawn('chaos', 'killer', spare)\n"
  "local mismatches = {}\n"
  "for wave = 1, WAVES do\n"
  "  local refs = {}\n"
  "  for i = 1, 40 do\n"
  "    local _, ref = mb.spawn_monitor('chaos', 'client', port, T, mb.self())\n"
  "    refs[ref] = true\n"
  "  end\n"
  "  local left = 40\n"
  "  while left > 0 do\n"
  "    local m = assert(mb.receive(20000), 'a client never ended')\n"
  "    if m[1] == 'DOWN' and refs[m[2]] then left = left - 1\n"
  "    elseif m[1] == 'mismatch' then mismatches[#mismatches + 1] = m[2] .. ' ~= ' .. tostring(m[3]) end\n"
  "  end\n"
  "end\n"
  "mb.send(killer, 'stop')\n"
  "local kref = mb.monitor(killer)\n"
  "assert(mb.receive(function(m) return m[1] == 'DOWN' and m[2] == kref end, 10000))\n"
  "assert(#mismatches == 0, table.concat(mismatches, '; '))\n"
  /* the node still serves: a fresh connection echoes through the acceptors */
  "local c = assert(tcp.connect('127.0.0.1', port, { packet = 4 }))\n"
  "local got\n"
  "for i = 1, 50 do\n"
  "  if c:send('final') then got = c:recv(T) end\n"
  "  if got then break end\n"
  "  c = assert(tcp.connect('127.0.0.1', port, { packet = 4 }))\n"
  "end\n"
  "assert(got == 'final', 'no echo after the chaos')\n"
  /* end everything: the listener first (acceptors wake with closed), then the rest */
  "assert(l:close())\n"
  "for _, p in ipairs(mb.processes()) do if p ~= mb.self() then mb.exit(p, 'kill') end end\n";

static int run_chaos(int waves) {
  char src[sizeof chaos_main + 16];
  const char *at = strstr(chaos_main, "WAVES");
  CHECK(at != NULL);
  snprintf(src, sizeof src, "%.*s%d%s", (int)(at - chaos_main), chaos_main, waves, at + 5);
  return check_run_with_module("chaos", chaos_module, src, 4);
}

TEST(clients_handlers_and_handoffs_under_a_killer) {
  int before = fds_after_warmup();
  CHECK_EQ_INT(run_chaos(20), 0);
  CHECK_EQ_INT(count_fds(), before);
  check_no_leaks();
}

/* The node halts with listeners, connections, waiting acceptors, blocked
 * senders and active sockets all open: everything is closed and freed. */
TEST(halt_with_sockets_open) {
  int before = fds_after_warmup();
  mb_node *n = check_quiet_node(2);
  int st = check_run_on(n,
    "local mb = require 'moonbeam'\n"
    "local tcp = require 'moonbeam.tcp'\n"
    "local l = assert(tcp.listen('127.0.0.1', 0))\n"
    "local conns = {}\n"
    "for i = 1, 20 do\n"
    "  local c = assert(tcp.connect('127.0.0.1', l:port()))\n"
    "  local s = assert(l:accept(3000))\n"
    "  if i % 3 == 0 then s:set_active(true) end\n"
    "  if i % 4 == 0 then\n"
    "    mb.spawn(function(conn) local big = ('x'):rep(1 << 20) while conn:send(big) do end end, c)\n"
    "  end\n"
    "  c:send(('y'):rep(1000))\n"
    "  conns[#conns + 1] = { c, s }\n"
    "end\n"
    "mb.spawn(function(lst) lst:accept() end, l)\n"
    "mb.sleep(20)\n"
    "mb.halt(7)\n");
  CHECK_EQ_INT(st, 7);
  CHECK_EQ_INT(count_fds(), before);
  check_no_leaks();
}

/* One process sends big chunks while the owner closes the socket: a write can
 * reach the I/O thread after the socket's uv side closed (the copy in the send
 * makes the window wide); it must end as "closed", not crash the node. */
TEST(send_racing_the_owners_close) {
  int before = fds_after_warmup();
  CHECK_EQ_INT(check_run_script(
    "local mb = require 'moonbeam'\n"
    "local tcp = require 'moonbeam.tcp'\n"
    "for round = 1, 300 do\n"
    "  local l = assert(tcp.listen('127.0.0.1', 0))\n"
    "  local c = assert(tcp.connect('127.0.0.1', l:port()))\n"
    "  local s = assert(l:accept(5000))\n"
    "  local sink = mb.spawn(function()\n"
    "    local mb = require 'moonbeam'\n"
    "    local conn = mb.receive(5000)\n"
    "    conn:set_active(true)\n"
    "    repeat local m = mb.receive(5000) until not m or m[1] ~= 'tcp'\n"
    "  end)\n"
    "  assert(s:set_owner(sink))\n"
    "  mb.send(sink, s)\n"
    "  mb.spawn(function(parent, conn)\n"
    "    local mb = require 'moonbeam'\n"
    "    local big = ('z'):rep(1 << 18)\n"
    "    mb.send(parent, 'going')\n"
    "    local ok, err\n"
    "    repeat ok, err = conn:send(big) until not ok\n"
    "    mb.send(parent, err)\n"
    "  end, mb.self(), c)\n"
    "  assert(mb.receive(function(m) return m == 'going' end, 5000))\n"
    "  for _ = 1, round % 7 do mb.sleep(0) end\n"
    "  assert(c:close())\n"
    "  local err = mb.receive(function(m) return m ~= 'going' end, 5000)\n"
    "  assert(err == 'closed', tostring(err))\n"
    "  assert(l:close())\n"
    "end\n", 2), 0);
  CHECK_EQ_INT(count_fds(), before);
  check_no_leaks();
}

TEST_MAIN(CHECK_CASE(send_racing_the_owners_close), CHECK_CASE(clients_handlers_and_handoffs_under_a_killer),
          CHECK_CASE(halt_with_sockets_open))
