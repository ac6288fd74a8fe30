/* gen_server: the `moonbeam.gen_server` Lua module (SPEC section 2). Thin: the
 * server loop is the core's (core/gen_server.c) and so is the call protocol
 * (core/call.c); here are the arguments, the waits (with continuations, so they
 * work inside pcall, callbacks and coroutines) and the errors. The calls are
 * shared with moonbeam.host (node:call, node:cast). */
#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "luaface.h"
#include "call.h"
#include "clock.h"
#include "gen_server.h"
#include "registry.h"
#include "scheduler.h"
#include "select.h"
#include "spawn.h"
#include "term.h"
#include "wait.h"

#define CALL_TIMEOUT_MS 5000
#define INIT_TIMEOUT_MS 5000

static mb_proc *self_proc(lua_State *L) {
  mb_proc *p = mb_proc_of(L);
  if (!p) luaL_error(L, "moonbeam.gen_server: not inside a moonbeam process");
  return p;
}

/* The server at idx: a pid, or the pid registered under a name (0: none). */
static mb_pid server_at(lua_State *L, mb_node *n, int idx) {
  mb_pid pid;
  if (mb_test_pid(L, idx, &pid)) return pid;
  if (lua_type(L, idx) != LUA_TSTRING) luaL_typeerror(L, idx, "pid or registered name");
  size_t len;
  const char *name = lua_tolstring(L, idx, &len);
  return mb_registry_whereis(n->reg, name, len);
}

/* A timeout argument: its deadline, 0 for none (math.huge); dflt_ms when absent. */
static uint64_t deadline_at(lua_State *L, int idx, lua_Number dflt_ms) {
  lua_Number ms = luaL_optnumber(L, idx, dflt_ms);
  if (ms != ms) luaL_argerror(L, idx, "timeout must be a number, got nan");
  if (ms < 0) luaL_argerror(L, idx, "timeout must be >= 0");
  uint64_t d = mb_deadline_after(ms);
  return d == MB_NEVER ? 0 : d;
}

int mb_l_call_fail(lua_State *L, int first, int stop, const char *why) {
  const char *who = lua_type(L, first) == LUA_TSTRING ? lua_tostring(L, first) : mb_tolstring(L, first, NULL);
  lua_pushfstring(L, "%s %s: %s", stop ? "stop of" : "call to", who, why);
  return lua_error(L);
}

void mb_l_call_start(lua_State *L, mb_node *n, mb_proc *self, int first, int stop, mb_call *c, uint64_t *deadline) {
  int trusted = stop & MB_L_CALL_TRUSTED;
  stop &= 1;
  mb_pid pid = server_at(L, n, first);
  *deadline = deadline_at(L, first + 2, stop ? HUGE_VAL : CALL_TIMEOUT_MS);
  if (!pid) { mb_l_call_fail(L, first, stop, "noproc"); return; }
  if (stop && lua_isnil(L, first + 1)) { lua_pushliteral(L, "normal"); lua_replace(L, first + 1); }
  lua_pushvalue(L, first + 1);   /* the encoder wants it named: request or reason */
  mb_sig *req = mb_l_encode(L, n, self, -1, stop ? "stop" : "call", stop ? "reason" : "request", MB_SIG_CALL);
  lua_pop(L, 1);
  if (stop) req->flags = MB_SIGF_SYSTEM;
  if (trusted) req->flags |= MB_SIGF_TRUSTED;
  static const char *const why[] = { [MB_CALL_NOPROC] = "noproc", [MB_CALL_SELF] = "calling self",
                                     [MB_CALL_DEADLOCK] = "deadlock", [MB_CALL_NOMEM] = "not enough memory" };
  int rc = mb_call_begin(self, pid, req, c);
  if (rc != MB_CALL_OK) mb_l_call_fail(L, first, stop, why[rc]);
}

/* Did the server end with the reason stop asked for (the value at idx)? */
static int ended_as_asked(lua_State *L, mb_node *n, const mb_sig *down, int idx) {
  mb_sig *want = mb_l_encode(L, n, NULL, idx, "stop", "reason", MB_SIG_EXIT);
  int same = want->len == down->len && memcmp(mb_sig_payload(want), mb_sig_payload(down), down->len) == 0;
  mb_sig_free(want);
  return same;
}

int mb_l_call_result(lua_State *L, mb_proc *self, mb_call *c, mb_sig *got, int first, int stop) {
  mb_call_end(self, c, got);
  if (got->kind == MB_SIG_REPLY) {
    if (stop) { mb_sig_free(got); lua_pushboolean(L, 1); return 1; }
    mb_push_taken_payload(L, self, got);
    return 1;
  }
  if (stop && ended_as_asked(L, self->node, got, first + 1)) {
    mb_sig_free(got);
    lua_pushboolean(L, 1);
    return 1;
  }
  char *text = mb_reason_text(got);
  mb_sig_free(got);
  if (!text) return mb_l_call_fail(L, first, stop, "not enough memory");
  lua_pushstring(L, text);   /* may raise: text is freed first */
  free(text);
  return mb_l_call_fail(L, first, stop, lua_tostring(L, -1));
}

/* ---- call and stop from a process ---- */

/* The call's state lives on the stack across yields, at 4..7 (arguments at 1..3). */
static void save_call(lua_State *L, const mb_call *c, uint64_t deadline) {
  lua_settop(L, 3);
  lua_pushinteger(L, (lua_Integer)c->server);
  lua_pushinteger(L, (lua_Integer)c->ref);
  lua_pushinteger(L, (lua_Integer)c->mark);
  lua_pushinteger(L, (lua_Integer)deadline);
}

static uint64_t load_call(lua_State *L, mb_call *c) {
  c->server = (mb_pid)lua_tointeger(L, 4);
  c->ref = (uint64_t)lua_tointeger(L, 5);
  c->mark = (mb_recv_mark_t)lua_tointeger(L, 6);
  return (uint64_t)lua_tointeger(L, 7);
}

/* A call's continuation begins here: the call from the stack, and its REPLY or
 * DOWN if one came (the wait is then over). A doomed process gives up the call. */
enum { GOT, DOOMED, TIMED_OUT, WAIT };
static int resume_call(lua_State *L, mb_proc *p, mb_call *c, uint64_t *deadline, mb_sig **got) {
  *deadline = load_call(L, c);
  *got = mb_call_poll(p, c);
  if (p->doom) {
    if (*got) mb_sig_free(*got);
    mb_call_end(p, c, NULL);
    return DOOMED;
  }
  if (*got) { mb_sched_disarm_wait(p); return GOT; }
  if (*deadline && mb_now_ns() >= *deadline) { mb_sched_disarm_wait(p); return TIMED_OUT; }
  return WAIT;
}

static int call_k(lua_State *L, int status, lua_KContext how) {
  (void)status;
  int stop = (int)(how & 1);
  mb_proc *p = mb_proc_of(L);
  mb_call c;
  uint64_t deadline;
  mb_sig *got;
  int st = resume_call(L, p, &c, &deadline, &got);
  if (st == DOOMED) return mb_wait_doomed(L, p);
  if (st == GOT) return mb_l_call_result(L, p, &c, got, 1, stop);
  if (st == TIMED_OUT) {
    mb_call_end(p, &c, NULL);
    return mb_l_call_fail(L, 1, stop, "timeout");
  }
  p->deadline = deadline;
  const char *why = mb_wait_prepare(L, p);
  if (why) { mb_call_end(p, &c, NULL); return mb_l_call_fail(L, 1, stop, why); }
  return mb_wait_yield(L, how, call_k);
}

static int call_or_stop(lua_State *L, int how) {
  int stop = how & 1;
  mb_proc *p = self_proc(L);
  lua_settop(L, 3);
  if (!mb_proc_can_yield(L, p) || !mb_sched_self())
    return mb_l_call_fail(L, 1, stop, "cannot block here (attempt to yield across a C-call boundary)");
  if (p->selecting) return mb_l_call_fail(L, 1, stop, "cannot be called from a match function");
  mb_call c;
  uint64_t deadline;
  mb_l_call_start(L, p->node, p, 1, how, &c, &deadline);
  save_call(L, &c, deadline);
  mb_sched_disarm_wait(p);
  return call_k(L, LUA_OK, how);
}

int mb_l_gen_call(lua_State *L) { return call_or_stop(L, 0); }
int mb_l_gen_call_trusted(lua_State *L) { return call_or_stop(L, MB_L_CALL_TRUSTED); }
#define l_call mb_l_gen_call
static int l_stop(lua_State *L) { return call_or_stop(L, 1); }

/* ---- cast and reply ---- */

int mb_l_cast(lua_State *L, mb_node *n, mb_proc *self, int first) {
  mb_pid pid = server_at(L, n, first);
  if (lua_isnoneornil(L, first + 1)) return luaL_error(L, "cast: cannot send nil");
  mb_sig *s = mb_l_encode(L, n, self, first + 1, "cast", "msg", MB_SIG_CAST);
  s->from = atomic_load(&self->pid);
  if (pid) mb_send_sig(n, pid, s);   /* as OTP: a cast to nobody is dropped */
  else mb_sig_free(s);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_cast(lua_State *L) { mb_proc *p = self_proc(L); return mb_l_cast(L, p->node, p, 1); }

static int l_reply(lua_State *L) {
  mb_proc *p = self_proc(L);
  mb_pid to;
  uint64_t ref;
  if (!mb_test_from(L, 1, &to, &ref)) return luaL_typeerror(L, 1, "a call's from ({pid, ref})");
  lua_settop(L, 2);
  mb_sig *s = mb_l_encode(L, p->node, p, 2, "reply", "reply", MB_SIG_REPLY);
  mb_call_reply(p->node, p, to, ref, s);   /* a caller gone: nothing to do */
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- start ---- */

/* The start's state on the stack across yields, at 4..8 (arguments at 1..3). */
static int start_k(lua_State *L, int status, lua_KContext link) {
  (void)status;
  mb_proc *p = mb_proc_of(L);
  mb_call c;
  uint64_t deadline;
  mb_sig *got;
  int st = resume_call(L, p, &c, &deadline, &got);
  if (st == DOOMED) return mb_wait_doomed(L, p);
  if (st == GOT) {
    mb_call_end(p, &c, got);
    int down = got->kind == MB_SIG_DOWN;
    mb_push_taken_payload(L, p, got);   /* true, {reason [, pid]}, or the DOWN's reason */
    if (!down && lua_toboolean(L, -1) && !lua_istable(L, -1)) { mb_push_pid(L, c.server); return 1; }
    lua_pushnil(L);
    if (down) { lua_insert(L, -2); return 2; }   /* nil, reason */
    lua_rawgeti(L, -2, 1);
    if (lua_rawgeti(L, -3, 2) == LUA_TNIL) { lua_pop(L, 1); return 2; }   /* nil, reason */
    return 3;   /* nil, "already_started", pid */
  }
  if (st == TIMED_OUT) {   /* init overran: the server goes, quietly */
    if (link) mb_proc_unlink(p, c.server);
    mb_sig *kill = mb_sig_string(MB_SIG_EXIT, 0, 0, "kill");
    if (kill) mb_proc_exit_signal(p, c.server, kill);
    mb_call_end(p, &c, NULL);
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  p->deadline = deadline;
  const char *why = mb_wait_prepare(L, p);
  if (why) { mb_call_end(p, &c, NULL); return luaL_error(L, "start: %s", why); }
  return mb_wait_yield(L, link, start_k);
}

static int start(lua_State *L, int link) {
  mb_proc *p = self_proc(L);
  mb_node *n = p->node;
  const char *op = link ? "start_link" : "start";
  lua_settop(L, 3);
  luaL_checkstring(L, 1);
  if (!lua_isnil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  int name_t = lua_isnil(L, 3) ? LUA_TNIL : lua_getfield(L, 3, "name");   /* at 4 */
  if (name_t != LUA_TNIL && name_t != LUA_TSTRING) return luaL_error(L, "%s: opts.name must be a string", op);
  if (name_t == LUA_TNIL) lua_settop(L, 3), lua_pushnil(L);
  if (!lua_isnil(L, 3)) lua_getfield(L, 3, "timeout"); else lua_pushnil(L);   /* at 5 */
  uint64_t deadline = deadline_at(L, 5, INIT_TIMEOUT_MS);
  if (!mb_proc_can_yield(L, p) || !mb_sched_self())
    return luaL_error(L, "%s: cannot block here (attempt to yield across a C-call boundary)", op);
  /* init's argument travels as its own encoding */
  mb_buf b;
  char err[512];
  if (mb_buf_init(&b, 0, n->max_message) != 0) return luaL_error(L, "%s: not enough memory", op);
  mb_call_watch_refs(p, &b);
  if (mb_encode(L, 2, &b, "args", err, sizeof err) != MB_ENC_OK) {
    mb_buf_free(&b);
    return luaL_error(L, "%s: %s", op, err);
  }
  mb_call c;
  memset(&c, 0, sizeof c);
  c.ref = mb_node_make_ref(n);
  c.mark = mb_recv_mark(p);
  if (mb_call_ref_add(p, c.ref) < 0) { mb_buf_free(&b); return luaL_error(L, "%s: not enough memory", op); }
  size_t name_len = 0;
  const char *name = lua_isnil(L, 4) ? NULL : lua_tolstring(L, 4, &name_len);
  int rc = mb_gen_server_spawn(p, lua_tostring(L, 1), b.data, b.len, name, name_len, link, c.ref, &c.server);
  mb_buf_free(&b);
  if (rc != 0) { mb_call_ref_del(p, c.ref); return luaL_error(L, "%s: %s", op, mb_strerror(rc)); }
  return mb_l_start_wait(L, p, &c, deadline, link);
}

int mb_l_start_wait(lua_State *L, mb_proc *p, mb_call *c, uint64_t deadline, int link) {
  save_call(L, c, deadline);
  mb_sched_disarm_wait(p);
  return start_k(L, LUA_OK, link);
}

static int l_start(lua_State *L) { return start(L, 0); }
static int l_start_link(lua_State *L) { return start(L, 1); }

int luaopen_moonbeam_gen_server(lua_State *L) {
  static const luaL_Reg functions[] = {
    { "start", l_start }, { "start_link", l_start_link }, { "call", l_call }, { "cast", l_cast },
    { "reply", l_reply }, { "stop", l_stop }, { NULL, NULL } };
  luaL_newlib(L, functions);
  return 1;
}
