/* test_node: the embedding API end to end, and the scheduler hammered from C (this
 * is the suite that runs under ThreadSanitizer). Each test writes a script, runs it
 * as a node's first process and checks the node's exit status: the scripts raise
 * (status 1) when what they observe is wrong. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <pthread.h>
#include <time.h>
#include "nodecheck.h"
#include <lauxlib.h>
#include <lualib.h>
#include "moonbeam.h"
#include "luaface.h"

TEST(script_ending_normally_gives_status_0) {
  CHECK_EQ_INT(check_run_script("local x = 1 + 1", 2), 0);
}

TEST(script_raising_gives_status_1) {
  CHECK_EQ_INT(check_run_script("error('boom')", 2), 1);
}

TEST(halt_gives_its_code) {
  CHECK_EQ_INT(check_run_script("require('moonbeam').halt(7)", 2), 7);
}

TEST(os_exit_is_halt) {
  CHECK_EQ_INT(check_run_script("os.exit(5)", 1), 5);
}

TEST(many_processes_report_to_parent) {
  CHECK_EQ_INT(check_run_script(
    "local mb = require 'moonbeam'\n"
    "local me = mb.self()\n"
    "for i = 1, 2000 do mb.spawn(function(p, i) require('moonbeam').send(p, i) end, me, i) end\n"
    "local seen, n = {}, 0\n"
    "while n < 2000 do local i = mb.receive(10000); assert(i, 'timeout'); assert(not seen[i]); seen[i] = true; n = n + 1 end\n",
    2), 0);
}

/* Several producers on two schedulers: each producer's messages arrive in order. */
TEST(hammer_producers_keep_order) {
  CHECK_EQ_INT(check_run_script(
    "local mb = require 'moonbeam'\n"
    "local me = mb.self()\n"
    "local P, N = 8, 20000\n"
    "for p = 1, P do mb.spawn(function(to, p, n) local mb = require 'moonbeam'\n"
    "  for i = 1, n do mb.send(to, {p, i}) end end, me, p, N) end\n"
    "local last = {}\n"
    "for k = 1, P * N do local m = mb.receive(20000); assert(m, 'timeout')\n"
    "  assert(m[2] == (last[m[1]] or 0) + 1, 'out of order'); last[m[1]] = m[2] end\n",
    2), 0);
}

TEST(ring_passes_token) {
  CHECK_EQ_INT(check_run_script(
    "local mb = require 'moonbeam'\n"
    "local N, LAPS = 200, 200\n"
    "local function node(nextp) local mb = require 'moonbeam'\n"
    "  while true do local m = mb.receive(); if m == 'stop' then return end\n"
    "    if type(m) == 'table' then nextp = m[1] else mb.send(nextp, m - 1) end end end\n"
    "local first = mb.self()\n"
    "local prev = first\n"
    "local procs = {}\n"
    "for i = 1, N do prev = mb.spawn(node, prev); procs[i] = prev end\n"
    "mb.send(procs[N], N * LAPS)\n"
    "for i = N * LAPS, 1, -N do end\n"
    "local m = mb.receive(20000)\n"
    "assert(m == N * LAPS - N, 'got ' .. tostring(m))\n"
    "for i = 1, N do mb.send(procs[i], 'stop') end\n",
    2), 0);
}

/* A process that never blocks cannot stop another on the same scheduler.
 * Not under ThreadSanitizer: it holds asynchronous signals back until the thread
 * calls into an intercepted function, which a pure Lua loop never does. */
TEST(preemption_on_one_scheduler) {
#if defined(__SANITIZE_THREAD__)
  printf("skip preemption_on_one_scheduler: TSan defers signals\n");
  return;
#endif
  CHECK_EQ_INT(check_run_script(check_preemption_script, 1), 0);
}

/* mb_node_opts.c_modules: 0 (the default) and package.loadlib refuses before it
 * opens anything; nonzero and it is Lua's own, failing to open a missing file. */
TEST(c_modules_follow_the_opts) {
  static const char probe[] =
    "local f, err, where = package.loadlib('/nonexistent/lib.so', '*')\n"
    "assert(f == nil)\n"
    "os.exit(where == 'absent' and err:find('C modules are off', 1, true) and 3 or where == 'open' and 4 or 5)\n";
  CHECK_EQ_INT(check_run_script(probe, 1), 3);
  mb_node_opts o = { 0 };
  o.schedulers = 1;
  o.log_level = "none";
  o.c_modules = 1;
  mb_node *n = mb_node_new(&o);
  CHECK(n != NULL);
  CHECK_EQ_INT(check_run_on(n, probe), 4);
}

TEST(spawn_of_missing_module_fails) {
  mb_node *n = mb_node_new(NULL);
  mb_pid pid = 0;
  CHECK_EQ_INT(mb_spawn(n, "no_such_module_here", NULL, 0, &pid), MB_ENOTFOUND);
  mb_node_free(n);
}

TEST(strerror_names_codes) {
  CHECK_EQ_STR(mb_strerror(MB_ENOPROC), "noproc");
  CHECK_EQ_STR(mb_strerror(MB_ETIMEOUT), "timeout");
  CHECK_EQ_STR(mb_version_string(), MB_VERSION_STRING);
}

/* ---- stopping a started node while another thread waits on it ---- */

typedef struct { mb_node *n; int status; volatile int returned; } waiter_arg;

static void *waiter_main(void *ud) {
  waiter_arg *w = ud;
  w->status = mb_node_wait(w->n);
  __atomic_store_n(&w->returned, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

/* Poll (1 ms steps, at most 10 s) until `name` is registered. */
static int wait_registered(mb_node *n, const char *name, mb_pid *pid) {
  for (int i = 0; i < 10000; i++) {
    if (mb_whereis(n, name, pid) == 0) return 0;
    struct timespec ts = { 0, 1000000 };
    nanosleep(&ts, NULL);
  }
  return -1;
}

/* Start n, wait for its process to register `name`, then stop it from this thread
 * while another thread is in mb_node_wait: both return, with the same status. */
static int stop_while_waiting(mb_node *n, const char *name) {
  CHECK_EQ_INT(mb_node_start(n), 0);
  mb_pid reg = 0;
  CHECK_EQ_INT(wait_registered(n, name, &reg), 0);
  waiter_arg w = { n, -100, 0 };
  pthread_t t;
  CHECK_EQ_INT(pthread_create(&t, NULL, waiter_main, &w), 0);
  /* The process waits forever: the node must not end on its own. */
  struct timespec ts = { 0, 20000000 };
  nanosleep(&ts, NULL);
  CHECK_EQ_INT(__atomic_load_n(&w.returned, __ATOMIC_SEQ_CST), 0);
  int st = mb_node_stop(n);
  CHECK_EQ_INT(pthread_join(t, NULL), 0);
  CHECK_EQ_INT(w.returned, 1);
  CHECK_EQ_INT(w.status, st);
  CHECK_EQ_INT(mb_node_stop(n), st);   /* idempotent */
  mb_node_free(n);
  return st;
}

TEST(stop_while_another_thread_waits_on_a_module_process) {
  char dir[] = "/tmp/mb_test_node_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char file[512], path[512];
  snprintf(file, sizeof file, "%s/forever_waiter.lua", dir);
  snprintf(path, sizeof path, "%s/?.lua", dir);
  FILE *f = fopen(file, "w");
  CHECK(f != NULL);
  fputs("local mb = require 'moonbeam'\n"
        "return function() mb.register('forever_waiter'); mb.receive() end\n", f);
  fclose(f);
  mb_node_opts o = { 0 };
  o.schedulers = 2;
  o.path = path;
  o.log_level = "none";
  mb_node *n = mb_node_new(&o);
  CHECK(n != NULL);
  mb_pid pid = 0;
  CHECK_EQ_INT(mb_spawn(n, "forever_waiter", NULL, 0, &pid), 0);
  CHECK(pid > 0);
  /* not the first process: its "killed" does not make the status abnormal */
  CHECK_EQ_INT(stop_while_waiting(n, "forever_waiter"), 0);
  unlink(file);
  rmdir(dir);
}

TEST(stop_while_another_thread_waits_on_a_script_process) {
  char path[] = "/tmp/mb_test_node_XXXXXX.lua";
  check_write_script(path, "local mb = require 'moonbeam'\nmb.register('forever_script')\nmb.receive()\n");
  mb_node *n = check_quiet_node(2);
  mb_pid pid = 0;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  stop_while_waiting(n, "forever_script");
  unlink(path);
}

TEST(stop_of_a_never_started_node_returns_and_free_works) {
  mb_node *n = check_quiet_node(0);
  CHECK_EQ_INT(mb_node_stop(n), 0);
  CHECK_EQ_INT(mb_node_stop(n), 0);
  CHECK_EQ_INT(mb_node_wait(n), 0);
  mb_node_free(n);
}

TEST(stop_of_a_never_started_node_with_a_process_returns_and_free_works) {
  char path[] = "/tmp/mb_test_node_XXXXXX.lua";
  check_write_script(path, "require('moonbeam').receive()\n");
  mb_node *n = check_quiet_node(0);
  mb_pid pid = 0;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  CHECK_EQ_INT(mb_node_stop(n), 0);
  mb_node_free(n);
  unlink(path);
}

/* mb_send / mb_send_named from outside: the value arrives; errors are codes. */
TEST(send_from_c_reaches_processes) {
  char path[] = "/tmp/mb_test_node_XXXXXX.lua";
  check_write_script(path, "local mb = require 'moonbeam'\nmb.register('sink')\n"
        "local a = mb.receive(10000)\nlocal b = mb.receive(10000)\n"
        "mb.halt(a.code + b)\n");
  mb_node *n = check_quiet_node(2);
  mb_pid pid = 0;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  CHECK_EQ_INT(mb_node_start(n), 0);
  mb_pid found = 0;
  for (int i = 0; i < 10000 && mb_whereis(n, "sink", &found) != 0; i++) usleep(1000);
  CHECK_EQ_INT(found, pid);
  lua_State *L = luaL_newstate();
  lua_pushnil(L);
  CHECK_EQ_INT(mb_send(n, pid, L, -1), MB_EBADMSG);           /* nil is not a message */
  lua_pushcfunction(L, luaopen_base);
  CHECK_EQ_INT(mb_send(n, pid, L, -1), MB_EBADMSG);           /* nor is a function */
  lua_pushinteger(L, 1);
  CHECK_EQ_INT(mb_send_named(n, "nobody", L, -1), MB_ENOPROC);
  CHECK_EQ_INT(mb_send(n, pid + 1000000, L, -1), MB_ENOPROC);
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, 40);
  lua_setfield(L, -2, "code");
  CHECK_EQ_INT(mb_send(n, pid, L, -1), 0);
  lua_pushinteger(L, 2);
  CHECK_EQ_INT(mb_send_named(n, "sink", L, -1), 0);
  CHECK_EQ_INT(mb_node_wait(n), 42);
  lua_close(L);
  mb_node_free(n);
  unlink(path);
}

/* Spawn bursts on two schedulers, each burst's children killed before the next: a
 * child's state is a copy of the node's state image (core/stateimage.c) while no
 * closed state's blocks wait on its scheduler's free lists, else one an idle
 * scheduler made ahead (core/statepool.c) while the other may be making more, else
 * a new one (the ASan build has no image). Every child counts the same bytes
 * whichever way (its heap as Lua counts it, and as mb.info counts it once it
 * waits), none is lost. */
TEST(spawn_bursts_take_pooled_and_new_states_alike) {
  CHECK_EQ_INT(check_run_script(
    "local mb = require 'moonbeam'\n"
    "local function spawner(top)\n"
    "  local function child(parent)\n"
    "    local gc = collectgarbage\n"
    "    local mb = require 'moonbeam'\n"
    "    mb.send(parent, gc('count') * 1024)\n"
    "    mb.receive()\n"
    "  end\n"
    "  local mb = require 'moonbeam'\n"
    "  local me, lua_bytes, info_bytes = mb.self(), nil, nil\n"
    "  for round = 1, 25 do\n"
    "    local kids = {}\n"
    "    for i = 1, 40 do kids[i] = mb.spawn_link(child, me) end\n"
    "    for i = 1, 40 do\n"
    "      local b = mb.receive(1000)\n"
    "      assert(b, 'a child did not report')\n"
    "      lua_bytes = lua_bytes or b\n"
    "      assert(b == lua_bytes, ('child counted %s bytes, another %s'):format(b, lua_bytes))\n"
    "    end\n"
    "    for i = 1, 40 do\n"
    "      local m = mb.info(kids[i]).memory\n"
    "      info_bytes = info_bytes or m\n"
    "      assert(m == info_bytes, ('mb.info says %s bytes, for another %s'):format(m, info_bytes))\n"
    "      mb.unlink(kids[i])\n"
    "      mb.exit(kids[i], 'kill')\n"
    "    end\n"
    "    mb.sleep(round % 3)\n"
    "  end\n"
    "  mb.send(top, 'done')\n"
    "end\n"
    "local me = mb.self()\n"
    "mb.link(mb.spawn(spawner, me))\n"
    "mb.link(mb.spawn(spawner, me))\n"
    "for _ = 1, 2 do assert(mb.receive(20000) == 'done') end\n", 2), 0);
}

/* A host's own preload named moonbeam: the moonbeam module of every state, pooled
 * or new (states open the node's moonbeam with the state, not at require). */
static int open_wrapped(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaopen_moonbeam(L);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "wrapped_as");
  return 1;
}

TEST(a_host_preload_named_moonbeam_is_the_module_of_every_state) {
  mb_node_opts o = { 0 };
  o.schedulers = 2;
  o.log_level = "none";
  mb_node *n = mb_node_new(&o);
  CHECK(n != NULL);
  CHECK_EQ_INT(mb_node_preload(n, "moonbeam", open_wrapped), 0);
  CHECK_EQ_INT(check_run_on(n,
    "local mb = require 'moonbeam'\n"
    "assert(mb.wrapped_as == 'moonbeam' and require('moonbeam') == mb)\n"
    "local me = mb.self()\n"
    "for i = 1, 100 do\n"
    "  mb.spawn(function(parent)\n"
    "    local m = require 'moonbeam'\n"
    "    m.send(parent, m.wrapped_as)\n"
    "  end, me)\n"
    "  assert(mb.receive(5000) == 'moonbeam', 'child ' .. i)\n"
    "  if i % 10 == 0 then mb.sleep(1) end   -- the schedulers idle: the pool fills\n"
    "end\n"
    "os.exit(7)\n"), 7);
}

TEST_MAIN(CHECK_CASE(script_ending_normally_gives_status_0), CHECK_CASE(script_raising_gives_status_1),
          CHECK_CASE(halt_gives_its_code), CHECK_CASE(os_exit_is_halt),
          CHECK_CASE(many_processes_report_to_parent), CHECK_CASE(hammer_producers_keep_order),
          CHECK_CASE(ring_passes_token), CHECK_CASE(preemption_on_one_scheduler),
          CHECK_CASE(c_modules_follow_the_opts), CHECK_CASE(spawn_of_missing_module_fails),
          CHECK_CASE(strerror_names_codes),
          CHECK_CASE(stop_while_another_thread_waits_on_a_module_process),
          CHECK_CASE(stop_while_another_thread_waits_on_a_script_process),
          CHECK_CASE(stop_of_a_never_started_node_returns_and_free_works),
          CHECK_CASE(stop_of_a_never_started_node_with_a_process_returns_and_free_works),
          CHECK_CASE(send_from_c_reaches_processes),
          CHECK_CASE(spawn_bursts_take_pooled_and_new_states_alike),
          CHECK_CASE(a_host_preload_named_moonbeam_is_the_module_of_every_state))
