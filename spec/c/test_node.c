/* test_node: the embedding API end to end, and the scheduler hammered from C (this
 * is the suite that runs under ThreadSanitizer). Each test writes a script, runs it
 * as a node's first process and checks the node's exit status: the scripts raise
 * (status 1) when what they observe is wrong. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "check.h"
#include "moonbeam.h"

static int run_script(const char *src, int schedulers) {
  char path[] = "/tmp/mb_test_node_XXXXXX.lua";
  int fd = mkstemps(path, 4);
  CHECK(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs(src, f);
  fclose(f);
  mb_node_opts o = { 0 };
  o.schedulers = schedulers;
  o.log_level = "none";
  mb_node *n = mb_node_new(&o);
  CHECK(n != NULL);
  mb_pid pid;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  CHECK(pid > 0);
  int status = mb_node_run(n);
  mb_node_free(n);
  unlink(path);
  return status;
}

TEST(script_ending_normally_gives_status_0) {
  CHECK_EQ_INT(run_script("local x = 1 + 1", 2), 0);
}

TEST(script_raising_gives_status_1) {
  CHECK_EQ_INT(run_script("error('boom')", 2), 1);
}

TEST(halt_gives_its_code) {
  CHECK_EQ_INT(run_script("require('moonbeam').halt(7)", 2), 7);
}

TEST(os_exit_is_halt) {
  CHECK_EQ_INT(run_script("os.exit(5)", 1), 5);
}

TEST(many_processes_report_to_parent) {
  CHECK_EQ_INT(run_script(
    "local mb = require 'moonbeam'\n"
    "local me = mb.self()\n"
    "for i = 1, 2000 do mb.spawn(function(p, i) require('moonbeam').send(p, i) end, me, i) end\n"
    "local seen, n = {}, 0\n"
    "while n < 2000 do local i = mb.receive(10000); assert(i, 'timeout'); assert(not seen[i]); seen[i] = true; n = n + 1 end\n",
    2), 0);
}

/* Several producers on two schedulers: each producer's messages arrive in order. */
TEST(hammer_producers_keep_order) {
  CHECK_EQ_INT(run_script(
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
  CHECK_EQ_INT(run_script(
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
  CHECK_EQ_INT(run_script(
    "local mb = require 'moonbeam'\n"
    "local looper = mb.spawn(function() while true do end end)\n"
    "local echo = mb.spawn(function() local mb = require 'moonbeam'\n"
    "  local m = mb.receive(); mb.send(m[1], m[2]) end)\n"
    "mb.send(echo, {mb.self(), 'hi'})\n"
    "assert(mb.receive(10000) == 'hi')\n"
    "mb.exit(looper, 'kill')\n",
    1), 0);
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

TEST_MAIN(CHECK_CASE(script_ending_normally_gives_status_0), CHECK_CASE(script_raising_gives_status_1),
          CHECK_CASE(halt_gives_its_code), CHECK_CASE(os_exit_is_halt),
          CHECK_CASE(many_processes_report_to_parent), CHECK_CASE(hammer_producers_keep_order),
          CHECK_CASE(ring_passes_token), CHECK_CASE(preemption_on_one_scheduler),
          CHECK_CASE(spawn_of_missing_module_fails), CHECK_CASE(strerror_names_codes))
