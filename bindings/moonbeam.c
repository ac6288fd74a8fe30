/* moonbeam: the `moonbeam` Lua module every process requires (SPEC section 1).
 * Thin: it checks arguments, converts values and calls the core. Blocking calls
 * (receive, sleep) yield the body with a continuation, so they work inside pcall
 * and inside the user's coroutines. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include "luaface.h"
#include "term.h"
#include "codec.h"
#include "code.h"
#include "spawn.h"
#include "scheduler.h"
#include "registry.h"
#include "ptab.h"
#include "timer.h"
#include "log.h"
#include "wait.h"
#include "select.h"
#include "info.h"
#include "call.h"

static mb_proc *self_proc(lua_State *L) {
  mb_proc *p = mb_proc_of(L);
  if (!p) luaL_error(L, "moonbeam: not inside a moonbeam process");
  return p;
}

/* ---- encoding helpers ---- */

/* Encode the value at idx into a new signal or raise "<op>: <why>". */
static mb_sig *encode_sig(lua_State *L, mb_node *n, int idx, const char *op, int kind) {
  return mb_l_encode(L, n, NULL, idx, op, "msg", kind);
}

/* The encoder's way, with its scratch buffer and its error text (a frame of its own,
 * which the small values' way does not set up). */
static __attribute__((noinline)) mb_sig *encode_full(lua_State *L, mb_node *n, mb_proc *self, int idx,
                                                     const char *op, const char *root, int kind) {
  mb_buf b;
  char err[512];
  if (mb_buf_init_scratch(&b, MB_SIG_HDR, n->max_message) != 0) luaL_error(L, "%s: not enough memory", op);
  mb_call_watch_refs(self, &b);   /* a server handing a call's `from` on lets go of it */
  int rc = mb_encode(L, idx, &b, root, err, sizeof err);
  if (rc == MB_ENC_OK && mb_buf_detach(&b) != 0) {
    rc = MB_ENC_NOMEM;
    snprintf(err, sizeof err, "not enough memory");
  }
  if (rc != MB_ENC_OK) {
    mb_buf_free(&b);
    luaL_error(L, "%s: %s", op, err);
  }
  return mb_sig_from_buf(&b, kind, 0, 0);
}

/* mb_l_encode of a value whose type the caller has read (a send reads it once). */
static mb_sig *encode_typed(lua_State *L, mb_node *n, mb_proc *self, int idx, int type, const char *op,
                            const char *root, int kind) {
  /* a lone number, boolean or short string, or a short tuple of those (not for a
   * sender that watches refs): its signal at once, at its size */
  unsigned char sc[MB_SMALL_MAX];
  size_t sl = mb_encode_small(L, idx, type, sc, !mb_call_watches_refs(self));
  if (sl && sl <= n->max_message) {
    mb_sig *s = mb_sig_raw(kind, 0, 0, sc, sl);
    if (!s) luaL_error(L, "%s: not enough memory", op);
    return s;
  }
  return encode_full(L, n, self, idx, op, root, kind);
}

mb_sig *mb_l_encode(lua_State *L, mb_node *n, mb_proc *self, int idx, const char *op, const char *root, int kind) {
  return encode_typed(L, n, self, idx, lua_type(L, idx), op, root, kind);
}

/* Raise after freeing; for errors found once a signal exists. */
static int raise_free(lua_State *L, mb_sig *s, const char *fmt, const char *a) {
  mb_sig_free(s);
  return luaL_error(L, fmt, a);
}

/* ---- spawn ---- */

typedef struct { int init; luaL_Buffer b; } dumpbuf;

/* lua_dump's writer into a luaL_Buffer (as string.dump does): GC-safe on errors. */
static int dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  dumpbuf *d = ud;
  if (!d->init) { d->init = 1; luaL_buffinit(L, &d->b); }
  luaL_addlstring(&d->b, p, sz);
  return 0;
}

/* The function at idx dumped with its debug info, checked for upvalues. A weak
 * table in the registry keeps each function's dump, so spawning the same function
 * again costs no lua_dump. Pushes the dump (a string) and points p and len at it. */
static const char dump_cache_key = 0;

static void dumped_function(lua_State *L, int idx, const char **p, size_t *len) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &dump_cache_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &dump_cache_key);
  }
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) != LUA_TSTRING) {
    lua_pop(L, 1);
    const char *up;
    for (int i = 1; (up = lua_getupvalue(L, idx, i)) != NULL; i++) {
      lua_pop(L, 1);
      if (strcmp(up, "_ENV") != 0) luaL_error(L, "spawn: function captures upvalue '%s'", up);
    }
    dumpbuf db;
    db.init = 0;
    lua_pushvalue(L, idx);
    lua_dump(L, dump_writer, &db, 0);
    luaL_pushresult(&db.b);
    lua_remove(L, -2);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
  }
  lua_remove(L, -2);
  *p = lua_tolstring(L, -1, len);
}

int mb_l_spawn(lua_State *L, mb_node *n, mb_proc *parent, int first, int link, int monitor) {
  const char *op = link ? "spawn_link" : monitor ? "spawn_monitor" : "spawn";
  int top = lua_gettop(L);
  mb_spawn_req r;
  memset(&r, 0, sizeof r);
  char err[4096];
  const char *module = NULL;
  int fidx = 0;
  if (lua_type(L, first) == LUA_TSTRING) {
    module = lua_tostring(L, first);
  } else if (lua_type(L, first) == LUA_TFUNCTION) {
    fidx = first;
  } else if (lua_type(L, first) == LUA_TTABLE) {
    if (lua_getfield(L, first, "module") != LUA_TSTRING)
      return luaL_error(L, "%s: options need a module name", op);
    module = lua_tostring(L, -1);   /* kept on the stack: an __index may have made it */
    if (lua_getfield(L, first, "max_heap") != LUA_TNIL) {
      lua_Integer mh = lua_tointeger(L, -1);
      if (!lua_isinteger(L, -1) || mh < 0) return luaL_error(L, "%s: max_heap must be a non-negative integer", op);
      r.max_heap = (size_t)mh;
    }
    lua_pop(L, 1);
  } else {
    return luaL_typeerror(L, first, "module name, function or options table");
  }
  if (fidx) {
    if (lua_iscfunction(L, fidx)) return luaL_error(L, "%s: cannot spawn a C function", op);
    dumped_function(L, fidx, &r.fn, &r.fn_len);   /* leaves the dump on the stack */
  } else {
    r.code = mb_code_get(n, module, err, sizeof err);
    if (!r.code) return luaL_error(L, "%s: %s", op, err);
  }
  int nargs = top - first;
  if (nargs > 0) {
    mb_buf b;
    int rc = mb_buf_init(&b, MB_SIG_HDR, n->max_message);
    if (rc == 0) {
      mb_call_watch_refs(parent, &b);   /* a `from` handed to a new process */
      rc = mb_encode_values(L, first + 1, nargs, &b, err, sizeof err);
      if (rc != MB_ENC_OK) mb_buf_free(&b);
    } else {
      snprintf(err, sizeof err, "not enough memory");
    }
    if (rc != MB_ENC_OK) {
      if (r.code) mb_code_unref(r.code);
      return luaL_error(L, "%s: %s", op, err);
    }
    r.args = mb_sig_from_buf(&b, MB_SIG_MSG, 0, 0);
  }
  if (link) r.link = parent;
  if (monitor) { r.monitor = parent; r.mref = mb_node_make_ref(n); }
  mb_pid pid;
  int rc = mb_spawn_proc(n, &r, &pid);
  if (rc != 0) return luaL_error(L, "%s: %s", op, mb_strerror(rc));
  mb_push_pid(L, pid);
  if (monitor) { mb_push_ref(L, r.mref); return 2; }
  return 1;
}

static int l_spawn(lua_State *L) { return mb_l_spawn(L, self_proc(L)->node, self_proc(L), 1, 0, 0); }
static int l_spawn_link(lua_State *L) { return mb_l_spawn(L, self_proc(L)->node, self_proc(L), 1, 1, 0); }
static int l_spawn_monitor(lua_State *L) { return mb_l_spawn(L, self_proc(L)->node, self_proc(L), 1, 0, 1); }

/* ---- send ---- */

int mb_l_send(lua_State *L, mb_node *n, mb_proc *self, int dest, int msg) {
  mb_pid from = atomic_load(&self->pid);
  mb_pid to;
  const char *name = NULL;
  size_t nlen = 0;
  if (!mb_test_pid(L, dest, &to)) {
    if (lua_type(L, dest) != LUA_TSTRING) return luaL_typeerror(L, dest, "pid or registered name");
    name = lua_tolstring(L, dest, &nlen);
  }
  int type = lua_type(L, msg);
  if (type == LUA_TNONE || type == LUA_TNIL) return luaL_error(L, "send: cannot send nil");
  mb_sig *s = encode_typed(L, n, self, msg, type, "send", "msg", MB_SIG_MSG);
  s->from = from;
  if (name) {
    to = mb_registry_whereis(n->reg, name, nlen);
    if (!to) return raise_free(L, s, "send: no process registered as '%s'", name);
  }
  mb_send_sig(n, to, s);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_send(lua_State *L) {
  mb_proc *p = self_proc(L);
  return mb_l_send(L, p->node, p, 1, 2);
}

/* ---- receive and sleep (the protocol is the core's: core/wait.c) ---- */

int mb_l_receive_args(lua_State *L, uint64_t *deadline, const char *fname) {
  *deadline = 0;
  if (lua_gettop(L) == 0) return 0;   /* receive(): the commonest, nothing to check */
  lua_settop(L, 2);
  int targ = 2;
  if (lua_type(L, 1) == LUA_TNUMBER) {   /* receive(timeout) */
    lua_pushvalue(L, 1);
    lua_replace(L, 2);
    lua_pushnil(L);
    lua_replace(L, 1);
    targ = 1;
  }
  int match = 0;
  if (!lua_isnil(L, 1)) {
    luaL_argexpected(L, lua_type(L, 1) == LUA_TFUNCTION, 1, "function");
    match = 1;
  }
  if (!lua_isnil(L, 2)) {
    lua_Number ms = luaL_checknumber(L, 2);
    if (ms != ms) return luaL_argerror(L, targ, "timeout must be a number, got nan");
    if (ms < 0) return luaL_argerror(L, targ, "timeout must be >= 0");
    (void)fname;
    *deadline = mb_deadline_after(ms);
    if (*deadline == MB_NEVER) *deadline = 0;   /* math.huge: wait forever */
  }
  return match;
}

static int l_receive(lua_State *L) {
  mb_proc *p = self_proc(L);
  uint64_t deadline;
  int match = mb_l_receive_args(L, &deadline, "receive");
  return mb_wait_receive(L, p, match, deadline);
}

static int l_sleep(lua_State *L) {
  mb_proc *p = self_proc(L);
  lua_Number ms = luaL_checknumber(L, 1);
  if (ms != ms) return luaL_argerror(L, 1, "timeout must be a number, got nan");
  return mb_wait_sleep(L, p, mb_deadline_after(ms < 0 ? 0 : ms));
}

/* ---- links, monitors, exits ---- */

static int l_self(lua_State *L) { mb_push_pid(L, atomic_load(&self_proc(L)->pid)); return 1; }

static int l_link(lua_State *L) {
  mb_proc *p = self_proc(L);
  mb_proc_link(p, mb_check_pid(L, 1));
  mb_proc_drain(p);
  if (p->doom) return mb_wait_doomed(L, p);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_unlink(lua_State *L) {
  mb_proc *p = self_proc(L);
  mb_proc_unlink(p, mb_check_pid(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_monitor(lua_State *L) {
  mb_proc *p = self_proc(L);
  mb_pid target = mb_check_pid(L, 1);
  uint64_t ref = mb_node_make_ref(p->node);
  mb_proc_monitor(p, target, ref);
  mb_push_ref(L, ref);
  return 1;
}

static int l_demonitor(lua_State *L) {
  mb_proc *p = self_proc(L);
  if (p->selecting) return luaL_error(L, "demonitor: cannot be called from a match function");
  int had = mb_proc_demonitor(p, mb_check_ref(L, 1));
  if (p->doom) return mb_wait_doomed(L, p);   /* its drain may have met an exit signal */
  lua_pushboolean(L, had);
  return 1;
}

static int l_trap_exit(lua_State *L) {
  mb_proc *p = self_proc(L);
  luaL_checkany(L, 1);
  int on = lua_toboolean(L, 1);
  mb_lock_take(&p->meta);
  int old = p->trap_exit;
  p->trap_exit = (uint8_t)on;
  mb_lock_give(&p->meta);
  lua_pushboolean(L, old);
  return 1;
}

static int l_exit(lua_State *L) {
  mb_proc *p = self_proc(L);
  if (lua_gettop(L) >= 2) {
    mb_pid to = mb_check_pid(L, 1);
    luaL_checkany(L, 2);
    /* the reason may hand a call's `from` on (call.c) */
    mb_sig *s = mb_l_encode(L, p->node, p, 2, "exit", "msg", MB_SIG_EXIT);
    mb_proc_exit_signal(p, to, s);
    if (p->doom) return mb_wait_doomed(L, p);
    lua_pushboolean(L, 1);
    return 1;
  }
  luaL_checkany(L, 1);
  mb_sig *s = encode_sig(L, p->node, 1, "exit", MB_SIG_EXIT);
  mb_proc_doom(p, s);
  return mb_wait_doomed(L, p);
}

/* ---- names ---- */

static int l_register(lua_State *L) {
  mb_proc *p = self_proc(L);
  size_t nlen;
  const char *name = luaL_checklstring(L, 1, &nlen);
  mb_pid pid = lua_isnoneornil(L, 2) ? atomic_load(&p->pid) : mb_check_pid(L, 2);
  int rc = mb_registry_add(p->node, name, nlen, pid);
  if (rc == MB_ENOPROC) return luaL_error(L, "register: noproc");
  if (rc == MB_EINVAL) {
    if (mb_registry_whereis(p->node->reg, name, nlen))
      return luaL_error(L, "register: name '%s' is already registered", name);
    return luaL_error(L, "register: the process already has a name");
  }
  if (rc != 0) return luaL_error(L, "register: %s", mb_strerror(rc));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_unregister(lua_State *L) {
  mb_proc *p = self_proc(L);
  size_t nlen;
  const char *name = luaL_checklstring(L, 1, &nlen);
  if (mb_registry_unregister(p->node, name, nlen) != 0)
    return luaL_error(L, "unregister: no process registered as '%s'", name);
  lua_pushboolean(L, 1);
  return 1;
}

int mb_l_whereis(lua_State *L, mb_node *n, int idx) {
  size_t nlen;
  const char *name = luaL_checklstring(L, idx, &nlen);
  mb_pid pid = mb_registry_whereis(n->reg, name, nlen);
  mb_proc *q = pid ? mb_proc_get(n, pid) : NULL;
  if (!q || !mb_proc_alive(q)) pid = 0;   /* a fatal exit signal is on its way to it */
  if (q) mb_proc_unref(q);
  if (pid) mb_push_pid(L, pid);
  else lua_pushnil(L);
  return 1;
}

static int l_whereis(lua_State *L) { return mb_l_whereis(L, self_proc(L)->node, 1); }

/* ---- refs and timers ---- */

static int l_make_ref(lua_State *L) { mb_push_ref(L, mb_node_make_ref(self_proc(L)->node)); return 1; }

static int l_send_after(lua_State *L) {
  mb_proc *p = self_proc(L);
  lua_Number ms = luaL_checknumber(L, 1);
  if (ms != ms) return luaL_argerror(L, 1, "timeout must be a number, got nan");
  mb_pid to = 0;
  const char *name = NULL;
  size_t nlen = 0;
  if (!mb_test_pid(L, 2, &to)) {
    if (lua_type(L, 2) != LUA_TSTRING) return luaL_typeerror(L, 2, "pid or registered name");
    name = lua_tolstring(L, 2, &nlen);
  }
  if (lua_isnoneornil(L, 3)) return luaL_error(L, "send_after: cannot send nil");
  mb_sig *s = mb_l_encode(L, p->node, p, 3, "send_after", "msg", MB_SIG_MSG);
  s->from = atomic_load(&p->pid);
  mb_timer *t = calloc(1, sizeof *t);
  if (!t || (name && !(t->name = malloc(nlen + 1)))) { free(t); return raise_free(L, s, "%s", "send_after: not enough memory"); }
  if (name) { memcpy(t->name, name, nlen); t->name[nlen] = 0; t->name_len = nlen; }
  if (ms < 0) ms = 0;
  t->deadline = mb_deadline_after(ms);
  t->ref = mb_node_make_ref(p->node);
  t->pid = to;
  t->msg = s;
  uint64_t ref = t->ref;
  if (mb_sched_add_timer(t) != 0) {
    mb_timer_free(t);
    return luaL_error(L, "send_after: not enough memory");
  }
  mb_push_ref(L, ref);
  return 1;
}

static int l_cancel_timer(lua_State *L) {
  mb_proc *p = self_proc(L);
  double left = mb_sched_cancel_timer(p->node, mb_check_ref(L, 1));
  if (left < 0) lua_pushboolean(L, 0);
  else lua_pushnumber(L, left);
  return 1;
}

static int l_now(lua_State *L) { lua_pushnumber(L, (lua_Number)mb_now_ns() / 1e6); return 1; }

/* ---- introspection ---- */

static int l_is_alive(lua_State *L) {
  mb_proc *p = self_proc(L);
  mb_proc *q = mb_proc_get(p->node, mb_check_pid(L, 1));
  lua_pushboolean(L, q && mb_proc_alive(q));
  if (q) mb_proc_unref(q);
  return 1;
}

/* Room for the pids: a userdata on top of L's stack, in place of the placeholder
 * or of a smaller room (collected, never leaked, if building the result fails). */
static mb_pid *userdata_room(void *ud, size_t cap) {
  lua_State *L = ud;
  lua_pop(L, 1);
  return lua_newuserdatauv(L, sizeof(mb_pid) * cap, 0);
}

int mb_l_processes(lua_State *L, mb_node *n) {
  mb_pid *v;
  lua_pushnil(L);   /* the room's slot */
  size_t k = mb_ptab_snapshot(n->ptab, userdata_room, L, &v);
  lua_createtable(L, (int)k, 0);
  for (size_t i = 0; i < k; i++) {
    mb_push_pid(L, v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_remove(L, -2);
  return 1;
}

static int l_processes(lua_State *L) { return mb_l_processes(L, self_proc(L)->node); }

int mb_l_info(lua_State *L, mb_node *n, mb_pid pid) {
  size_t room = 16 * sizeof(mb_pid) + 128;
  mb_snapshot *s;
  for (;;) {
    /* a userdata: building the table may run out of memory, and nothing leaks */
    s = lua_newuserdatauv(L, sizeof *s + room, 0);
    long need = mb_snapshot_take(n, pid, s, room);
    if (need < 0) { lua_pushnil(L); return 1; }
    if (need == 0) break;
    lua_pop(L, 1);
    room = (size_t)need + 64;
  }
  const mb_pid *pids = mb_snapshot_pids(s);
  const char *text = mb_snapshot_text(s);
  lua_createtable(L, 0, 10);
  lua_pushstring(L, mb_status_name(s->status));
  lua_setfield(L, -2, "status");
  if (s->module_len != (size_t)-1) {
    lua_pushlstring(L, text + (s->name_len == (size_t)-1 ? 0 : s->name_len), s->module_len);
    lua_setfield(L, -2, "module");
  }
  lua_pushinteger(L, s->queue_len);
  lua_setfield(L, -2, "message_queue_len");
  lua_pushinteger(L, s->memory);
  lua_setfield(L, -2, "memory");
  lua_pushinteger(L, (lua_Integer)s->reductions);
  lua_setfield(L, -2, "reductions");
  lua_pushboolean(L, s->trap);
  lua_setfield(L, -2, "trap_exit");
  if (s->name_len != (size_t)-1) { lua_pushlstring(L, text, s->name_len); lua_setfield(L, -2, "registered_name"); }
  lua_createtable(L, s->nlinks, 0);
  for (int i = 0; i < s->nlinks; i++) { mb_push_pid(L, pids[i]); lua_rawseti(L, -2, i + 1); }
  lua_setfield(L, -2, "links");
  lua_createtable(L, s->nmonitors, 0);
  for (int i = 0; i < s->nmonitors; i++) { mb_push_pid(L, pids[s->nlinks + i]); lua_rawseti(L, -2, i + 1); }
  lua_setfield(L, -2, "monitors");
  lua_remove(L, -2);
  return 1;
}

static int l_info(lua_State *L) { return mb_l_info(L, self_proc(L)->node, mb_check_pid(L, 1)); }

/* ---- log and halt ---- */

static int l_log(lua_State *L) {
  mb_proc *p = self_proc(L);
  int level = mb_log_level_parse(luaL_checkstring(L, 1));
  if (level < 0 || level == MB_LOG_NONE) return luaL_argerror(L, 1, "level must be debug, info, warning or error");
  luaL_checkstring(L, 2);
  if (!mb_log_enabled(p->node, level)) return 0;
  lua_getglobal(L, "string");
  lua_getfield(L, -1, "format");
  lua_replace(L, 1);   /* format, fmt, args... (the level is no longer needed) */
  lua_pop(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  mb_log_str(p->node, level, atomic_load(&p->pid), s, len);
  return 0;
}

static int l_log_level(lua_State *L) {
  mb_proc *p = self_proc(L);
  int old = atomic_load(&p->node->log_level);
  if (!lua_isnoneornil(L, 1)) {
    int level = mb_log_level_parse(luaL_checkstring(L, 1));
    if (level < 0) return luaL_argerror(L, 1, "level must be debug, info, warning, error or none");
    atomic_store(&p->node->log_level, level);
  }
  lua_pushstring(L, mb_log_level_name(old));
  return 1;
}

static int l_halt(lua_State *L) {
  mb_proc *p = self_proc(L);
  int code = (int)luaL_optinteger(L, 1, 0);
  mb_node_halt(p->node, code);
  mb_proc_doom(p, mb_sig_static("normal"));
  return mb_wait_doomed(L, p);
}

static const luaL_Reg functions[] = {
  { "self", l_self }, { "spawn", l_spawn }, { "spawn_link", l_spawn_link },
  { "spawn_monitor", l_spawn_monitor }, { "send", l_send }, { "receive", l_receive },
  { "link", l_link }, { "unlink", l_unlink }, { "monitor", l_monitor },
  { "demonitor", l_demonitor }, { "trap_exit", l_trap_exit }, { "exit", l_exit },
  { "register", l_register }, { "unregister", l_unregister }, { "whereis", l_whereis },
  { "make_ref", l_make_ref }, { "send_after", l_send_after }, { "cancel_timer", l_cancel_timer },
  { "sleep", l_sleep }, { "now", l_now }, { "is_alive", l_is_alive },
  { "processes", l_processes }, { "info", l_info }, { "log", l_log },
  { "log_level", l_log_level }, { "halt", l_halt }, { NULL, NULL } };

/* The module table fills itself on first use of each function, so a process that
 * uses two of them does not pay for twenty-six. */
static int module_index(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);   /* reachable as getmetatable(mb).__index */
  const char *k = lua_tostring(L, 2);
  if (!k || lua_type(L, 2) != LUA_TSTRING) return 0;
  for (const luaL_Reg *r = functions; r->name; r++)
    if (r->name[0] == k[0] && strcmp(r->name, k) == 0) {   /* most differ at once */
      lua_pushcfunction(L, r->func);
      lua_pushvalue(L, 2);
      lua_pushvalue(L, -2);
      lua_rawset(L, 1);
      return 1;
    }
  return 0;
}

static int module_pairs(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  luaL_setfuncs(L, functions, 0);   /* complete the table, then iterate it */
  lua_getglobal(L, "next");
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

int luaopen_moonbeam(lua_State *L) {
  /* send and receive, which most processes use, are there from the start: the
   * first use of a function through __index costs ~650 instructions (the
   * metamethod's call, the search, a rawset) against ~250 for a field set here */
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, l_send);
  lua_setfield(L, -2, "send");
  lua_pushcfunction(L, l_receive);
  lua_setfield(L, -2, "receive");
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, module_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, module_pairs);
  lua_setfield(L, -2, "__pairs");
  lua_setmetatable(L, -2);
  return 1;
}
