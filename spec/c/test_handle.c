/* test_handle: the node's handle table (ids, generations, concurrent use), the
 * resources a process closes at its end (once, before its DOWN goes out),
 * ownership transfer, and handles in the codec. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "nodecheck.h"
#include "moonbeam.h"
#include "node.h"
#include "proc.h"
#include "handle.h"
#include "codec.h"
#include "term.h"

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------ the table */

TEST(ids_are_unique_across_create_close_cycles) {
  mb_node *n = check_quiet_node(1);
  enum { ROUNDS = 200, PER = 300, KEEP = 7 };
  size_t cap = (size_t)ROUNDS * PER, k = 0;
  uint64_t *all = malloc(cap * sizeof *all);
  CHECK(all != NULL);
  for (int r = 0; r < ROUNDS; r++) {
    uint64_t ids[PER];
    for (int i = 0; i < PER; i++) {
      CHECK_EQ_INT(mb_handle_new(n, 1 + i % (MB_HANDLE_KINDS - 1), NULL, 7, &ids[i]), 0);
      CHECK(ids[i] % MB_HANDLE_CAP != 0);
      all[k++] = ids[i];
    }
    /* close all but a few, in an order unlike the creation's */
    for (int i = PER - 1; i >= 0; i--)
      if (i % 50 != KEEP) CHECK_EQ_INT(mb_handle_close(n, ids[i]), 1);
  }
  qsort(all, k, sizeof *all, cmp_u64);
  for (size_t i = 1; i < k; i++) CHECK(all[i] != all[i - 1]);
  free(all);
  mb_node_free(n);
}

TEST(stale_ids_are_rejected) {
  mb_node *n = check_quiet_node(1);
  uint64_t a, b;
  mb_handle_info h;
  CHECK_EQ_INT(mb_handle_new(n, 3, NULL, 11, &a), 0);
  CHECK_EQ_INT(mb_handle_get(n, a, &h), 0);
  CHECK(h.id == a && h.kind == 3 && h.owner == 11 && h.res == NULL);
  CHECK_EQ_INT(mb_handle_close(n, a), 1);
  CHECK_EQ_INT(mb_handle_close(n, a), 0);   /* idempotent */
  CHECK_EQ_INT(mb_handle_get(n, a, &h), MB_ENOTFOUND);
  /* the only closed slot comes back, under a new generation */
  CHECK_EQ_INT(mb_handle_new(n, 4, NULL, 12, &b), 0);
  CHECK(b == a + MB_HANDLE_CAP);
  CHECK_EQ_INT(mb_handle_get(n, a, &h), MB_ENOTFOUND);
  CHECK_EQ_INT(mb_handle_close(n, a), 0);   /* the stale id does not close the new one */
  CHECK_EQ_INT(mb_handle_get(n, b, &h), 0);
  CHECK(h.kind == 4 && h.owner == 12);
  /* ids that never were */
  CHECK_EQ_INT(mb_handle_get(n, 0, &h), MB_ENOTFOUND);
  CHECK_EQ_INT(mb_handle_get(n, MB_HANDLE_CAP, &h), MB_ENOTFOUND);
  CHECK_EQ_INT(mb_handle_get(n, 5000, &h), MB_ENOTFOUND);
  CHECK_EQ_INT(mb_handle_get(n, UINT64_MAX, &h), MB_ENOTFOUND);
  CHECK_EQ_INT(mb_handle_close(n, UINT64_MAX), 0);
  CHECK_EQ_INT(mb_handle_new(n, 0, NULL, 1, &a), MB_EINVAL);
  CHECK_EQ_INT(mb_handle_new(n, MB_HANDLE_KINDS, NULL, 1, &a), MB_EINVAL);
  mb_node_free(n);
}

/* Threads create, look up, close, and look up each other's ids at random: a
 * lookup finds an entry whole (its own kind and owner) or not at all. */
enum { HT_THREADS = 4, HT_ITERS = 20000, HT_SHARED = 64 };
static _Atomic uint64_t shared_ids[HT_SHARED];
typedef struct { mb_node *n; int t; } ham_arg;

static void *hammer(void *arg) {
  ham_arg *a = arg;
  unsigned seed = (unsigned)a->t * 7919u + 1;
  for (int i = 0; i < HT_ITERS; i++) {
    uint64_t id;
    int kind = 1 + a->t, owner = 100 + a->t;
    CHECK_EQ_INT(mb_handle_new(a->n, kind, NULL, (mb_pid)owner, &id), 0);
    mb_handle_info h;
    CHECK_EQ_INT(mb_handle_get(a->n, id, &h), 0);
    CHECK(h.kind == kind && h.owner == (mb_pid)owner);
    atomic_store(&shared_ids[rand_r(&seed) % HT_SHARED], id);
    uint64_t other = atomic_load(&shared_ids[rand_r(&seed) % HT_SHARED]);
    if (other && mb_handle_get(a->n, other, &h) == 0) {
      CHECK(h.id == other && h.kind >= 1 && h.kind <= HT_THREADS);
      CHECK(h.owner == (mb_pid)(99 + h.kind));
    }
    if (other) mb_handle_close(a->n, other);   /* maybe another thread's: one of us wins */
    int closed = mb_handle_close(a->n, id);
    CHECK(closed == 0 || closed == 1);
    CHECK_EQ_INT(mb_handle_get(a->n, id, &h), MB_ENOTFOUND);
  }
  return NULL;
}

TEST(concurrent_create_close_get) {
  mb_node *n = check_quiet_node(1);
  pthread_t th[HT_THREADS];
  ham_arg args[HT_THREADS];
  for (int t = 0; t < HT_THREADS; t++) {
    args[t] = (ham_arg){ n, t };
    CHECK_EQ_INT(pthread_create(&th[t], NULL, hammer, &args[t]), 0);
  }
  for (int t = 0; t < HT_THREADS; t++) pthread_join(th[t], NULL);
  mb_node_free(n);
}

/* ------------------------------------------------------------ resources */

/* A test resource: its close closes its handle, counts, and tells `watcher` (if
 * set) with a message "closed" sent from the closing thread. */
static _Atomic int opened, closed;
static _Atomic mb_pid watcher;
typedef struct { mb_resource r; mb_node *n; uint64_t id; } tres;

static void tres_close(mb_resource *r) {
  tres *t = (tres *)r;
  if (t->id) CHECK_EQ_INT(mb_handle_close(t->n, t->id), 1);
  atomic_fetch_add(&closed, 1);
  mb_pid w = atomic_load(&watcher);
  if (w) mb_send_sig(t->n, w, mb_sig_string(MB_SIG_MSG, 0, 0, "closed"));
  free(t);
}

static tres *tres_new(mb_node *n) {
  tres *t = calloc(1, sizeof *t);
  CHECK(t != NULL);
  t->r.close = tres_close;
  t->n = n;
  atomic_fetch_add(&opened, 1);
  return t;
}

/* probe.open(kind): a handle and its resource, owned by the caller. */
static int p_open(lua_State *L) {
  mb_proc *self = mb_proc_of(L);
  int kind = (int)luaL_checkinteger(L, 1);
  tres *t = tres_new(self->node);
  CHECK_EQ_INT(mb_handle_new(self->node, kind, &t->r, atomic_load(&self->pid), &t->id), 0);
  CHECK_EQ_INT(mb_proc_add_resource(self, &t->r), 0);
  CHECK_EQ_INT(mb_push_handle(L, kind, t->id), 0);
  return 1;
}

/* probe.give(handle, pid): mb_handle_set_owner's result. */
static int p_give(lua_State *L) {
  mb_proc *self = mb_proc_of(L);
  uint64_t id;
  if (!mb_test_handle(L, 1, NULL, &id)) return luaL_typeerror(L, 1, "handle");
  lua_pushinteger(L, mb_handle_set_owner(self->node, id, self, mb_check_pid(L, 2)));
  return 1;
}

/* probe.close(handle): the owner closes it now. */
static int p_close(lua_State *L) {
  mb_proc *self = mb_proc_of(L);
  uint64_t id;
  mb_handle_info h;
  if (!mb_test_handle(L, 1, NULL, &id)) return luaL_typeerror(L, 1, "handle");
  CHECK_EQ_INT(mb_handle_get(self->node, id, &h), 0);
  CHECK(h.owner == atomic_load(&self->pid));
  mb_proc_remove_resource(self, h.res);
  tres_close(h.res);
  return 0;
}

/* probe.owner(handle): the owner's pid, or nil when closed. */
static int p_owner(lua_State *L) {
  uint64_t id;
  mb_handle_info h;
  if (!mb_test_handle(L, 1, NULL, &id)) return luaL_typeerror(L, 1, "handle");
  if (mb_handle_get(mb_proc_of(L)->node, id, &h) != 0) return 0;
  mb_push_pid(L, h.owner);
  return 1;
}

static int p_closed(lua_State *L) { lua_pushinteger(L, atomic_load(&closed)); return 1; }
static int p_opened(lua_State *L) { lua_pushinteger(L, atomic_load(&opened)); return 1; }

static int luaopen_probe(lua_State *L) {
  static const luaL_Reg fns[] = { { "open", p_open }, { "give", p_give }, { "close", p_close },
                                  { "owner", p_owner }, { "closed", p_closed }, { "opened", p_opened },
                                  { NULL, NULL } };
  luaL_newlib(L, fns);
  return 1;
}

/* A node with the probe module, running `src` as its first process. 0 = the script
 * ended normally (its asserts held). */
static int run_script(const char *src, int schedulers) {
  char path[] = "/tmp/mb_test_handle_XXXXXX.lua";
  check_write_script(path, src);
  mb_node *n = check_quiet_node(schedulers);
  CHECK_EQ_INT(mb_node_preload(n, "probe", luaopen_probe), 0);
  mb_pid pid;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  int st = mb_node_run(n);
  mb_node_free(n);
  unlink(path);
  return st;
}

/* An external process for the test thread, and a bounded wait for a signal kind. */
static mb_proc *ext_new(mb_node *n) {
  mb_proc *p = mb_proc_alloc(n, MB_PK_EXTERNAL);
  CHECK(p != NULL);
  atomic_store(&p->state, MB_PS_RUNNING);
  p->trap_exit = 1;
  return p;
}

/* The next signal in p's inbox (any kind), within 10 s. */
static mb_sig *ext_next(mb_proc *p) {
  uint64_t deadline = mb_now_ns() + 10000000000ull;
  for (;;) {
    mb_proc_drain(p);
    mb_sig *m = p->inbox;
    if (m) { mb_proc_take(p, NULL, m); return m; }
    CHECK(mb_now_ns() < deadline);
    pthread_mutex_lock(&p->ext->lock);
    atomic_store(&p->state, MB_PS_WAITING);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&p->state) == MB_PS_WAITING && atomic_load(&p->mq_count) <= 0) {
      uint64_t t = mb_now_ns() + 10000000ull;
      struct timespec ts = { (time_t)(t / 1000000000u), (long)(t % 1000000000u) };
      pthread_cond_timedwait(&p->ext->cond, &p->ext->lock, &ts);
    }
    atomic_store(&p->state, MB_PS_RUNNING);
    pthread_mutex_unlock(&p->ext->lock);
  }
}

static int is_string(mb_sig *m, const char *s) {
  return m->kind == MB_SIG_MSG && mb_encoded_is_string(mb_sig_payload(m), m->len, s);
}

/* The resource of a killed process is closed once, and before its DOWN goes out:
 * the close's message to the monitoring process (the test thread's external one)
 * comes first, from the same thread, so it arrives first. */
TEST(resources_close_before_down_reaches_an_external_process) {
  char path[] = "/tmp/mb_test_handle_XXXXXX.lua";
  check_write_script(path,
    "local mb = require 'moonbeam'\n"
    "local from = mb.receive()\n"
    "require('probe').open(1)\n"
    "mb.send(from, 'attached')\n"
    "mb.receive()\n");
  mb_node *n = check_quiet_node(2);
  n->keep_alive = 1;
  CHECK_EQ_INT(mb_node_preload(n, "probe", luaopen_probe), 0);
  mb_pid pid;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  mb_proc *ext = ext_new(n);
  CHECK_EQ_INT(mb_node_start(n), 0);
  uint64_t ref = mb_node_make_ref(n);
  mb_proc_monitor(ext, pid, ref);
  lua_State *L = luaL_newstate();
  mb_push_pid(L, atomic_load(&ext->pid));
  CHECK_EQ_INT(mb_send(n, pid, L, -1), 0);
  mb_sig *m = ext_next(ext);
  CHECK(is_string(m, "attached"));
  mb_sig_free(m);
  CHECK_EQ_INT(atomic_load(&closed), 0);
  atomic_store(&watcher, atomic_load(&ext->pid));
  mb_sig *kill = mb_sig_string(MB_SIG_EXIT, 0, 0, "kill");
  CHECK(kill != NULL);
  CHECK_EQ_INT(mb_proc_exit_signal(ext, pid, kill), 0);
  m = ext_next(ext);
  CHECK(is_string(m, "closed"));
  mb_sig_free(m);
  CHECK_EQ_INT(atomic_load(&closed), 1);
  mb_sig *down = ext_next(ext);
  CHECK(down->kind == MB_SIG_DOWN && down->ref == ref && down->from == pid);
  CHECK(mb_encoded_is_string(mb_sig_payload(down), down->len, "killed"));
  mb_sig_free(down);
  mb_node_stop(n);
  mb_proc_finish(ext, mb_sig_static("normal"));
  CHECK_EQ_INT(atomic_load(&closed), 1);   /* exactly once */
  CHECK_EQ_INT(atomic_load(&opened), 1);
  lua_close(L);
  mb_node_free(n);
  unlink(path);
}

/* The same seen from Lua: a monitoring process reads the count after its DOWN,
 * for processes that return, raise, or are killed, with several resources each. */
TEST(resources_close_before_down_reaches_a_lua_process) {
  CHECK_EQ_INT(run_script(
    "local mb = require 'moonbeam'\n"
    "local probe = require 'probe'\n"
    "local bodies = {\n"
    "  function(p) local mb = require 'moonbeam'; local probe = require 'probe'\n"
    "    probe.open(1); probe.open(2); probe.open(1); mb.send(p, 'ready'); mb.receive() end,\n"
    "  function(p) local mb = require 'moonbeam'; local probe = require 'probe'\n"
    "    probe.open(1); probe.open(2); probe.open(1); mb.send(p, 'ready'); mb.receive(); error('boom') end,\n"
    "  function(p) local mb = require 'moonbeam'; local probe = require 'probe'\n"
    "    probe.open(1); probe.open(2); probe.open(1); mb.send(p, 'ready'); mb.receive(); mb.receive() end,\n"
    "}\n"
    "for round = 1, 30 do\n"
    "  for k, body in ipairs(bodies) do\n"
    "    local before = probe.closed()\n"
    "    local pid = mb.spawn(body, mb.self())\n"
    "    local ref = mb.monitor(pid)\n"
    "    assert(mb.receive(10000) == 'ready')\n"
    "    assert(probe.closed() == before)\n"
    "    mb.send(pid, 'go')\n"
    "    if k == 3 then mb.exit(pid, 'kill') end\n"
    "    local m = mb.receive(10000)\n"
    "    assert(m[1] == 'DOWN' and m[2] == ref, tostring(m))\n"
    "    assert(probe.closed() == before + 3, 'closed ' .. probe.closed() - before)\n"
    "  end\n"
    "end\n"
    "assert(probe.opened() == probe.closed())\n", 2), 0);
}

/* Hand-offs between external processes driven by the test thread. */
TEST(set_owner_moves_the_resource) {
  mb_node *n = check_quiet_node(1);
  mb_proc *a = ext_new(n), *b = ext_new(n), *c = ext_new(n);
  mb_pid ap = atomic_load(&a->pid), bp = atomic_load(&b->pid), cp = atomic_load(&c->pid);
  tres *t = tres_new(n);
  CHECK_EQ_INT(mb_handle_new(n, 1, &t->r, ap, &t->id), 0);
  CHECK_EQ_INT(mb_proc_add_resource(a, &t->r), 0);
  uint64_t id = t->id;
  mb_handle_info h;

  CHECK_EQ_INT(mb_handle_set_owner(n, id, b, cp), MB_EINVAL);   /* b is not the owner */
  CHECK_EQ_INT(mb_handle_set_owner(n, id, a, ap), 0);           /* to itself: nothing */
  CHECK_EQ_INT(mb_handle_set_owner(n, id, a, bp), 0);
  CHECK_EQ_INT(mb_handle_get(n, id, &h), 0);
  CHECK(h.owner == bp && h.res == &t->r && t->r.proc == b);
  CHECK(a->resources == NULL && b->resources == &t->r);
  CHECK_EQ_INT(mb_handle_set_owner(n, id, a, cp), MB_EINVAL);   /* no longer a's */

  /* to a process that has ended: refused, b keeps it */
  mb_proc *cref = mb_proc_get(n, cp);
  CHECK(cref != NULL);
  mb_proc_finish(c, mb_sig_static("normal"));
  CHECK_EQ_INT(mb_handle_set_owner(n, id, b, cp), MB_ENOPROC);
  CHECK_EQ_INT(mb_handle_set_owner(n, id, b, 999999), MB_ENOPROC);
  /* ending, still referenced: its list refuses the resource */
  tres *u = tres_new(n);
  CHECK_EQ_INT(mb_proc_add_resource(cref, &u->r), MB_ENOPROC);
  CHECK(u->r.proc == NULL);
  tres_close(&u->r);
  mb_proc_unref(cref);
  CHECK_EQ_INT(mb_handle_get(n, id, &h), 0);
  CHECK(h.owner == bp && t->r.proc == b);

  /* the old owner's end leaves it alone; the new owner's end closes it */
  int before = atomic_load(&closed);
  mb_proc_finish(a, mb_sig_static("normal"));
  CHECK_EQ_INT(atomic_load(&closed), before);
  mb_proc_finish(b, mb_sig_static("normal"));
  CHECK_EQ_INT(atomic_load(&closed), before + 1);
  CHECK_EQ_INT(mb_handle_get(n, id, &h), MB_ENOTFOUND);
  CHECK_EQ_INT(mb_handle_set_owner(n, id, b, ap), MB_ENOTFOUND);
  mb_node_free(n);
}

/* A removed resource is not closed at its process's end; removing twice is harmless. */
TEST(removed_resources_are_not_closed) {
  mb_node *n = check_quiet_node(1);
  mb_proc *a = ext_new(n);
  tres *t1 = tres_new(n), *t2 = tres_new(n), *t3 = tres_new(n);
  CHECK_EQ_INT(mb_proc_add_resource(a, &t1->r), 0);
  CHECK_EQ_INT(mb_proc_add_resource(a, &t2->r), 0);
  CHECK_EQ_INT(mb_proc_add_resource(a, &t3->r), 0);
  mb_proc_remove_resource(a, &t2->r);   /* the middle */
  mb_proc_remove_resource(a, &t2->r);
  CHECK(t2->r.proc == NULL && t3->r.next == &t1->r && t1->r.prev == &t3->r);
  mb_proc_finish(a, mb_sig_static("normal"));
  CHECK_EQ_INT(atomic_load(&closed), 2);
  tres_close(&t2->r);
  mb_node_free(n);
}

/* Hand-offs racing the new owner's end (from Lua, on two schedulers): every
 * resource is closed exactly once — by the new owner's end when the hand-off
 * took, else by the giver. */
TEST(set_owner_racing_the_new_owners_end_closes_once) {
  CHECK_EQ_INT(run_script(
    "local mb = require 'moonbeam'\n"
    "local probe = require 'probe'\n"
    "local refs = {}\n"
    "for i = 1, 400 do\n"
    "  local pid = mb.spawn(function(n) for j = 1, n do end end, (i % 13) * 50)\n"
    "  refs[#refs + 1] = mb.monitor(pid)\n"
    "  local h = probe.open(1 + i % 3)\n"
    "  for j = 1, (i % 17) * 1500 do end\n"
    "  local rc = probe.give(h, pid)\n"
    "  if rc ~= 0 then assert(probe.owner(h) == mb.self()); probe.close(h) end\n"
    "end\n"
    "for i = 1, #refs do local m = mb.receive(10000); assert(m and m[1] == 'DOWN') end\n"
    "assert(probe.closed() == 400 and probe.opened() == 400, probe.closed())\n", 2), 0);
}

/* ------------------------------------------------------------ codec */

static void encode_top(lua_State *L, mb_buf *b) {
  CHECK_EQ_INT(mb_buf_init(b, 0, 0), 0);
  CHECK_EQ_INT(mb_encode(L, -1, b, "msg", NULL, 0), MB_ENC_OK);
}

static int l_handle(lua_State *L) {
  if (mb_push_handle(L, (int)luaL_checkinteger(L, 1), (uint64_t)luaL_checkinteger(L, 2)) != 0)
    return luaL_error(L, "bad handle");
  return 1;
}

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  luaL_openlibs(L);
  lua_register(L, "handle", l_handle);
  return L;
}

TEST(handles_round_trip_as_the_same_value) {
  lua_State *L = new_state(), *L2 = new_state();
  CHECK(luaL_dostring(L, "local h = handle(2, 77)\n"
                         "assert(tostring(h) == '#Port<0.77>')\n"
                         "return {h, h, {h}, [h] = 'x', other = handle(3, 78)}") == LUA_OK);
  mb_buf b;
  encode_top(L, &b);
  /* the same state: the same userdata */
  CHECK_EQ_INT(mb_decode(L, b.data, b.len), 0);
  lua_setglobal(L, "copy");
  lua_setglobal(L, "orig");
  CHECK(luaL_dostring(L, "assert(copy ~= orig)\n"
                         "assert(rawequal(copy[1], orig[1]) and rawequal(copy[2], orig[1]))\n"
                         "assert(rawequal(copy[3][1], orig[1]) and copy[orig[1]] == 'x')\n"
                         "assert(rawequal(copy.other, handle(3, 78)))") == LUA_OK);
  /* another state: equal within it, decoded twice */
  CHECK_EQ_INT(mb_decode(L2, b.data, b.len), 0);
  CHECK_EQ_INT(mb_decode(L2, b.data, b.len), 0);
  lua_rawgeti(L2, 1, 1);
  lua_rawgeti(L2, 2, 1);
  CHECK(lua_rawequal(L2, -1, -2));
  int kind = 0;
  uint64_t id = 0;
  CHECK(mb_test_handle(L2, -1, &kind, &id) && kind == 2 && id == 77);
  CHECK(!mb_test_pid(L2, -1, NULL) && !mb_test_ref(L2, -1, NULL));
  mb_push_pid(L2, 77);
  CHECK(!lua_rawequal(L2, -1, -2) && !mb_test_handle(L2, -1, NULL, NULL));
  lua_settop(L2, 0);
  /* an encoded {"shutdown", handle} is a normal reason: the reader skips handles */
  CHECK(luaL_dostring(L, "return {'shutdown', handle(1, 5)}") == LUA_OK);
  mb_buf r;
  encode_top(L, &r);
  CHECK(mb_reason_is_normal(r.data, r.len));
  mb_buf_free(&r);
  mb_buf_free(&b);
  lua_close(L2);
  lua_close(L);
}

TEST(malformed_handle_encodings_are_rejected) {
  lua_State *L = new_state();
  /* header, T_HANDLE (10), varint id, kind byte */
  static const struct { const char *bytes; size_t len; } bad[] = {
    { "\x01\x0a\x05\x00", 4 },              /* kind 0 */
    { "\x01\x0a\x05\x10", 4 },              /* kind 16 */
    { "\x01\x0a\x05\xff", 4 },
    { "\x01\x0a\x00\x01", 4 },              /* id 0 */
    { "\x01\x0a\x80\x80\x40\x01", 6 },      /* id MB_HANDLE_CAP: slot 0 */
    { "\x01\x0a\x05", 3 },                  /* no kind */
    { "\x01\x0a\x85", 3 },                  /* id cut short */
    { "\x01\x0a", 2 },
    { "\x01\x0a\x05\x01\x00", 5 },          /* trailing byte */
    { "\x01\x08\x01\x00\x00\x00\x00\x0a\x05", 9 },   /* in a table, no kind */
  };
  CHECK_EQ_INT(1u << 20, MB_HANDLE_CAP);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK_EQ_INT(mb_decode(L, bad[i].bytes, bad[i].len), -1);
    CHECK_EQ_INT(lua_gettop(L), 0);
  }
  CHECK_EQ_INT(mb_decode(L, "\x01\x0a\x05\x01", 4), 0);
  int kind;
  uint64_t id;
  CHECK(mb_test_handle(L, -1, &kind, &id) && kind == 1 && id == 5);
  /* the same id with another kind while the first is alive in this state: forged */
  CHECK_EQ_INT(mb_decode(L, "\x01\x0a\x05\x02", 4), -1);
  CHECK_EQ_INT(mb_decode(L, "\x01\x08\x02\x00\x00\x00\x00\x0a\x06\x01\x0a\x05\x02", 13), -1);
  CHECK_EQ_INT(lua_gettop(L), 1);
  CHECK_EQ_INT(mb_decode(L, "\x01\x0a\x05\x01", 4), 0);
  CHECK(lua_rawequal(L, -1, -2));
  lua_settop(L, 0);
  lua_close(L);
}

TEST_MAIN(CHECK_CASE(ids_are_unique_across_create_close_cycles), CHECK_CASE(stale_ids_are_rejected),
          CHECK_CASE(concurrent_create_close_get),
          CHECK_CASE(resources_close_before_down_reaches_an_external_process),
          CHECK_CASE(resources_close_before_down_reaches_a_lua_process),
          CHECK_CASE(set_owner_moves_the_resource), CHECK_CASE(removed_resources_are_not_closed),
          CHECK_CASE(set_owner_racing_the_new_owners_end_closes_once),
          CHECK_CASE(handles_round_trip_as_the_same_value),
          CHECK_CASE(malformed_handle_encodings_are_rejected))
