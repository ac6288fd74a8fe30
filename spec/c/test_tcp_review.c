/* test_tcp_review: regressions found by reviewing moonbeam.tcp (core/tcp.c,
 * bindings/tcp.c): socket references leaked on the error paths of the Lua face,
 * and names still resolving when the node halts. The leaks show under ASan
 * (check_no_leaks); the halt shows as a hang (the test's alarm) or a leak. */
#define CHECK_TIMEOUT_S 30
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "nodecheck.h"

/* A listening socket outside the node (it outlives the node's loop): its port. */
static int outside_listener(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
  CHECK(listen(fd, 16) == 0);
  socklen_t len = sizeof a;
  CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
  return ntohs(a.sin_port);
}

/* Regression (fixed): bindings/tcp.c, c_send: sock_at took a hold on the socket (mb_tcp_hold)
 * before luaL_checklstring(L, 2) checks the data; a non-string raises past the
 * mb_tcp_release, so every such call leaks one reference and the mb_sock (with
 * its buffers) is never freed. Check the arguments before the hold. */
TEST(send_with_a_bad_argument_leaks_no_socket) {
  CHECK_EQ_INT(check_run_script(
    "local tcp = require 'moonbeam.tcp'\n"
    "local l = assert(tcp.listen('127.0.0.1', 0))\n"
    "local c = assert(tcp.connect('127.0.0.1', l:port()))\n"
    "local s = assert(l:accept(5000))\n"
    "assert(not pcall(c.send, c, {}))\n"
    "assert(not pcall(c.send, c))\n"
    "assert(c:close() and s:close() and l:close())\n", 1), 0);
  check_no_leaks();
}

/* A process with a small heap, receiving a frame bigger than it: pushing the
 * frame raises a memory error, which must end only the process. */
static const char heap_module[] =
  "local mb = require 'moonbeam'\n"
  "return function(parent, conn)\n"
  "  mb.receive(function(m) return m == 'yours' end)\n"   /* set_owner is done */
  "  mb.send(parent, 'ready')\n"
  "  conn:recv(5000)\n"
  "end\n";

/* Regression (fixed): bindings/tcp.c, op_k: it held the socket (mb_tcp_hold, line 236) and
 * calls try_op, whose push_frame (lua_pushlstring) or fail (lua_pushstring)
 * raises a memory error when the frame does not fit the process's max_heap: the
 * hold is never released, so the mb_sock leaks after the owner's end closed it.
 * (The frame itself is safe in the scratch box.) Release before pushing, or
 * push under a protected call. */
TEST(recv_over_max_heap_leaks_no_socket) {
  CHECK_EQ_INT(check_run_with_module("heap", heap_module,
    "local mb = require 'moonbeam'\n"
    "local tcp = require 'moonbeam.tcp'\n"
    "local l = assert(tcp.listen('127.0.0.1', 0, { packet = 4 }))\n"
    "local c = assert(tcp.connect('127.0.0.1', l:port(), { packet = 4 }))\n"
    "local s = assert(l:accept(5000))\n"
    "local pid, mon = mb.spawn_monitor({ module = 'heap', max_heap = 1 << 20 }, mb.self(), s)\n"
    "assert(s:set_owner(pid))\n"
    "mb.send(pid, 'yours')\n"
    "assert(mb.receive(function(m) return m == 'ready' end, 5000))\n"
    "local ok, e = c:send(('x'):rep(4 << 20))\n"   /* a send that had to wait sees the receiver's end */
    "assert(ok or e == 'closed' or e == 'econnreset' or e == 'epipe', e)\n"
    "local down = mb.receive(function(m) return type(m) == 'table' and m[1] == 'DOWN' end, 10000)\n"
    "assert(down, 'the receiver never ended')\n"
    "assert(c:close() and l:close())\n", 2), 0);
  check_no_leaks();
}

/* A name still resolving when the node halts. A process keeps the thread pool
 * (one worker) busy with 2000 connects by name to a closed port (timeout 0:
 * each returns at once, its resolution maybe still queued), says so, and asks
 * for a listener (or a connection to one outside the node) by name: the ask is queued before it
 * yields, so before the loop closes. It stays alive, as processes do through a
 * halt. Then the node halts. */
static int halt_while_resolving(int listen) {
  CHECK(setenv("UV_THREADPOOL_SIZE", "1", 1) == 0);
  char src[2048];
  snprintf(src, sizeof src,
    "local mb = require 'moonbeam'\n"
    "local tcp = require 'moonbeam.tcp'\n"
    "local closed = assert(tcp.listen('127.0.0.1', 0))\n"
    "local bad = closed:port()\n"
    "closed:close()\n"
    "mb.spawn(function(parent, bad, good_port, listen)\n"
    "  local mb = require 'moonbeam'\n"
    "  local tcp = require 'moonbeam.tcp'\n"
    "  local function ask(port)\n"
    "    local e = select(2, tcp.connect('localhost', port, { timeout = 0 }))\n"
    "    assert(e == 'timeout' or e == 'econnrefused', e)\n"   /* refused: answered before it looked */
    "  end\n"
    "  for _ = 1, 2000 do ask(bad) end\n"
    "  mb.send(parent, 'asking')\n"
    "  if listen then tcp.listen('localhost', 0) else tcp.connect('localhost', good_port) end\n"
    "  mb.receive()\n"
    "end, mb.self(), bad, %d, %s)\n"
    "assert(mb.receive(function(m) return m == 'asking' end, 20000))\n"
    "mb.halt(7)\n", outside_listener(), listen ? "true" : "false");
  return check_run_script(src, 2);
}

/* Regression (fixed): core/tcp.c, io_open/on_resolved/open_at: a name (not an address
 * literal) is resolved on libuv's thread pool. When the node halts meanwhile,
 * run_requests has already run mb_tcp_io_close_all and closed the async handle,
 * but the resolution still completes and on_resolved -> open_at makes a new
 * socket on the loop after the close-all. After a halt the owner still exists
 * (reap comes later), so open_done hands it out. A listener is an active uv
 * handle: uv_run never returns and mb_io_stop's uv_thread_join hangs (the node
 * never ends). open_at (or on_resolved) should refuse once the loop is closing. */
TEST(halt_while_listen_resolves_a_name) {
  CHECK_EQ_INT(halt_while_resolving(1), 7);
  check_no_leaks();
}

/* Regression (fixed): as above, for connect: the connection made after the close-all is an
 * inactive handle, so uv_run returns with it open: its mb_sock (the I/O
 * thread's reference) and its fd leak. */
TEST(halt_while_connect_resolves_a_name) {
  CHECK_EQ_INT(halt_while_resolving(0), 7);
  check_no_leaks();
}

TEST_MAIN(CHECK_CASE(send_with_a_bad_argument_leaks_no_socket), CHECK_CASE(recv_over_max_heap_leaks_no_socket),
          CHECK_CASE(halt_while_listen_resolves_a_name),
          CHECK_CASE(halt_while_connect_resolves_a_name))
