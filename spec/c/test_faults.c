/* test_faults: signals the protocol must not lose when memory runs out. malloc is
 * wrapped (see spec/CMakeLists.txt): while a size is armed, every malloc of exactly
 * that size fails, on any thread. Scripts arm it through a preloaded `faults` module
 * at the moment that matters, so the rest of the node is untouched. */
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <lauxlib.h>
#include "nodecheck.h"
#include "proc.h"

void *__real_malloc(size_t n);
void *__wrap_malloc(size_t n);

static _Atomic size_t fail_size;   /* 0: nothing fails */

void *__wrap_malloc(size_t n) {
  size_t f = atomic_load_explicit(&fail_size, memory_order_relaxed);
  if (f && n == f) return NULL;
  return __real_malloc(n);
}

/* faults.fail(payload_bytes): mallocs of a signal block with that payload fail;
 * faults.fail_buffer(): mallocs of a fresh encoding buffer (a signal header and
 * 64 bytes) fail; faults.clear(). */
static int f_fail(lua_State *L) {
  atomic_store(&fail_size, MB_SIG_HDR + (size_t)luaL_checkinteger(L, 1));
  return 0;
}
static int f_fail_buffer(lua_State *L) {
  (void)L;
  atomic_store(&fail_size, MB_SIG_HDR + 64);
  return 0;
}
static int f_clear(lua_State *L) {
  (void)L;
  atomic_store(&fail_size, 0);
  return 0;
}
static int open_faults(lua_State *L) {
  static const luaL_Reg fns[] = { { "fail", f_fail }, { "fail_buffer", f_fail_buffer },
                                  { "clear", f_clear }, { NULL, NULL } };
  luaL_newlib(L, fns);
  return 1;
}

static int run_script(const char *src, int schedulers) {
  mb_node *n = check_quiet_node(schedulers);
  CHECK_EQ_INT(mb_node_preload(n, "faults", open_faults), 0);
  int status = check_run_on(n, src);
  atomic_store(&fail_size, 0);
  return status;
}

/* "kill" makes its target end with "killed": a reason the target used to allocate
 * while draining, and dropped the kill when it could not. */
TEST(a_kill_is_not_lost_when_its_reason_cannot_be_allocated) {
  CHECK_EQ_INT(run_script(
    "local mb = require 'moonbeam'\n"
    "local faults = require 'faults'\n"
    "local target = mb.spawn(function() require('moonbeam').receive() end)\n"
    "local ref = mb.monitor(target)\n"
    "mb.send(mb.self(), 'warm')\n"          /* this thread's scratch buffer exists */
    "assert(mb.receive(1000) == 'warm')\n"
    "faults.fail_buffer()\n"
    "mb.exit(target, 'kill')\n"
    "local d = mb.receive(function(m) return m[1] == 'DOWN' and m[2] == ref end, 5000)\n"
    "faults.clear()\n"
    "if not d then mb.exit(target, 'kill') end\n"
    "assert(d, 'the kill was lost')\n"
    "assert(d[4] == 'killed', tostring(d[4]))\n",
    2), 0);
}

/* A process's DOWN (and EXIT) carry its reason: they used to be copies of it, each
 * a malloc of the reason's size, and a failed copy was a lost DOWN. */
TEST(a_down_is_not_lost_when_its_reason_cannot_be_copied) {
  CHECK_EQ_INT(run_script(
    "local mb = require 'moonbeam'\n"
    "local faults = require 'faults'\n"
    "local big = string.rep('r', 1000)\n"   /* encoded: header, tag, 2-byte length, bytes */
    "local victim = mb.spawn(function(big) local mb = require 'moonbeam'\n"
    "  mb.receive(); error(big, 0) end, big)\n"
    "local ref = mb.monitor(victim)\n"
    "faults.fail(1 + 1 + 2 + #big)\n"
    "mb.send(victim, 'go')\n"
    "local d = mb.receive(function(m) return m[1] == 'DOWN' and m[2] == ref end, 5000)\n"
    "faults.clear()\n"
    "assert(d, 'the DOWN was lost')\n"
    "assert(d[4] == big)\n",
    2), 0);
}

/* A crash whose reason cannot be encoded nor even spelled out ends its process with
 * the constant reason "error"; the node used to abort() there. */
TEST(a_crash_with_no_memory_for_its_reason_ends_only_its_process) {
  CHECK_EQ_INT(run_script(
    "local mb = require 'moonbeam'\n"
    "local faults = require 'faults'\n"
    "local victim = mb.spawn(function() local mb = require 'moonbeam'\n"
    "  mb.receive(); error('boom', 0) end)\n"
    "local ref = mb.monitor(victim)\n"
    "faults.fail_buffer()\n"
    "mb.send(victim, 'go')\n"
    "local d = mb.receive(function(m) return m[1] == 'DOWN' and m[2] == ref end, 5000)\n"
    "faults.clear()\n"
    "assert(d, 'no DOWN')\n"
    "assert(d[4] == 'error', tostring(d[4]))\n",
    2), 0);
}

TEST_MAIN(CHECK_CASE(a_kill_is_not_lost_when_its_reason_cannot_be_allocated),
          CHECK_CASE(a_down_is_not_lost_when_its_reason_cannot_be_copied),
          CHECK_CASE(a_crash_with_no_memory_for_its_reason_ends_only_its_process))
