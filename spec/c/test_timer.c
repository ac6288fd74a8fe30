/* test_timer: the deadline heap (order, removal), the cancel map, and send_after
 * timers in a running node: cancelled ones and ones aimed at a pid that ended are
 * freed by their scheduler, and a cancel racing a firing decides exactly once. */
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <lauxlib.h>
#include "check.h"
#include "moonbeam.h"
#include "node.h"
#include "timer.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static mb_timer *mk(uint64_t deadline, uint64_t ref) {
  mb_timer *t = calloc(1, sizeof *t);
  t->deadline = deadline;
  t->ref = ref;
  return t;
}

TEST(heap_pops_in_deadline_order) {
  mb_heap h = { 0 };
  for (int i = 0; i < 5000; i++) CHECK(mb_heap_push(&h, mk(next_rand() % 100000, 0)) == 0);
  uint64_t last = 0;
  int n = 0;
  mb_timer *t;
  while ((t = mb_heap_pop(&h))) {
    CHECK(t->deadline >= last);
    last = t->deadline;
    free(t);
    n++;
  }
  CHECK_EQ_INT(n, 5000);
  mb_heap_free(&h);
}

TEST(heap_remove_keeps_order) {
  mb_heap h = { 0 };
  mb_timer *all[2000];
  for (int i = 0; i < 2000; i++) { all[i] = mk(next_rand() % 1000, 0); mb_heap_push(&h, all[i]); }
  for (int i = 0; i < 2000; i += 3) { mb_heap_remove(&h, all[i]); free(all[i]); all[i] = NULL; }
  mb_heap_remove(&h, all[1]);   /* twice is harmless */
  mb_heap_remove(&h, all[1]);
  free(all[1]);
  uint64_t last = 0;
  int n = 0;
  mb_timer *t;
  while ((t = mb_heap_pop(&h))) { CHECK(t->deadline >= last); last = t->deadline; free(t); n++; }
  CHECK_EQ_INT(n, 2000 - 667 - 1);
  mb_heap_free(&h);
}

TEST(cancel_wins_once) {
  mb_timers *m = mb_timers_new();
  mb_timer *t = mk(5000000000ull, 42);
  t->pid = 7;
  mb_timers_add(m, t);
  CHECK(mb_timers_cancel(m, 42) == t);
  CHECK(mb_timers_cancel(m, 42) == NULL);        /* already cancelled */
  CHECK(mb_timers_cancel_to(m, 7) == NULL);      /* and out of the pid's index */
  CHECK(mb_timers_claim(m, t) == 0);             /* the owner finds it cancelled */
  mb_timers_release(m, t);
  CHECK(mb_timers_cancel(m, 99) == NULL);        /* unknown */
  CHECK_EQ_INT(mb_timers_live(m), 0);
  mb_timers_free(m);
}

TEST(claim_then_cancel_is_false) {
  mb_timers *m = mb_timers_new();
  mb_timer *t = mk(10, 5);
  t->pid = 3;
  mb_timers_add(m, t);
  CHECK(mb_timers_claim(m, t) == 1);
  CHECK(mb_timers_cancel(m, 5) == NULL);
  CHECK(mb_timers_cancel_to(m, 3) == NULL);
  mb_timers_release(m, t);
  mb_timers_free(m);
}

TEST(cancel_frees_the_message_at_once) {
  mb_timers *m = mb_timers_new();
  mb_timer *t = mk(5000000000ull, 77);
  t->msg = mb_sig_string(MB_SIG_MSG, 1, 0, "a message that would otherwise wait for the deadline");
  CHECK(t->msg != NULL);
  mb_timers_add(m, t);
  CHECK(mb_timers_cancel(m, 77) == t);
  CHECK(t->msg == NULL);                   /* freed by the cancel */
  mb_timers_release(m, t);                 /* by the owner: no double free (ASan) */
  mb_timers_free(m);
}

/* Cancelling the timers aimed at a pid takes exactly those still pending: not
 * another pid's in the same bucket, not one aimed at a name, not one fired. */
TEST(cancel_to_takes_the_pids_pending_timers) {
  mb_timers *m = mb_timers_new();
  mb_timer *mine[100], *other = mk(1, 1000), *named = mk(1, 1001);
  other->pid = 7 + 4096;
  named->pid = 0;
  named->name = strdup("somebody");
  mb_timers_add(m, other);
  mb_timers_add(m, named);
  for (int i = 0; i < 100; i++) {
    mine[i] = mk(1, (uint64_t)i + 1);
    mine[i]->pid = 7;
    mb_timers_add(m, mine[i]);
  }
  CHECK(mb_timers_claim(m, mine[10]) == 1);        /* fired */
  CHECK(mb_timers_cancel(m, 21) == mine[20]);      /* cancelled by ref */
  int won = 0;
  for (mb_timer *t = mb_timers_cancel_to(m, 7), *next; t; t = next) {
    next = t->map_next;
    CHECK(t->pid == 7 && t != mine[10] && t != mine[20]);
    CHECK(atomic_load(&t->state) == MB_T_CANCELLED);
    won++;
  }
  CHECK_EQ_INT(won, 98);
  CHECK(mb_timers_cancel_to(m, 7) == NULL);
  CHECK(mb_timers_cancel(m, 50) == NULL);
  CHECK(mb_timers_cancel(m, 1000) == other);
  CHECK(mb_timers_cancel(m, 1001) == named);
  for (int i = 0; i < 100; i++) mb_timers_release(m, mine[i]);
  mb_timers_release(m, other);
  mb_timers_release(m, named);
  CHECK_EQ_INT(mb_timers_live(m), 0);
  mb_timers_free(m);
}

/* ---- in a node ---- */

/* require 'timer_probe'.live(): send_after timers not yet freed, node-wide. */
static int probe_live(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mb_timers_live(mb_proc_of(L)->node->timers));
  return 1;
}

static int open_probe(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, probe_live);
  lua_setfield(L, -2, "live");
  return 1;
}

/* What every script starts with: settle(base, what) waits (bounded) until the
 * count of live timers is back to base, else raises. */
#define PRELUDE \
  "local mb = require 'moonbeam'\n" \
  "local probe = require 'timer_probe'\n" \
  "local HOUR = 3600000\n" \
  "local function settle(base, what)\n" \
  "  for _ = 1, 10000 do\n" \
  "    if probe.live() == base then return end\n" \
  "    mb.sleep(1)\n" \
  "  end\n" \
  "  error(what .. ': ' .. (probe.live() - base) .. ' timers still held')\n" \
  "end\n"

/* Run src as the first process of a node; its exit status (1 if it raised). */
static int run_script(const char *src, int schedulers) {
  char path[] = "/tmp/mb_test_timer_XXXXXX.lua";
  check_write_script(path, src);
  mb_node_opts o = { 0 };
  o.schedulers = schedulers;
  mb_node *n = mb_node_new(&o);
  CHECK(n != NULL);
  CHECK_EQ_INT(mb_node_preload(n, "timer_probe", open_probe), 0);
  mb_pid pid = 0;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  int status = mb_node_run(n);
  mb_node_free(n);
  unlink(path);
  return status;
}

/* Cancelled on the scheduler that set them: out of its heap at once. */
TEST(cancelled_timers_are_freed_at_once) {
  CHECK_EQ_INT(run_script(PRELUDE
    "local N = 200000\n"
    "local base = probe.live()\n"
    "local refs = {}\n"
    "for i = 1, N do refs[i] = mb.send_after(HOUR, mb.self(), i) end\n"
    "assert(probe.live() == base + N, 'not counted')\n"
    "for i = 1, N do assert(mb.cancel_timer(refs[i]), 'not cancelled') end\n"
    "assert(probe.live() == base, (probe.live() - base) .. ' cancelled timers still held')\n",
    1), 0);
}

/* Cancelled by other processes (on either scheduler) while the setter keeps
 * setting: every one is freed by the scheduler that holds it. */
TEST(timers_cancelled_elsewhere_are_freed) {
  CHECK_EQ_INT(run_script(PRELUDE
    "local N, BATCH = 100000, 500\n"
    "local me = mb.self()\n"
    "local function canceller(parent)\n"
    "  local mb = require 'moonbeam'\n"
    "  local won = 0\n"
    "  while true do\n"
    "    local refs = mb.receive()\n"
    "    if refs == 'done' then break end\n"
    "    for i = 1, #refs do if mb.cancel_timer(refs[i]) then won = won + 1 end end\n"
    "  end\n"
    "  mb.send(parent, won)\n"
    "end\n"
    "local cs = { mb.spawn(canceller, me), mb.spawn(canceller, me) }\n"
    "local base = probe.live()\n"
    "for b = 1, N // BATCH do\n"
    "  local refs = {}\n"
    "  for i = 1, BATCH do refs[i] = mb.send_after(HOUR, me, 'never') end\n"
    "  mb.send(cs[b % 2 + 1], refs)\n"
    "end\n"
    "mb.send(cs[1], 'done'); mb.send(cs[2], 'done')\n"
    "local won = mb.receive(60000) + mb.receive(60000)\n"
    "assert(won == N, 'cancelled ' .. won)\n"
    "settle(base, 'cancelled elsewhere')\n"
    "assert(mb.receive(0) == nil, 'a cancelled timer fired')\n",
    2), 0);
}

/* A timer aimed at a pid goes when that pid ends (SPEC 1), message and all; one
 * set at a pid that already ended never waits; one aimed at a name stays. */
TEST(timers_aimed_at_a_pid_go_when_it_ends) {
  CHECK_EQ_INT(run_script(PRELUDE
    "local N = 50000\n"
    "local target, mref = mb.spawn_monitor(function(parent)\n"
    "  local mb = require 'moonbeam'; mb.register('target'); mb.send(parent, 'ready'); mb.receive() end,\n"
    "  mb.self())\n"
    "assert(mb.receive(10000) == 'ready')\n"
    "local base = probe.live()\n"
    "local refs = {}\n"
    "for i = 1, N do refs[i] = mb.send_after(HOUR, target, string.rep('x', 100)) end\n"
    "local named = mb.send_after(HOUR, 'target', 'by name')\n"
    "assert(probe.live() == base + N + 1, 'not counted')\n"
    "mb.exit(target, 'kill')\n"
    "mb.receive(function(m) return m[1] == 'DOWN' and m[2] == mref end, 10000)\n"
    "settle(base + 1, 'aimed at an ended pid')\n"
    "for i = 1, 100 do assert(mb.cancel_timer(refs[i]) == false, 'still cancellable') end\n"
    "for i = 1, 1000 do mb.send_after(HOUR, target, i) end\n"
    "assert(probe.live() == base + 1, 'set at an ended pid and kept')\n"
    "assert(type(mb.cancel_timer(named)) == 'number', 'the named timer went too')\n"
    "settle(base, 'the named timer')\n",
    2), 0);
}

/* Processes that end while another keeps setting timers at them: whichever
 * comes first, no timer aimed at an ended pid is left. */
TEST(timers_set_at_a_pid_while_it_ends_are_not_kept) {
  CHECK_EQ_INT(run_script(PRELUDE
    "local M, PER = 300, 100\n"
    "local me = mb.self()\n"
    "local base = probe.live()\n"
    "local setter = mb.spawn(function(parent, per)\n"
    "  local mb = require 'moonbeam'\n"
    "  while true do\n"
    "    local t = mb.receive()\n"
    "    if t == 'done' then break end\n"
    "    mb.send(t, 'go')\n"
    "    for i = 1, 2 * per do mb.send_after(3600000, t, i) end\n"
    "  end\n"
    "  mb.send(parent, 'set')\n"
    "end, me, PER)\n"
    "local mons = {}\n"
    "for k = 1, M do\n"
    "  local t, r = mb.spawn_monitor(function(per)\n"
    "    local mb = require 'moonbeam'; mb.receive(); for _ = 1, per do mb.self() end end, PER)\n"
    "  mons[r] = true\n"
    "  mb.send(setter, t)\n"
    "end\n"
    "mb.send(setter, 'done')\n"
    "assert(mb.receive(function(m) return m == 'set' end, 60000), 'setter')\n"
    "local downs = 0\n"
    "while downs < M do\n"
    "  local m = mb.receive(function(m) return type(m) == 'table' and m[1] == 'DOWN' end, 60000)\n"
    "  assert(m and mons[m[2]], 'DOWN')\n"
    "  downs = downs + 1\n"
    "end\n"
    "settle(base, 'aimed at ended pids')\n",
    2), 0);
}

/* Short timers cancelled at random by another process while they fire: each is
 * delivered exactly once or cancelled with the time that was left, never both,
 * never neither. Every 100th timer is an hour long and always cancelled, so the
 * cancel path runs however the race goes. Run under ThreadSanitizer too. */
TEST(hammer_cancel_racing_fire) {
  CHECK_EQ_INT(run_script(PRELUDE
    "local N = 20000\n"
    "local me = mb.self()\n"
    "local base = probe.live()\n"
    "local canceller = mb.spawn(function(parent)\n"
    "  local mb = require 'moonbeam'\n"
    "  while true do\n"
    "    local m = mb.receive()\n"
    "    if m == 'done' then break end\n"
    "    for _, e in ipairs(m) do\n"
    "      local tried = e[1] % 100 == 0 or math.random() < 0.6\n"
    "      mb.send(parent, { 'c', e[1], tried and mb.cancel_timer(e[2]) })\n"
    "    end\n"
    "  end\n"
    "end, me)\n"
    "mb.spawn(function(parent, canceller, n)\n"
    "  local mb = require 'moonbeam'\n"
    "  local batch = {}\n"
    "  for i = 1, n do\n"
    "    local ms = i % 100 == 0 and 3600000 or math.random(0, 3)\n"
    "    batch[#batch + 1] = { i, mb.send_after(ms, parent, { 't', i }) }\n"
    "    if #batch == 8 or i == n then mb.send(canceller, batch); batch = {} end\n"
    "  end\n"
    "  mb.send(canceller, 'done')\n"
    "end, me, canceller, N)\n"
    "local got, left, reported = {}, {}, 0\n"
    "local function take(m)\n"
    "  if m[1] == 't' then\n"
    "    assert(not got[m[2]], 'delivered twice')\n"
    "    got[m[2]] = true\n"
    "  else\n"
    "    reported = reported + 1\n"
    "    left[m[2]] = m[3]\n"
    "  end\n"
    "end\n"
    "while reported < N do take(assert(mb.receive(60000), 'no report')) end\n"
    "for i = 1, N do\n"
    "  if i % 100 == 0 then\n"
    "    assert(type(left[i]) == 'number' and left[i] > 3, 'an hour-long timer was not cancelled')\n"
    "  elseif left[i] then\n"
    "    assert(type(left[i]) == 'number' and left[i] >= 0 and left[i] <= 3, 'left ' .. tostring(left[i]))\n"
    "  else\n"
    "    while not got[i] do take(assert(mb.receive(60000), 'lost')) end\n"
    "  end\n"
    "end\n"
    "settle(base, 'hammer')\n"
    "while true do local m = mb.receive(0); if not m then break end; take(m) end\n"
    "for i = 1, N do assert(not (got[i] and left[i]), 'delivered and cancelled') end\n",
    2), 0);
}

TEST_MAIN(CHECK_CASE(heap_pops_in_deadline_order), CHECK_CASE(heap_remove_keeps_order),
          CHECK_CASE(cancel_wins_once), CHECK_CASE(claim_then_cancel_is_false),
          CHECK_CASE(cancel_frees_the_message_at_once), CHECK_CASE(cancel_to_takes_the_pids_pending_timers),
          CHECK_CASE(cancelled_timers_are_freed_at_once), CHECK_CASE(timers_cancelled_elsewhere_are_freed),
          CHECK_CASE(timers_aimed_at_a_pid_go_when_it_ends),
          CHECK_CASE(timers_set_at_a_pid_while_it_ends_are_not_kept), CHECK_CASE(hammer_cancel_racing_fire))
