/* test_lifecycle: a node's life from the embedder's side — start, stop, halt, free
 * and the races between them (the node's state only moves forward; joining its
 * threads is the only gate to freeing it; stopping reaches a scheduler that runs Lua). */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <lauxlib.h>
#include "nodecheck.h"
#include "moonbeam.h"
#include "node.h"
#include "proc.h"
#include "testhook.h"

static void pause_ms(int ms) {
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
  nanosleep(&ts, NULL);
}

/* Poll (1 ms steps, at most 10 s) until the node says it is done. */
static void wait_done(mb_node *n) {
  for (int i = 0; i < 10000; i++) {
    pthread_mutex_lock(&n->life_lock);
    int done = n->done;
    pthread_mutex_unlock(&n->life_lock);
    if (done) return;
    pause_ms(1);
  }
  CHECK(!"the node did not end within 10 s");
}

/* Run src on a started node until the node says it is done, then free it without
 * waiting: free must join the threads first. */
static void free_after_its_end(const char *src) {
  char path[] = "/tmp/mb_test_life_XXXXXX.lua";
  check_write_script(path, src);
  for (int round = 0; round < 20; round++) {
    mb_node *n = check_quiet_node(2);
    mb_pid pid;
    CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
    CHECK_EQ_INT(mb_node_start(n), 0);
    wait_done(n);
    mb_node_free(n);
  }
  unlink(path);
}

/* A node whose last process ended by itself (nobody waited) is freed (under ASan
 * this was a use-after-free in sched_main). */
TEST(free_joins_a_node_that_stopped_by_itself) {
  free_after_its_end("local x = 0\nfor i = 1, 1000 do x = x + i end\n");
}

/* The same after halt. */
TEST(free_joins_a_node_that_halted) {
  free_after_its_end("require('moonbeam').halt(3)\n");
}

/* Stop races the end of the last process: stop must never move the state back
 * from STOPPED to STOPPING (the ticker then parked forever and stop hung). */
TEST(stop_racing_the_last_process_end_returns) {
  char path[] = "/tmp/mb_test_life_XXXXXX.lua";
  check_write_script(path, "local x = 1\n");
  for (int round = 0; round < 300; round++) {
    mb_node *n = check_quiet_node(2);
    mb_pid pid;
    CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
    CHECK_EQ_INT(mb_node_start(n), 0);
    /* vary where stop lands relative to the process's end */
    for (volatile int spin = 0; spin < (round % 30) * 2000; spin++) {}
    int st = mb_node_stop(n);
    CHECK(st == 0 || st == 1);   /* 1: stop killed the first process before it ended */
    CHECK_EQ_INT(atomic_load(&n->state), MB_NODE_STOPPED);
    CHECK_EQ_INT(mb_node_stop(n), st);
    mb_node_free(n);
  }
  unlink(path);
}

/* halt while busy loops run on both schedulers: the node ends (it used to run on
 * forever once the ticker had left, since nothing stopped the running loop).
 * Not under TSan: it defers asynchronous signals while pure Lua runs. */
TEST(halt_while_busy_loops_run_ends_the_node) {
#if defined(__SANITIZE_THREAD__)
  printf("skip halt_while_busy_loops_run_ends_the_node: TSan defers signals\n");
  return;
#endif
  char path[] = "/tmp/mb_test_life_XXXXXX.lua";
  check_write_script(path,
    "local mb = require 'moonbeam'\n"
    "local me = mb.self()\n"
    "for i = 1, 50 do mb.spawn(function(p) require('moonbeam').send(p, 1); while true do end end, me) end\n"
    "for i = 1, 50 do assert(mb.receive(10000)) end\n"
    "mb.halt(4)\n");
  for (int round = 0; round < 5; round++) {
    mb_node *n = check_quiet_node(2);
    mb_pid pid;
    CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
    CHECK_EQ_INT(mb_node_run(n), 4);
    mb_node_free(n);
  }
  unlink(path);
}

/* Stop while busy loops run (the embedder's stop, not halt). */
TEST(stop_while_busy_loops_run_returns) {
#if defined(__SANITIZE_THREAD__)
  printf("skip stop_while_busy_loops_run_returns: TSan defers signals\n");
  return;
#endif
  char path[] = "/tmp/mb_test_life_XXXXXX.lua";
  check_write_script(path,
    "local mb = require 'moonbeam'\n"
    "for i = 1, 20 do mb.spawn(function() while true do end end) end\n"
    "mb.register('ready')\n"
    "while true do end\n");
  mb_node *n = check_quiet_node(2);
  mb_pid pid;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  CHECK_EQ_INT(mb_node_start(n), 0);
  mb_pid r = 0;
  for (int i = 0; i < 10000 && mb_whereis(n, "ready", &r) != 0; i++) pause_ms(1);
  CHECK(r == pid);
  mb_node_stop(n);
  CHECK_EQ_INT(atomic_load(&n->state), MB_NODE_STOPPED);
  mb_node_free(n);
  unlink(path);
}

/* A start that fails (here: no file descriptor left for the I/O loop) leaves a
 * stopped node that stop, wait and free handle, not a RUNNING node without threads. */
TEST(failed_start_leaves_a_stopped_node) {
  mb_node *n = check_quiet_node(2);
  int next_fd = dup(0);
  CHECK(next_fd >= 0);
  close(next_fd);
  struct rlimit old, low;
  CHECK_EQ_INT(getrlimit(RLIMIT_NOFILE, &old), 0);
  low = old;
  low.rlim_cur = (rlim_t)next_fd;
  CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &low), 0);
  int rc = mb_node_start(n);
  CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &old), 0);
  CHECK(rc < 0);
  CHECK_EQ_INT(atomic_load(&n->state), MB_NODE_STOPPED);
  CHECK_EQ_INT(mb_node_start(n), MB_ESTATE);
  mb_node_stop(n);
  mb_node_wait(n);
  mb_node_free(n);
}

/* An embedder that blocks the preemption signal in its threads (scheduler threads
 * inherit the mask) still gets preemption: the schedulers unblock it. */
TEST(preemption_survives_a_blocked_signal) {
#if defined(__SANITIZE_THREAD__)
  printf("skip preemption_survives_a_blocked_signal: TSan defers signals\n");
  return;
#endif
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGRTMIN + 3);
  CHECK_EQ_INT(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
  CHECK_EQ_INT(check_run_script(check_preemption_script, 1), 0);
}

/* Hammer the ticker's park/wake handshake: on one scheduler, a busy loop starts
 * while the ticker is about to park; another process must still get its turn.
 * A lost wake-up leaves the ticker parked and this test hangs (bounded by alarm). */
TEST(ticker_never_misses_a_busy_slice) {
#if defined(__SANITIZE_THREAD__)
  printf("skip ticker_never_misses_a_busy_slice: TSan defers signals\n");
  return;
#endif
  CHECK_EQ_INT(check_run_script(
    "local mb = require 'moonbeam'\n"
    "local me = mb.self()\n"
    "for round = 1, 300 do\n"
    "  mb.sleep(round % 3)\n"
    "  local looper = mb.spawn(function() while true do end end)\n"
    "  mb.spawn(function(p) require('moonbeam').send(p, 'turn') end, me)\n"
    "  assert(mb.receive(10000) == 'turn')\n"
    "  mb.exit(looper, 'kill')\n"
    "end\n",
    1), 0);
}

/* ---- past races, widened by a pause at their point (testhook.h) ---- */

static const char *pause_at;          /* the point to pause at, once */
static _Atomic int paused;
static int pause_ms_each;

static void pause_once(const char *where) {
  int expected = 0;
  if (strcmp(where, pause_at) != 0 || !atomic_compare_exchange_strong(&paused, &expected, 1)) return;
  pause_ms(pause_ms_each);
  atomic_store(&paused, 2);
}

/* A process ending stays registered for 50 ms after it turned dead, inside the
 * registry's lock: whereis must never answer with the dead pid (before, the name
 * outlived DEAD, and a restarted server could not take its name back). */
TEST(whereis_never_names_a_dead_process) {
  char path[] = "/tmp/mb_test_life_XXXXXX.lua";
  check_write_script(path,
    "local mb = require 'moonbeam'\n"
    "mb.register('svc')\n"
    "mb.receive()\n");
  mb_node *n = check_quiet_node(2);
  mb_pid pid, w = 0;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  CHECK_EQ_INT(mb_node_start(n), 0);
  for (int i = 0; i < 10000 && mb_whereis(n, "svc", &w) != 0; i++) pause_ms(1);
  CHECK(w == pid);
  pause_at = "registry_end";
  pause_ms_each = 50;
  atomic_store(&mb_test_pause, pause_once);
  lua_State *L = luaL_newstate();
  lua_pushinteger(L, 1);
  CHECK_EQ_INT(mb_send(n, pid, L, -1), 0);
  int stale = 0;
  while (mb_whereis(n, "svc", &w) == 0) {
    mb_proc *p = mb_proc_get(n, w);
    mb_pid again = 0;
    /* it may end between the two calls; once seen dead, its name must be gone */
    if (!p && mb_whereis(n, "svc", &again) == 0 && again == w) stale++;
    if (p) mb_proc_unref(p);
  }
  atomic_store(&mb_test_pause, (mb_test_pause_fn)NULL);
  CHECK_EQ_INT(stale, 0);
  CHECK_EQ_INT(atomic_load(&paused), 2);   /* the pause did happen */
  lua_close(L);
  mb_node_wait(n);
  mb_node_free(n);
  unlink(path);
}

/* The ticker has decided to park (nothing runs) and is held there 60 ms while a
 * busy loop starts: it must not then park for good, or the loop is never
 * preempted and the other process on the scheduler starves. */
TEST(ticker_parking_as_a_loop_starts_still_preempts_it) {
#if defined(__SANITIZE_THREAD__)
  printf("skip ticker_parking_as_a_loop_starts_still_preempts_it: TSan defers signals\n");
  return;
#endif
  pause_at = "ticker_idle_park";
  pause_ms_each = 60;
  atomic_store(&paused, 0);
  atomic_store(&mb_test_pause, pause_once);
  CHECK_EQ_INT(check_run_script(
    "local mb = require 'moonbeam'\n"
    "mb.sleep(30)\n"   /* idle: the ticker heads for its park and is held there */
    "local looper = mb.spawn(function() while true do end end)\n"
    "local echo = mb.spawn(function() local mb = require 'moonbeam'\n"
    "  local m = mb.receive(); mb.send(m[1], m[2]) end)\n"
    "mb.send(echo, {mb.self(), 'hi'})\n"
    "assert(mb.receive(10000) == 'hi')\n"
    "mb.exit(looper, 'kill')\n",
    1), 0);
  atomic_store(&mb_test_pause, (mb_test_pause_fn)NULL);
  CHECK_EQ_INT(atomic_load(&paused), 2);
}

TEST_MAIN(CHECK_CASE(free_joins_a_node_that_stopped_by_itself), CHECK_CASE(free_joins_a_node_that_halted),
          CHECK_CASE(stop_racing_the_last_process_end_returns),
          CHECK_CASE(halt_while_busy_loops_run_ends_the_node),
          CHECK_CASE(stop_while_busy_loops_run_returns),
          CHECK_CASE(failed_start_leaves_a_stopped_node),
          CHECK_CASE(preemption_survives_a_blocked_signal),
          CHECK_CASE(ticker_never_misses_a_busy_slice),
          CHECK_CASE(whereis_never_names_a_dead_process),
          CHECK_CASE(ticker_parking_as_a_loop_starts_still_preempts_it))
