/* tcp: the `moonbeam.tcp` Lua module (SPEC section 4) and the methods of its
 * handles. The sockets are the core's (core/tcp.c); here are the arguments, the
 * waits and the errors. A blocking call registers the process as a waiter under
 * a fresh live ref, yields with a continuation (so it works inside pcall and
 * coroutines), and looks again when the I/O thread's REPLY with that ref wakes
 * it. Errors are nil, name; only misuse (bad arguments) raises. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "luaface.h"
#include "clock.h"
#include "receive.h"
#include "scheduler.h"
#include "tcp.h"
#include "term.h"
#include "wait.h"

#define LISTEN_BACKLOG 4096   /* the kernel caps it at net.core.somaxconn */

static mb_proc *self_proc(lua_State *L) {
  mb_proc *p = mb_proc_of(L);
  if (!p) luaL_error(L, "moonbeam.tcp: not inside a moonbeam process");
  return p;
}

static int fail(lua_State *L, int err) {
  char buf[32];
  lua_pushnil(L);
  lua_pushstring(L, mb_tcp_strerror(err, buf));
  return 2;
}

/* The socket of the handle at 1, held; raises if the value is not a handle of
 * that kind. NULL (and nil, "closed" pushed) once it is closed. */
static void check_kind(lua_State *L, int kind);
static mb_sock *sock_at(lua_State *L, mb_node *n, int kind) {
  check_kind(L, kind);
  return mb_tcp_hold(n, mb_handle_id_at(L, 1), kind);
}

/* ---- waiting for the I/O thread ----
 * A wait's state lives on the stack at 4..6 (arguments at 1..3): its ref (0:
 * none live), the receive mark taken before it, the deadline (0: none). */
typedef struct owait { uint64_t ref; mb_recv_mark_t mark; uint64_t deadline; } owait;

static void save(lua_State *L, const owait *w) {
  lua_settop(L, 3);
  lua_pushinteger(L, (lua_Integer)w->ref);
  lua_pushinteger(L, (lua_Integer)w->mark);
  lua_pushinteger(L, (lua_Integer)w->deadline);
}

static void load(lua_State *L, owait *w) {
  w->ref = (uint64_t)lua_tointeger(L, 4);
  w->mark = (mb_recv_mark_t)lua_tointeger(L, 5);
  w->deadline = (uint64_t)lua_tointeger(L, 6);
}

static int is_wake(const mb_sig *s, void *ud) { return s->kind == MB_SIG_REPLY && s->ref == *(uint64_t *)ud; }

/* A fresh live ref to be woken with (mark first: the wake comes after it). */
static int arm(mb_proc *p, owait *w) {
  w->mark = mb_recv_mark(p);
  w->ref = mb_node_make_ref(p->node);
  return mb_call_ref_add(p, w->ref) < 0 ? -1 : 0;
}

/* The wake, if it came (taken off the inbox; the ref is spent), or NULL. */
static mb_sig *woken(mb_proc *p, owait *w) {
  if (!w->ref) return NULL;
  mb_sig *s = mb_recv_select_after(p, w->mark, is_wake, &w->ref);
  if (s) w->ref = 0;
  return s;
}

/* The wait is over without its wake: a late one is dropped. */
static void disarm(mb_proc *p, owait *w) {
  if (w->ref) mb_call_ref_del(p, w->ref);
  w->ref = 0;
}

/* Waits on a socket (recv, accept, a send over the mark) are numbered per
 * process: the socket's waiter is a WAKE signal carrying the number, and
 * draining it sets io_woken only if that is still the current wait. No live
 * ref, no receive mark, nothing queued: a late wake is dropped at drain. */
static void io_arm(mb_proc *p, owait *w) {
  w->ref = p->io_wait = ++p->io_waits;
  p->io_woken = 0;
}

static int io_woken(mb_proc *p, owait *w) {
  if (!w->ref) return 0;
  mb_proc_drain(p);
  if (!p->io_woken || p->io_wait != w->ref) return 0;
  p->io_woken = 0;
  p->io_wait = w->ref = 0;
  return 1;
}

static void io_disarm(mb_proc *p, owait *w) {
  if (w->ref && p->io_wait == w->ref) p->io_wait = 0;
  p->io_woken = 0;
  w->ref = 0;
}

/* Yield until a signal or the deadline, then k runs. */
static int block(lua_State *L, mb_proc *p, owait *w, lua_KContext ctx, lua_KFunction k) {
  save(L, w);
  p->deadline = w->deadline;
  const char *why = mb_wait_prepare(L, p);
  if (why) return luaL_error(L, "%s", why);
  return mb_wait_yield(L, ctx, k);
}

static int timed_out(const owait *w) { return w->deadline && mb_now_ns() >= w->deadline; }

static void check_can_block(lua_State *L, mb_proc *p, const char *op) {
  if (!mb_proc_can_yield(L, p) || !mb_sched_self())
    luaL_error(L, "%s: cannot block here (attempt to yield across a C-call boundary)", op);
  if (p->selecting) luaL_error(L, "%s: cannot be called from a match function", op);
}

/* ---- listen, connect ---- */

static int open_k(lua_State *L, int status, lua_KContext listen) {
  (void)status;
  mb_proc *p = mb_proc_of(L);
  owait w;
  load(L, &w);
  mb_sig *got = woken(p, &w);
  if (got) {
    uint64_t id = 0;
    int err = mb_tcp_answer(got, &id);
    mb_sig_free(got);
    mb_sched_disarm_wait(p);
    if (err) return fail(L, err);
    if (mb_push_handle(L, listen ? MB_HK_TCP_LISTENER : MB_HK_TCP_CONN, id) != 0) return fail(L, MB_TCP_ECLOSED);
    return 1;
  }
  /* gave up: a socket that still comes is on our list and closes when we end */
  if (p->doom) { disarm(p, &w); return mb_wait_doomed(L, p); }
  if (timed_out(&w)) { disarm(p, &w); mb_sched_disarm_wait(p); return fail(L, MB_TCP_ETIMEOUT); }
  return block(L, p, &w, listen, open_k);
}

static int opt_int(lua_State *L, int idx, const char *name, lua_Integer dflt, lua_Integer min, lua_Integer max) {
  if (lua_getfield(L, idx, name) == LUA_TNIL) { lua_pop(L, 1); return (int)dflt; }
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok || v < min || v > max)
    luaL_error(L, "bad option %s (an integer from %I to %I expected)", name, (lua_Integer)min, (lua_Integer)max);
  lua_pop(L, 1);
  return (int)v;
}

/* opts at idx (a table or nil): packet, max_packet, backlog; timeout (ms) in *timeout. */
static void check_opts(lua_State *L, int idx, mb_tcp_opts *o, lua_Number *timeout) {
  o->packet = MB_PACKET_RAW;
  o->max_packet = MB_TCP_MAX_PACKET_DEFAULT;
  o->backlog = LISTEN_BACKLOG;
  *timeout = -1;
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  int t = lua_getfield(L, idx, "packet");
  if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "line") == 0) o->packet = MB_PACKET_LINE;
  else if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "raw") == 0) o->packet = MB_PACKET_RAW;
  else if (t == LUA_TNUMBER && lua_tonumber(L, -1) == 4) o->packet = MB_PACKET_4;
  else if (t != LUA_TNIL) luaL_error(L, "bad option packet (\"raw\", \"line\" or 4 expected)");
  lua_pop(L, 1);
  o->max_packet = (size_t)opt_int(L, idx, "max_packet", MB_TCP_MAX_PACKET_DEFAULT, 1, 0x7fffffff);
  o->backlog = opt_int(L, idx, "backlog", LISTEN_BACKLOG, 1, 65535);
  if (lua_getfield(L, idx, "timeout") != LUA_TNIL) {
    *timeout = lua_tonumber(L, -1);
    if (!lua_isnumber(L, -1) || !(*timeout >= 0)) luaL_error(L, "bad option timeout (ms >= 0 expected)");
  }
  lua_pop(L, 1);
}

static int open_socket(lua_State *L, int listen) {
  mb_proc *p = self_proc(L);
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  luaL_argcheck(L, port >= 0 && port <= 65535, 2, "port out of range");
  mb_tcp_opts o;
  lua_Number timeout;
  check_opts(L, 3, &o, &timeout);
  check_can_block(L, p, listen ? "tcp.listen" : "tcp.connect");
  owait w;
  w.deadline = timeout >= 0 && !listen ? mb_deadline_after(timeout) : 0;
  if (w.deadline == MB_NEVER) w.deadline = 0;
  if (arm(p, &w) != 0) return fail(L, MB_TCP_ENOMEM);
  int rc = mb_tcp_open(p->node, atomic_load(&p->pid), w.ref, listen, host, (int)port, &o);
  if (rc != 0) { disarm(p, &w); return fail(L, rc == MB_ENOMEM ? MB_TCP_ENOMEM : MB_TCP_ECLOSED); }
  mb_sched_disarm_wait(p);
  return block(L, p, &w, listen, open_k);
}

static int l_listen(lua_State *L) { return open_socket(L, 1); }
static int l_connect(lua_State *L) { return open_socket(L, 0); }

/* ---- recv and accept: look, else wait to be woken ---- */

enum { OP_RECV, OP_ACCEPT, OP_SEND };

/* The pending frame, kept where a failed push cannot leak it (freed by __gc). */
typedef struct scratch { char *p; } scratch;

static int scratch_gc(lua_State *L) {
  scratch *b = lua_touserdata(L, 1);
  free(b->p);
  b->p = NULL;
  return 0;
}

static int push_frame(lua_State *L, char *data, size_t len, int owned) {
  if (!owned) { lua_pushlstring(L, data ? data : "", len); return 1; }
  scratch *b = lua_touserdata(L, lua_upvalueindex(1));
  free(b->p);
  b->p = data;
  lua_pushlstring(L, data ? data : "", len);
  free(b->p);
  b->p = NULL;
  return 1;
}

/* What a look found, pushed only once the socket is let go: a push can raise
 * (out of memory) and must not leak the hold. */
typedef struct outcome { int rc; char *data; size_t len; int owned; uint64_t id; } outcome;

/* One look: 1 and *o filled (o->rc an error, or 1), or 0 (registered under w's
 * ref, unless it is 0). */
static int look(mb_proc *p, mb_sock *s, int op, const owait *w, outcome *o) {
  mb_pid me = atomic_load(&p->pid);
  memset(o, 0, sizeof *o);
  if (op == OP_RECV) o->rc = mb_tcp_recv(p->node, s, me, w->ref, &o->data, &o->len, &o->owned);
  else if (op == OP_ACCEPT) o->rc = mb_tcp_accept(p->node, s, p, w->ref, &o->id);
  else o->rc = mb_tcp_send_drained(s, me, w->ref);
  return o->rc != 0;
}

static int push_outcome(lua_State *L, int op, outcome *o) {
  if (o->rc < 0) {
    if (o->owned) free(o->data);
    return fail(L, o->rc);
  }
  if (op == OP_RECV) return push_frame(L, o->data, o->len, o->owned);
  /* an accepted connection is already ours (closed at our end if this raises) */
  if (op == OP_ACCEPT) return mb_push_handle(L, MB_HK_TCP_CONN, o->id) == 0 ? 1 : fail(L, MB_TCP_ECLOSED);
  lua_pushboolean(L, 1);
  return 1;
}

static int op_k(lua_State *L, int status, lua_KContext op) {
  (void)status;
  mb_proc *p = mb_proc_of(L);
  owait w;
  load(L, &w);
  io_woken(p, &w);   /* woken (ref now 0: look again), or still waiting */
  /* the handle at 1 was checked when the operation began */
  mb_sock *s = mb_tcp_hold(p->node, mb_handle_id_at(L, 1), op == OP_ACCEPT ? MB_HK_TCP_LISTENER : MB_HK_TCP_CONN);
  if (!s) { io_disarm(p, &w); mb_sched_disarm_wait(p); return fail(L, MB_TCP_ECLOSED); }
  mb_pid me = atomic_load(&p->pid);
  if (p->doom) {
    if (w.ref) mb_tcp_unwait(s, me, w.ref);
    io_disarm(p, &w);
    mb_tcp_release(s);
    return mb_wait_doomed(L, p);
  }
  outcome o;
  int done = 0;
  if (!w.ref) {   /* woken, or the first look: look (again), then look registered */
    done = look(p, s, (int)op, &w, &o);
    if (!done) {
      io_arm(p, &w);
      if ((done = look(p, s, (int)op, &w, &o))) io_disarm(p, &w);
    }
  }
  if (!done && timed_out(&w)) {
    mb_tcp_unwait(s, me, w.ref);
    io_disarm(p, &w);
    o.rc = MB_TCP_ETIMEOUT;
    o.owned = 0;
    done = 1;
  }
  mb_tcp_release(s);
  if (!done) return block(L, p, &w, op, op_k);
  mb_sched_disarm_wait(p);
  return push_outcome(L, (int)op, &o);
}

/* Start op on the handle at 1 with the timeout at timeout_idx (0: none). */
static int start_op(lua_State *L, int op, int timeout_idx) {
  mb_proc *p = self_proc(L);
  owait w = { 0, 0, 0 };
  if (timeout_idx && !lua_isnoneornil(L, timeout_idx)) {
    lua_Number ms = luaL_checknumber(L, timeout_idx);
    luaL_argcheck(L, ms >= 0, timeout_idx, "timeout must be >= 0");
    w.deadline = mb_deadline_after(ms);
    if (w.deadline == MB_NEVER) w.deadline = 0;
  }
  check_can_block(L, p, op == OP_RECV ? "recv" : op == OP_ACCEPT ? "accept" : "send");
  save(L, &w);
  mb_sched_disarm_wait(p);
  return op_k(L, LUA_OK, op);
}

static void check_kind(lua_State *L, int kind) {
  int k;
  if (!mb_test_handle(L, 1, &k, NULL) || k != kind)
    luaL_typeerror(L, 1, kind == MB_HK_TCP_CONN ? "tcp connection" : "tcp listener");
}

static int c_recv(lua_State *L) {
  check_kind(L, MB_HK_TCP_CONN);
  return start_op(L, OP_RECV, 2);
}

static int l_accept(lua_State *L) {
  check_kind(L, MB_HK_TCP_LISTENER);
  return start_op(L, OP_ACCEPT, 2);
}

static int c_send(lua_State *L) {
  mb_proc *p = self_proc(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);   /* before the hold: it may raise */
  mb_sock *s = sock_at(L, p->node, MB_HK_TCP_CONN);
  if (!s) return fail(L, MB_TCP_ECLOSED);
  /* the wait (if over the high-water mark) is registered by the send itself */
  owait w = { 0, 0, 0 };
  int blockable = mb_proc_can_yield(L, p) && mb_sched_self() && !p->selecting;
  if (blockable) io_arm(p, &w);
  int rc = mb_tcp_send(p->node, s, atomic_load(&p->pid), w.ref, data, len);
  mb_tcp_release(s);
  if (rc != 0) io_disarm(p, &w);
  if (rc < 0) return fail(L, rc);
  if (rc == 1 || !blockable) { lua_pushboolean(L, 1); return 1; }
  /* queued, over the mark: wait until it drains */
  mb_sched_disarm_wait(p);
  return block(L, p, &w, OP_SEND, op_k);
}

/* ---- the rest ---- */

static int do_close(lua_State *L, int kind) {
  mb_proc *p = self_proc(L);
  mb_sock *s = sock_at(L, p->node, kind);
  if (!s) { lua_pushboolean(L, 1); return 1; }   /* idempotent */
  int rc = mb_tcp_close(p->node, s, p);
  if (rc) return fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int c_close(lua_State *L) { return do_close(L, MB_HK_TCP_CONN); }
static int l_close(lua_State *L) { return do_close(L, MB_HK_TCP_LISTENER); }

static int do_set_owner(lua_State *L, int kind) {
  mb_proc *p = self_proc(L);
  mb_pid to = mb_check_pid(L, 2);
  mb_sock *s = sock_at(L, p->node, kind);
  if (!s) return fail(L, MB_TCP_ECLOSED);
  int rc = mb_tcp_set_owner(p->node, s, p, to);
  mb_tcp_release(s);
  if (rc) return fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int c_set_owner(lua_State *L) { return do_set_owner(L, MB_HK_TCP_CONN); }
static int l_set_owner(lua_State *L) { return do_set_owner(L, MB_HK_TCP_LISTENER); }

static int c_set_active(lua_State *L) {
  mb_proc *p = self_proc(L);
  int mode;
  if (lua_isboolean(L, 2)) mode = lua_toboolean(L, 2) ? MB_ACTIVE_ON : MB_ACTIVE_OFF;
  else if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "once") == 0) mode = MB_ACTIVE_ONCE;
  else return luaL_argerror(L, 2, "false, \"once\" or true expected");
  mb_sock *s = sock_at(L, p->node, MB_HK_TCP_CONN);
  if (!s) return fail(L, MB_TCP_ECLOSED);
  int rc = mb_tcp_set_active(p->node, s, atomic_load(&p->pid), mode);
  mb_tcp_release(s);
  if (rc) return fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

static int do_addr(lua_State *L, int kind, int peer) {
  mb_proc *p = self_proc(L);
  mb_sock *s = sock_at(L, p->node, kind);
  if (!s) return fail(L, MB_TCP_ECLOSED);
  const char *host;
  char name[64];
  int port;
  if (peer) mb_tcp_peer(s, &host, &port);
  else mb_tcp_local(s, &host, &port);
  snprintf(name, sizeof name, "%s", host);
  mb_tcp_release(s);   /* before the pushes: they may raise */
  lua_pushstring(L, name);
  lua_pushinteger(L, port);
  return 2;
}

static int c_peer(lua_State *L) { return do_addr(L, MB_HK_TCP_CONN, 1); }
static int c_port(lua_State *L) { do_addr(L, MB_HK_TCP_CONN, 0); return lua_isnil(L, -2) ? 2 : 1; }
static int l_port(lua_State *L) { do_addr(L, MB_HK_TCP_LISTENER, 0); return lua_isnil(L, -2) ? 2 : 1; }

static const luaL_Reg conn_methods[] = {
  {"recv", c_recv}, {"send", c_send}, {"close", c_close}, {"peer", c_peer}, {"port", c_port},
  {"set_active", c_set_active}, {"set_owner", c_set_owner}, {NULL, NULL},
};

static const luaL_Reg listener_methods[] = {
  {"accept", l_accept}, {"close", l_close}, {"set_owner", l_set_owner}, {"port", l_port}, {NULL, NULL},
};

/* A method table whose functions share one scratch box. */
static int push_methods(lua_State *L, const luaL_Reg *m) {
  lua_newtable(L);
  scratch *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->p = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, scratch_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  luaL_setfuncs(L, m, 1);
  return 1;
}

static int conn_methods_open(lua_State *L) { return push_methods(L, conn_methods); }
static int listener_methods_open(lua_State *L) { return push_methods(L, listener_methods); }

void mb_l_tcp_register(void) {
  mb_handle_methods(MB_HK_TCP_CONN, conn_methods_open);
  mb_handle_methods(MB_HK_TCP_LISTENER, listener_methods_open);
}

int luaopen_moonbeam_tcp(lua_State *L) {
  static const luaL_Reg f[] = { {"listen", l_listen}, {"connect", l_connect}, {NULL, NULL} };
  luaL_newlib(L, f);
  return 1;
}
