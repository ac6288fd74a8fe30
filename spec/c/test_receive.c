/* test_receive: receiving in C (core/receive.c). The test thread is an external
 * process, as the host's is; Lua processes spawned from scripts send to it, and
 * reply to its calls through a test module `ctest` (a REPLY has no Lua API yet). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <lauxlib.h>
#include <lualib.h>
#include "nodecheck.h"
#include "moonbeam.h"
#include "node.h"
#include "receive.h"
#include "codec.h"
#include "term.h"

static mb_node *N;
static mb_proc *EXT;    /* the test thread's process */
static lua_State *DL;   /* the test thread's state, to encode and decode values */

/* ---- the ctest module, for Lua processes ---- */

static int c_host(lua_State *L) { mb_push_pid(L, atomic_load(&EXT->pid)); return 1; }

/* reply(pid, ref, value): a REPLY to the call ref. */
static int c_reply(lua_State *L) {
  mb_proc *self = mb_proc_of(L);
  mb_pid to = mb_check_pid(L, 1);
  uint64_t ref = (uint64_t)luaL_checkinteger(L, 2);
  mb_buf b;
  if (mb_buf_init(&b, MB_SIG_HDR, 0) != 0) return luaL_error(L, "no memory");
  if (mb_encode(L, 3, &b, "msg", NULL, 0) != MB_ENC_OK) { mb_buf_free(&b); return luaL_error(L, "encode"); }
  mb_send_sig(self->node, to, mb_sig_from_buf(&b, MB_SIG_REPLY, atomic_load(&self->pid), ref));
  return 0;
}

static int c_call_ref_add(lua_State *L) {
  lua_pushinteger(L, mb_call_ref_add(mb_proc_of(L), (uint64_t)luaL_checkinteger(L, 1)));
  return 1;
}

static int is_reply_to(const mb_sig *s, void *ud) {
  return s->kind == MB_SIG_REPLY && s->ref == *(uint64_t *)ud;
}

/* take_reply(ref): the reply's value, taken by a C select in this (Lua) process, or nil. */
static int c_take_reply(lua_State *L) {
  uint64_t ref = (uint64_t)luaL_checkinteger(L, 1);
  mb_sig *s = mb_recv_select(mb_proc_of(L), is_reply_to, &ref);
  if (!s) return 0;
  int rc = mb_decode(L, mb_sig_payload(s), s->len);
  mb_sig_free(s);
  if (rc != 0) return luaL_error(L, "corrupt reply");
  return 1;
}

static int open_ctest(lua_State *L) {
  static const luaL_Reg f[] = { { "host", c_host }, { "reply", c_reply },
    { "call_ref_add", c_call_ref_add }, { "take_reply", c_take_reply }, { NULL, NULL } };
  luaL_newlib(L, f);
  return 1;
}

/* ---- the test thread's side ---- */

static void setup(void) {
  mb_node_opts o = { 0 };
  o.schedulers = 2;
  o.log_level = "none";
  N = mb_node_new(&o);
  CHECK(N != NULL);
  N->keep_alive = 1;
  CHECK_EQ_INT(mb_node_preload(N, "ctest", open_ctest), 0);
  EXT = mb_proc_alloc(N, MB_PK_EXTERNAL);
  CHECK(EXT != NULL);
  atomic_store(&EXT->state, MB_PS_RUNNING);
  EXT->trap_exit = 1;
  CHECK_EQ_INT(mb_node_start(N), 0);
  DL = luaL_newstate();
  CHECK(DL != NULL);
}

static void teardown(void) {
  mb_node_stop(N);
  mb_proc_finish(EXT, mb_sig_static("normal"));
  mb_node_free(N);
  lua_close(DL);
}

static mb_pid spawn(const char *src, int argc, char **argv) {
  char path[] = "/tmp/mb_test_receive_XXXXXX.lua";
  check_write_script(path, src);
  mb_pid pid;
  CHECK_EQ_INT(mb_spawn_script(N, path, argc, argv, &pid), 0);
  unlink(path);   /* loaded by now */
  return pid;
}

static void send_int(mb_pid to, lua_Integer v) {
  lua_pushinteger(DL, v);
  CHECK_EQ_INT(mb_send(N, to, DL, -1), 0);
  lua_pop(DL, 1);
}

static void send_str(mb_pid to, const char *v) {
  lua_pushstring(DL, v);
  CHECK_EQ_INT(mb_send(N, to, DL, -1), 0);
  lua_pop(DL, 1);
}

/* The integer a MSG or REPLY carries, or -1 for another value. */
static lua_Integer int_of(const mb_sig *s) {
  CHECK_EQ_INT(mb_decode(DL, mb_sig_payload(s), s->len), 0);
  lua_Integer v = lua_isinteger(DL, -1) ? lua_tointeger(DL, -1) : -1;
  lua_pop(DL, 1);
  return v;
}

static int is_string(const mb_sig *s, const char *v) {
  return s->kind == MB_SIG_MSG && mb_encoded_is_string(mb_sig_payload(s), s->len, v);
}

static int p_any(const mb_sig *s, void *ud) { (void)ud; return s->kind == MB_SIG_MSG; }
static int p_even(const mb_sig *s, void *ud) { (void)ud; return s->kind == MB_SIG_MSG && int_of(s) % 2 == 0; }
static int p_str(const mb_sig *s, void *ud) { return is_string(s, ud); }
static int p_reply(const mb_sig *s, void *ud) { (void)ud; return s->kind == MB_SIG_REPLY; }

#define MARK_NONE ((int64_t)-1)

/* Select (after the mark, unless MARK_NONE), waiting up to 10 s; NULL on timeout. */
static mb_sig *await_after(int64_t mark, mb_recv_pred pred, void *ud) {
  uint64_t deadline = mb_now_ns() + 10000000000ull;
  for (;;) {
    mb_sig *s = mark == MARK_NONE ? mb_recv_select(EXT, pred, ud)
                                  : mb_recv_select_after(EXT, (mb_recv_mark_t)mark, pred, ud);
    if (s) return s;
    if (mb_now_ns() >= deadline) return NULL;
    mb_recv_wait_external(EXT, deadline);
  }
}

static mb_sig *await(mb_recv_pred pred, void *ud) { return await_after(MARK_NONE, pred, ud); }

/* Take the string message v (waiting for it) and free it. */
static void await_str(const char *v) {
  mb_sig *s = await(p_str, (void *)v);
  CHECK(s != NULL);
  mb_sig_free(s);
}

/* Take the next message after the mark (any, with mark MARK_NONE); its integer. */
static lua_Integer take_int(int64_t mark, mb_recv_pred pred) {
  mb_sig *s = await_after(mark, pred, NULL);
  CHECK(s != NULL);
  lua_Integer v = int_of(s);
  mb_sig_free(s);
  return v;
}

static int64_t queue_len(void) {
  return atomic_load(&EXT->mq_count) - atomic_load(&EXT->mq_ctrl) + atomic_load(&EXT->inbox_len);
}

static void check_queue_empty(void) {
  CHECK_EQ_INT(queue_len(), 0);
  CHECK_EQ_INT(atomic_load(&EXT->queue_bytes), 0);
  CHECK_EQ_INT(EXT->inbox_replies, 0);
  CHECK(EXT->inbox == NULL);
}

static const char *sender_src =
  "local mb = require 'moonbeam'\n"
  "local host = require('ctest').host()\n"
  "local from, to = tonumber((...)), tonumber(select(2, ...))\n"
  "for i = from, to do mb.send(host, i) end\n"
  "mb.send(host, 'done')\n";

static mb_pid spawn_sender(int from, int to) {
  char a[32], b[32];
  snprintf(a, sizeof a, "%d", from);
  snprintf(b, sizeof b, "%d", to);
  char *argv[] = { a, b };
  return spawn(sender_src, 2, argv);
}

/* A predicate takes the messages it accepts; the others keep their order. */
TEST(select_by_predicate_keeps_the_order_of_the_rest) {
  setup();
  spawn_sender(1, 20);
  await_str("done");   /* the same sender's 1..20 are drained before it */
  CHECK_EQ_INT(queue_len(), 20);
  for (int i = 2; i <= 20; i += 2) CHECK_EQ_INT(take_int(MARK_NONE, p_even), i);
  CHECK(mb_recv_select(EXT, p_even, NULL) == NULL);
  for (int i = 1; i <= 20; i += 2) CHECK_EQ_INT(take_int(MARK_NONE, p_any), i);
  check_queue_empty();
  teardown();
}

/* A select after a mark sees only later messages, even when the messages the
 * mark stood on (the inbox's tail then) were taken in between; an older mark
 * still works after a newer one was taken. */
TEST(marker_skips_older_messages_after_selective_removals) {
  setup();
  mb_pid pid = spawn(
    "local mb = require 'moonbeam'\n"
    "local host = require('ctest').host()\n"
    "for i = 1, 10 do mb.send(host, i) end\n"
    "mb.send(host, 'done')\n"
    "local n = 10\n"
    "while mb.receive() == 'more' do\n"
    "  for i = n + 1, n + 5 do mb.send(host, i) end\n"
    "  n = n + 5\n"
    "  mb.send(host, 'done')\n"
    "end\n", 0, NULL);
  await_str("done");
  int64_t m1 = mb_recv_mark(EXT);   /* after 1..10 */
  CHECK(EXT->mark_pos != NULL);
  /* take the mark's own message (10, the tail) and one before it */
  for (int i = 2; i <= 10; i += 2) CHECK_EQ_INT(take_int(MARK_NONE, p_even), i);
  CHECK(EXT->mark_pos != NULL && int_of(EXT->mark_pos) == 9);
  CHECK(mb_recv_select_after(EXT, (mb_recv_mark_t)m1, p_any, NULL) == NULL);
  send_str(pid, "more");
  await_str("done");            /* 11..15 */
  CHECK_EQ_INT(take_int(m1, p_any), 11);
  int64_t m2 = mb_recv_mark(EXT);   /* after 12..15 */
  send_str(pid, "more");
  await_str("done");            /* 16..20 */
  CHECK_EQ_INT(take_int(m2, p_any), 16);    /* the latest mark */
  CHECK_EQ_INT(take_int(m1, p_even), 12);   /* an older one: found by stamps */
  CHECK_EQ_INT(take_int(m1, p_any), 13);
  /* every message before m2 taken: it now stands before the head */
  for (int i = 1; i <= 9; i += 2) CHECK_EQ_INT(take_int(MARK_NONE, p_any), i);
  CHECK_EQ_INT(take_int(MARK_NONE, p_any), 14);
  CHECK_EQ_INT(take_int(MARK_NONE, p_any), 15);
  CHECK(EXT->mark_pos == NULL);
  CHECK_EQ_INT(take_int(m2, p_any), 17);
  CHECK_EQ_INT(take_int(m1, p_any), 18);
  CHECK_EQ_INT(take_int(MARK_NONE, p_any), 19);
  CHECK_EQ_INT(take_int(m2, p_any), 20);
  check_queue_empty();
  send_str(pid, "stop");
  teardown();
}

static const char *replier_src =
  "local mb = require 'moonbeam'\n"
  "local c = require 'ctest'\n"
  "local host = c.host()\n"
  "for i = 1, select('#', ...) do c.reply(host, tonumber((select(i, ...))), 'r' .. (select(i, ...))) end\n"
  "mb.send(host, 'done')\n";

/* The replier's 'done' came: its reply is drained (and dropped), nothing is left. */
static void done_and_no_reply(void) {
  await_str("done");
  CHECK(mb_recv_select(EXT, p_reply, NULL) == NULL);
  check_queue_empty();
}

static void spawn_replier(uint64_t ref) {
  char a[32];
  snprintf(a, sizeof a, "%llu", (unsigned long long)ref);
  char *argv[] = { a };
  spawn(replier_src, 1, argv);
}

/* A reply to a live call ref reaches the inbox, counted, once; the ref is no
 * longer live, so a second reply to it is late and dropped. */
TEST(reply_with_a_live_ref_arrives_once) {
  setup();
  CHECK_EQ_INT(mb_call_ref_add(EXT, 7), 1);
  CHECK_EQ_INT(mb_call_ref_add(EXT, 7), 0);
  spawn_replier(7);
  await_str("done");
  CHECK_EQ_INT(queue_len(), 1);
  CHECK(atomic_load(&EXT->queue_bytes) > 0);
  CHECK_EQ_INT(EXT->inbox_replies, 1);
  CHECK(mb_recv_select(EXT, p_any, NULL) == NULL);   /* not a message */
  uint64_t ref = 7;
  mb_sig *r = await(is_reply_to, &ref);
  CHECK(r != NULL);
  CHECK(r->kind == MB_SIG_REPLY && r->ref == 7);
  CHECK(mb_encoded_is_string(mb_sig_payload(r), r->len, "r7"));
  mb_sig_free(r);
  check_queue_empty();
  CHECK_EQ_INT(mb_call_ref_del(EXT, 7), 0);   /* already ended by its reply */
  spawn_replier(7);                              /* a duplicate */
  done_and_no_reply();
  teardown();
}

/* A reply to a ref removed before it arrives is dropped, never counted. */
TEST(reply_to_a_ref_removed_before_it_arrives_is_dropped) {
  setup();
  CHECK_EQ_INT(mb_call_ref_add(EXT, 9), 1);
  CHECK_EQ_INT(mb_call_ref_del(EXT, 9), 1);
  spawn_replier(9);
  done_and_no_reply();
  teardown();
}

/* Removed while the reply sits in the mailbox, not yet drained: it is never
 * counted while it waits there, and dropped when drained. */
TEST(reply_to_a_ref_removed_while_in_the_mailbox_is_dropped) {
  setup();
  CHECK_EQ_INT(mb_call_ref_add(EXT, 11), 1);
  spawn_replier(11);
  /* wait, without draining, until the reply and 'done' are both pushed */
  for (int i = 0; atomic_load(&EXT->mq_count) < 2; i++) {
    CHECK(i < 10000);
    struct timespec ts = { 0, 1000000 };
    nanosleep(&ts, NULL);
  }
  CHECK_EQ_INT(queue_len(), 1);   /* 'done' only */
  CHECK_EQ_INT(mb_call_ref_del(EXT, 11), 1);
  done_and_no_reply();
  teardown();
}

/* Removed once the reply is queued but not taken (the call timed out after the
 * drain that queued it): the queued reply goes too. */
TEST(reply_queued_but_not_taken_goes_with_its_ref) {
  setup();
  CHECK_EQ_INT(mb_call_ref_add(EXT, 13), 1);
  spawn_replier(13);
  await_str("done");
  CHECK_EQ_INT(EXT->inbox_replies, 1);
  CHECK_EQ_INT(mb_call_ref_del(EXT, 13), 0);
  check_queue_empty();
  teardown();
}

/* Lua's receive never returns a REPLY (with or without a match function), and
 * a C select in a Lua process takes it. */
TEST(lua_receive_skips_replies) {
  setup();
  spawn(
    "local mb = require 'moonbeam'\n"
    "local c = require 'ctest'\n"
    "local me = mb.self()\n"
    "local ok, err = pcall(function()\n"
    "  assert(c.call_ref_add(5) == 1)\n"
    "  c.reply(me, 5, 'answer')\n"
    "  mb.send(me, 'msg')\n"
    "  assert(mb.receive(1000) == 'msg')\n"
    "  assert(mb.receive(0) == nil)\n"
    "  assert(mb.receive(function() return true end, 0) == nil)\n"
    "  assert(mb.info(me).message_queue_len == 1)\n"
    "  assert(c.take_reply(5) == 'answer')\n"
    "  assert(mb.info(me).message_queue_len == 0)\n"
    "end)\n"
    "mb.send(c.host(), ok and 'ok' or tostring(err))\n", 0, NULL);
  mb_sig *s = await(p_any, NULL);
  CHECK(s != NULL);
  if (!is_string(s, "ok")) {
    CHECK_EQ_INT(mb_decode(DL, mb_sig_payload(s), s->len), 0);
    fprintf(stderr, "script: %s\n", lua_tostring(DL, -1));
    CHECK(!"the script failed");
  }
  mb_sig_free(s);
  teardown();
}

/* Many Lua processes reply to calls the test thread makes and cancels at random
 * moments (before the reply, while it is in the mailbox, once it is queued),
 * with duplicate and never-live replies mixed in: every reply to a call still
 * live is taken exactly once, and no other reply is ever seen. */
enum { H_WORKERS = 8, H_CALLS = 20000, H_WINDOW = 64 };
enum { C_NONE, C_LIVE, C_CANCELLED, C_TAKEN };

TEST(hammer_live_and_dead_replies) {
  setup();
  mb_pid workers[H_WORKERS];
  for (int i = 0; i < H_WORKERS; i++)
    workers[i] = spawn(
      "local mb = require 'moonbeam'\n"
      "local c = require 'ctest'\n"
      "local host = c.host()\n"
      "while true do\n"
      "  local ref = mb.receive()\n"
      "  if ref == 'stop' then break end\n"
      "  c.reply(host, ref, ref)\n"
      "  if ref % 3 == 0 then c.reply(host, ref, -ref) end\n"      /* late duplicate */
      "  if ref % 5 == 0 then c.reply(host, ref + 1000000000, 0) end\n"   /* never live */
      "end\n"
      "mb.send(host, 'bye')\n", 0, NULL);
  static uint8_t st[H_CALLS + 1];
  uint64_t live[H_WINDOW];
  int nlive = 0, sent = 0, taken = 0, cancelled = 0, purged = 0;
  unsigned seed = 12345;
  while (sent < H_CALLS || nlive > 0) {
    if (sent < H_CALLS && nlive < H_WINDOW) {
      uint64_t ref = (uint64_t)++sent;
      CHECK_EQ_INT(mb_call_ref_add(EXT, ref), 1);
      st[ref] = C_LIVE;
      live[nlive++] = ref;
      send_int(workers[rand_r(&seed) % H_WORKERS], (lua_Integer)ref);
      if (rand_r(&seed) % 4) continue;
    }
    if (nlive > 0 && rand_r(&seed) % 4 == 0) {   /* a call ends without its reply */
      int k = (int)(rand_r(&seed) % (unsigned)nlive);
      uint64_t ref = live[k];
      live[k] = live[--nlive];
      purged += !mb_call_ref_del(EXT, ref);   /* 0: its reply was queued, now freed */
      st[ref] = C_CANCELLED;
      cancelled++;
      continue;
    }
    int block = rand_r(&seed) % 2;   /* nlive > 0 here: a reply is on its way */
    mb_sig *r = block ? await(p_reply, NULL) : mb_recv_select(EXT, p_reply, NULL);
    if (!r) { CHECK(!block || !"a live reply never came"); continue; }
    CHECK(r->ref >= 1 && r->ref <= H_CALLS);
    CHECK_EQ_INT(st[r->ref], C_LIVE);
    CHECK_EQ_INT(int_of(r), (lua_Integer)r->ref);
    st[r->ref] = C_TAKEN;
    for (int k = 0; k < nlive; k++) if (live[k] == r->ref) { live[k] = live[--nlive]; break; }
    mb_sig_free(r);
    taken++;
  }
  for (int i = 0; i < H_WORKERS; i++) send_str(workers[i], "stop");
  for (int i = 0; i < H_WORKERS; i++) await_str("bye");
  CHECK(mb_recv_select(EXT, p_reply, NULL) == NULL);
  check_queue_empty();
  CHECK_EQ_INT(EXT->calls.n, 0);
  CHECK_EQ_INT(taken + cancelled, H_CALLS);
  CHECK(taken > H_CALLS / 4 && cancelled > H_CALLS / 10);
  printf("hammer: %d taken, %d cancelled (%d of them with the reply queued)\n", taken, cancelled, purged);
  teardown();
}

/* ---- a message handed straight to a waiting Lua process (proc.c, hand_over) ---- */

static mb_sig *numbered(int i) {
  char text[16];
  snprintf(text, sizeof text, "m%d", i);
  mb_sig *s = mb_sig_string(MB_SIG_MSG, 7, 0, text);
  CHECK(s != NULL);
  return s;
}

static int number_of(const mb_sig *s) {
  CHECK_EQ_INT(mb_decode(DL, mb_sig_payload(s), s->len), 0);
  int i = -1;
  CHECK(sscanf(lua_tostring(DL, -1), "m%d", &i) == 1);
  lua_pop(DL, 1);
  return i;
}

/* What a scheduler would do with p, made runnable on a node that never starts:
 * take it off the inject list, where it must be once. */
static void take_back(mb_node *n, mb_proc *p) {
  pthread_mutex_lock(&n->inject_lock);
  CHECK(n->inject_head == p && n->inject_tail == p && p->rq_next == NULL);
  n->inject_head = n->inject_tail = NULL;
  atomic_store(&n->inject_count, 0);
  pthread_mutex_unlock(&n->inject_lock);
}

/* Driven by hand on a node that never starts (nothing runs the struct): the states
 * are set as a scheduler would set them. A message to a waiting Lua process with an
 * empty mailbox goes into its inbox at once and makes it runnable. One that finds
 * the mailbox not empty goes in behind what is there, so the order holds: a signal
 * of its own sender pushed while the process ran (park's window between WAITING
 * and its count check), or one another sender pushed and has not counted yet
 * (the count says 0; the drain stopped before what was queued behind it). A cast
 * goes straight in as a message does; a link, a process with a max_heap, or one
 * running gets the mailbox as before. */
TEST(a_waiting_process_gets_a_message_in_order) {
  mb_node *n = check_quiet_node(1);
  DL = luaL_newstate();
  mb_proc *p = mb_proc_alloc(n, MB_PK_LUA);
  CHECK(p != NULL);

  atomic_store(&p->state, MB_PS_WAITING);
  mb_sig *m1 = numbered(1);
  mb_send_sig_to(p, m1);
  CHECK_EQ_INT(atomic_load(&p->state), MB_PS_RUNNABLE);
  take_back(n, p);
  CHECK(p->inbox == m1 && p->inbox_tail == m1);
  CHECK_EQ_INT(atomic_load(&p->mq_count), 0);
  CHECK_EQ_INT(atomic_load(&p->inbox_len), 1);
  CHECK_EQ_INT(atomic_load(&p->queue_bytes), (int64_t)m1->len);

  atomic_store(&p->state, MB_PS_RUNNING);   /* it runs: the next one is pushed */
  mb_send_sig_to(p, numbered(2));
  CHECK_EQ_INT(atomic_load(&p->mq_count), 1);
  atomic_store(&p->state, MB_PS_WAITING);   /* parked, its count not yet looked at */
  mb_send_sig_to(p, numbered(3));
  CHECK_EQ_INT(atomic_load(&p->state), MB_PS_RUNNABLE);
  take_back(n, p);
  CHECK_EQ_INT(atomic_load(&p->mq_count), 2);   /* behind 2, not before it */
  CHECK(p->inbox == m1 && p->inbox_tail == m1);
  mb_proc_drain(p);

  atomic_store(&p->state, MB_PS_WAITING);
  mb_sig *cast = numbered(4);   /* a cast is only appended too */
  cast->kind = MB_SIG_CAST;
  mb_send_sig_to(p, cast);
  take_back(n, p);
  CHECK(p->inbox_tail == cast);
  CHECK_EQ_INT(atomic_load(&p->mq_count), 0);

  atomic_store(&p->state, MB_PS_WAITING);   /* a link is not: the drain acts on it */
  mb_send_sig_to(p, mb_sig_new(MB_SIG_LINK, 9, 0));
  CHECK_EQ_INT(atomic_load(&p->mq_count), 1);
  CHECK_EQ_INT(atomic_load(&p->state), MB_PS_RUNNABLE);   /* woken as before */
  take_back(n, p);
  mb_proc_drain(p);
  CHECK(mb_pidset_has(&p->links, 9));

  /* another sender between its push and its count */
  atomic_store(&p->state, MB_PS_WAITING);
  mb_sig *other = numbered(5);
  atomic_fetch_add(&p->queue_bytes, (int64_t)other->len);
  mb_mpsc_push(&p->mq, &other->q);
  mb_sig *m6 = numbered(6);
  mb_send_sig_to(p, m6);
  take_back(n, p);
  CHECK_EQ_INT(atomic_load(&p->mq_count), 1);   /* pushed behind, though nothing was counted */
  mb_proc_drain(p);   /* takes 5, and stops as the count says */
  CHECK(p->inbox_tail == other);
  atomic_fetch_add(&p->mq_count, 1);   /* the other sender counts */
  mb_proc_drain(p);
  CHECK(p->inbox_tail == m6);

  p->max_heap = 1 << 20;   /* a bound: the usual way, which checks it */
  atomic_store(&p->state, MB_PS_WAITING);
  mb_send_sig_to(p, numbered(7));
  take_back(n, p);
  CHECK_EQ_INT(atomic_load(&p->mq_count), 1);
  mb_proc_drain(p);

  int want = 1;
  for (mb_sig *m = p->inbox; m; m = m->next) CHECK_EQ_INT(number_of(m), want++);
  CHECK_EQ_INT(want, 8);
  CHECK_EQ_INT(atomic_load(&p->inbox_len), 7);
  CHECK_EQ_INT(atomic_load(&p->mq_count), 0);
  mb_node_free(n);   /* takes what its never-run process holds */
  lua_close(DL);
}

TEST_MAIN(CHECK_CASE(select_by_predicate_keeps_the_order_of_the_rest),
          CHECK_CASE(marker_skips_older_messages_after_selective_removals),
          CHECK_CASE(reply_with_a_live_ref_arrives_once),
          CHECK_CASE(reply_to_a_ref_removed_before_it_arrives_is_dropped),
          CHECK_CASE(reply_to_a_ref_removed_while_in_the_mailbox_is_dropped),
          CHECK_CASE(reply_queued_but_not_taken_goes_with_its_ref),
          CHECK_CASE(lua_receive_skips_replies),
          CHECK_CASE(hammer_live_and_dead_replies),
          CHECK_CASE(a_waiting_process_gets_a_message_in_order))
