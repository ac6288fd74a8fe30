/* gen_server: the server loop (SPEC section 2) as the C body of a Lua process.
 *
 * The loop is a state machine driven by drive(): each step handles what the last
 * callback returned and either takes the next message, calls another callback, or
 * ends the process. Callbacks run with lua_pcallk and the loop waits with a
 * continuation, so a callback may block or be preempted (only this server waits)
 * and the C stack never grows with the number of messages served.
 *
 * The body coroutine's stack holds the loop's values at fixed slots; callbacks run
 * above them. Nothing here is reachable from Lua: the body refuses any call but
 * the core's first one (spawn.c passes the process as a light userdata). */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "gen_server.h"
#include "call.h"
#include "clock.h"
#include "code.h"
#include "codec.h"
#include "cterm.h"
#include "log.h"
#include "node.h"
#include "registry.h"
#include "scheduler.h"
#include "select.h"
#include "spawn.h"
#include "term.h"
#include "wait.h"

enum {
  S_GS = 1,    /* the loop's C state (a userdata) */
  S_MSGH,      /* the message handler: keeps the traceback of the last error as its upvalue */
  S_MOD,       /* the callback module */
  S_STATE,     /* the server's state */
  S_MSG,       /* the message being handled (the crash report's "last message") */
  S_REASON,    /* the reason it is terminating with */
  S_NAME,      /* the module's name */
  BASE = S_NAME   /* callbacks and their results start above */
};

/* What the last step asked for: a callback kind, or one of these. */
enum { K_BOOT, K_LOAD, K_INIT, K_CALL, K_CAST, K_INFO, K_TERM, K_WAIT, K_UPGRADE, K_CODE_CHANGE, NEXT, END };

typedef struct gs {
  mb_pid parent;
  uint64_t ack_ref;         /* the start's ref until init has answered */
  uint64_t deadline;        /* the server timeout (a deadline), 0 = none */
  mb_pid call_from;         /* the call being handled */
  uint64_t call_ref;
  int crashed;              /* the reason is an error raised by a callback (a traceback exists) */
  int report_init;          /* a failed init is reported (raised, bad return) */
} gs;

/* ---- rendering Lua values for logs, bounded, without metamethods ---- */

#define RENDER_MAX 2048
#define RENDER_ITEMS 20
#define RENDER_DEPTH 3
#define RENDER_STR 200

typedef struct { char s[RENDER_MAX + 8]; size_t len; int full; } rbuf;

static void radd(rbuf *b, const char *s, size_t n) {
  if (b->full) return;
  if (b->len + n > RENDER_MAX) { n = RENDER_MAX - b->len; b->full = 1; }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  if (b->full) { memcpy(b->s + b->len, "...", 3); b->len += 3; }
}
static void radds(rbuf *b, const char *s) { radd(b, s, strlen(s)); }

static void render(lua_State *L, int idx, rbuf *b, int depth, int top);

static void render_string(lua_State *L, int idx, rbuf *b, int top) {
  size_t n;
  const char *s = lua_tolstring(L, idx, &n);
  if (top) { radd(b, s, n < RENDER_MAX ? n : RENDER_MAX); return; }
  radds(b, "\"");
  for (size_t i = 0; i < n && i < RENDER_STR; i++) {
    unsigned char c = (unsigned char)s[i];
    char e[8];
    if (c == '"' || c == '\\') { e[0] = '\\'; e[1] = (char)c; radd(b, e, 2); }
    else if (c < 32 || c == 127) { snprintf(e, sizeof e, "\\%d", c); radds(b, e); }
    else radd(b, (const char *)&c, 1);
  }
  if (n > RENDER_STR) radds(b, "...");
  radds(b, "\"");
}

static void render_table(lua_State *L, int idx, rbuf *b, int depth) {
  if (depth >= RENDER_DEPTH) { radds(b, "{...}"); return; }
  if (!lua_checkstack(L, 4)) { radds(b, "{?}"); return; }
  radds(b, "{");
  int items = 0;
  lua_Integer next_i = 1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (items++ == RENDER_ITEMS || b->full) { lua_pop(L, 2); radds(b, ", ..."); break; }
    if (items > 1) radds(b, ", ");
    if (lua_isinteger(L, -2) && lua_tointeger(L, -2) == next_i) {
      next_i++;
    } else {
      next_i = 0;
      if (lua_type(L, -2) == LUA_TSTRING) { render_string(L, -2, b, 1); radds(b, " = "); }
      else { radds(b, "["); render(L, lua_gettop(L) - 1, b, depth + 1, 0); radds(b, "] = "); }
    }
    render(L, lua_gettop(L), b, depth + 1, 0);
    lua_pop(L, 1);
  }
  radds(b, "}");
}

static void render(lua_State *L, int idx, rbuf *b, int depth, int top) {
  char t[64];
  mb_pid pid;
  uint64_t ref;
  switch (lua_type(L, idx)) {
  case LUA_TNIL: radds(b, "nil"); return;
  case LUA_TBOOLEAN: radds(b, lua_toboolean(L, idx) ? "true" : "false"); return;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) snprintf(t, sizeof t, "%lld", (long long)lua_tointeger(L, idx));
    else snprintf(t, sizeof t, "%.14g", (double)lua_tonumber(L, idx));
    radds(b, t);
    return;
  case LUA_TSTRING: render_string(L, idx, b, top); return;
  case LUA_TTABLE: render_table(L, idx, b, depth); return;
  case LUA_TUSERDATA:
  case LUA_TLIGHTUSERDATA:
    if (mb_test_pid(L, idx, &pid)) { snprintf(t, sizeof t, "<0.%llu>", (unsigned long long)pid); radds(b, t); return; }
    if (mb_test_ref(L, idx, &ref)) { snprintf(t, sizeof t, "#Ref<0.%llu>", (unsigned long long)ref); radds(b, t); return; }
    radds(b, "userdata");
    return;
  default: radds(b, lua_typename(L, lua_type(L, idx)));
  }
}

/* Push the rendering of the value at idx. */
static const char *push_render(lua_State *L, int idx) {
  rbuf b;
  b.len = 0;
  b.full = 0;
  render(L, lua_absindex(L, idx), &b, 0, 1);
  return lua_pushlstring(L, b.s, b.len);
}

/* Push `what` and the values first..last rendered ("a, b, ..."), bounded as one
 * rendering (a callback may return a million values); the stack is first cut
 * back to `keep`: a callback's results may have left it no room. */
static const char *push_values(lua_State *L, const char *what, int first, int last, int keep) {
  rbuf b;
  b.len = 0;
  b.full = 0;
  radds(&b, what);
  for (int i = first; i <= last && !b.full; i++) {
    if (i > first) radds(&b, ", ");
    render(L, i, &b, 0, 1);
  }
  lua_settop(L, keep);
  return lua_pushlstring(L, b.s, b.len);
}

/* ---- helpers ---- */

static gs *gs_of(lua_State *L) { return lua_touserdata(L, S_GS); }
static const char *module_name(lua_State *L) { return lua_tostring(L, S_NAME); }

/* The message handler: the error value goes through; its traceback is kept. */
static int msgh(lua_State *L) {
  luaL_traceback(L, L, NULL, 1);
  lua_replace(L, lua_upvalueindex(1));
  lua_settop(L, 1);
  return 1;
}

/* t[k], for a module's field: run protected (below). */
static int index_field(lua_State *L) {
  lua_gettable(L, 1);
  return 1;
}

/* Push the field name of the module table at idx: 0; or its error: -1. A module
 * may have an __index (inheritance), and that may raise or try to block: it runs
 * protected, so that it fails as a callback does, not the loop. */
static int get_field(lua_State *L, int idx, const char *name) {
  idx = lua_absindex(L, idx);
  if (!lua_getmetatable(L, idx)) {
    lua_pushstring(L, name);
    lua_rawget(L, idx);
    return 0;
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, index_field);
  lua_pushvalue(L, idx);
  lua_pushstring(L, name);
  return lua_pcall(L, 2, 1, S_MSGH) == LUA_OK ? 0 : -1;
}

/* Push module[name] if it is a function: 1; else nothing: 0; or its lookup's error: -1. */
static int get_callback(lua_State *L, const char *name) {
  if (get_field(L, S_MOD, name) < 0) return -1;
  if (lua_isfunction(L, -1)) return 1;
  lua_pop(L, 1);
  return 0;
}

/* The value at idx is a valid timeout (nil, or a number >= 0): 1 and the deadline (0 = none). */
static int parse_timeout(lua_State *L, int idx, uint64_t *deadline) {
  *deadline = 0;
  if (lua_isnoneornil(L, idx)) return 1;
  if (lua_type(L, idx) != LUA_TNUMBER) return 0;
  lua_Number ms = lua_tonumber(L, idx);
  if (!(ms >= 0)) return 0;
  uint64_t d = mb_deadline_after(ms);
  *deadline = d == MB_NEVER ? 0 : d;
  return 1;
}

/* Encode the value at idx into a REPLY payload, or push the encoder's message and return NULL. */
static mb_sig *encode_reply(lua_State *L, mb_proc *p, int idx, const char *root) {
  mb_buf b;
  char err[512];
  if (mb_buf_init(&b, MB_SIG_HDR, p->node->max_message) != 0) luaL_error(L, "gen_server: not enough memory");
  mb_call_watch_refs(p, &b);   /* a reply may hand another caller's `from` on */
  int rc = mb_encode(L, idx, &b, root, err, sizeof err);
  if (rc == MB_ENC_OK) return mb_sig_from_buf(&b, MB_SIG_REPLY, 0, 0);
  mb_buf_free(&b);
  lua_pushfstring(L, "%s: %s", root, err);
  return NULL;
}

/* ---- the end ---- */

static void log_report(lua_State *L, gs *g, mb_proc *p) {
  luaL_Buffer b;
  int top = lua_gettop(L);
  luaL_buffinit(L, &b);
  lua_pushfstring(L, "crash report: gen_server <0.%I> (module '%s') terminated\n  last message: ",
                  (lua_Integer)atomic_load(&p->pid), module_name(L));
  luaL_addvalue(&b);
  push_render(L, S_MSG);
  luaL_addvalue(&b);
  luaL_addstring(&b, "\n  state: ");
  push_render(L, S_STATE);
  luaL_addvalue(&b);
  luaL_addstring(&b, "\n  reason: ");
  push_render(L, S_REASON);
  luaL_addvalue(&b);
  if (g->crashed) {
    lua_getupvalue(L, S_MSGH, 1);
    if (lua_type(L, -1) == LUA_TSTRING) { luaL_addstring(&b, "\n"); luaL_addvalue(&b); }
    else lua_pop(L, 1);
  }
  luaL_pushresult(&b);
  size_t len;
  const char *t = lua_tolstring(L, -1, &len);
  mb_log_str(p->node, MB_LOG_ERROR, atomic_load(&p->pid), t, len);
  lua_settop(L, top);
}

/* End with the reason at S_REASON: a report unless it is normal. */
static int finish(lua_State *L, gs *g, mb_proc *p) {
  mb_sig *s = mb_reason_sig(L, S_REASON, p->node->max_message);
  if (!s) s = mb_sig_static("error");
  if (!mb_reason_is_normal(mb_sig_payload(s), s->len)) log_report(L, g, p);
  mb_proc_doom(p, s);
  return END;
}

/* Terminate with the value at idx as the reason: terminate(reason, state) if the
 * module has one, then finish. */
static int terminate(lua_State *L, gs *g, mb_proc *p, int idx, int crashed, int *nargs) {
  lua_pushvalue(L, idx);
  lua_replace(L, S_REASON);
  g->crashed = crashed;
  lua_settop(L, BASE);
  int has = get_callback(L, "terminate");
  if (has < 0) { lua_replace(L, S_REASON); g->crashed = 1; }   /* as if terminate raised */
  if (has <= 0) return finish(L, g, p);
  lua_pushvalue(L, S_REASON);
  lua_pushvalue(L, S_STATE);
  *nargs = 2;
  return K_TERM;
}


/* ---- start ---- */

/* Answer the start with the encoded value at idx. */
static void ack(lua_State *L, gs *g, mb_proc *p, int idx) {
  mb_sig *s = encode_reply(L, p, idx, "reason");
  if (!s) {   /* an unsendable reason: its text instead */
    lua_pop(L, 1);
    lua_createtable(L, 1, 0);
    push_render(L, idx);
    lua_rawseti(L, -2, 1);
    s = encode_reply(L, p, -1, "reason");
    if (!s) luaL_error(L, "gen_server: cannot answer the start");
  }
  uint64_t ref = g->ack_ref;
  g->ack_ref = 0;
  mb_call_reply(p->node, p, g->parent, ref, s);
}

/* init failed with the reason at idx: unlink from the parent (so it gets no exit
 * signal), answer {reason} (plus more values from idx+1 .. last), end with exit. */
static int init_failed(lua_State *L, gs *g, mb_proc *p, int idx, int last, int exit_idx) {
  idx = lua_absindex(L, idx);
  last = lua_absindex(L, last);
  exit_idx = lua_absindex(L, exit_idx);
  mb_proc_unlink(p, g->parent);
  lua_createtable(L, last - idx + 1, 0);
  for (int i = idx; i <= last; i++) { lua_pushvalue(L, i); lua_rawseti(L, -2, i - idx + 1); }
  ack(L, g, p, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, exit_idx);
  lua_replace(L, S_REASON);
  if (g->report_init) return finish(L, g, p);
  mb_sig *s = mb_reason_sig(L, S_REASON, p->node->max_message);
  mb_proc_doom(p, s ? s : mb_sig_static("error"));
  return END;
}

static int boot(lua_State *L, gs *g, mb_proc *p, int *nargs) {
  /* the name first, as OTP: a taken one fails the start before init runs */
  if (!lua_isnil(L, BASE + 2)) {
    size_t len;
    const char *name = lua_tolstring(L, BASE + 2, &len);
    if (mb_registry_add(p->node, name, len, atomic_load(&p->pid)) != 0) {
      lua_pushliteral(L, "already_started");
      mb_pid holder = mb_registry_whereis(p->node->reg, name, len);
      if (holder) mb_push_pid(L, holder); else lua_pushnil(L);
      lua_pushliteral(L, "normal");
      return init_failed(L, g, p, -3, -2, -1);
    }
  }
  lua_settop(L, BASE + 1);   /* init's argument stays at BASE + 1 */
  /* from the code cache, keeping the entry: a reload supersedes it (the upgrade
   * between two messages); a module the cache cannot give (an embedder's
   * preload) comes through require */
  char err[16];
  mb_code *c = mb_code_get(p->node, module_name(L), err, sizeof err);
  if (c && mb_code_load(L, c) == LUA_OK) {
    p->code = c;
    lua_pushvalue(L, S_NAME);
    lua_pushstring(L, c->chunkname + 1);
    *nargs = 2;
    return K_LOAD;
  }
  if (c) { lua_pop(L, 1); mb_code_unref(c); }
  lua_getglobal(L, "require");
  lua_pushvalue(L, S_NAME);
  *nargs = 1;
  return K_LOAD;
}

/* package.loaded[name] = the module at idx, as require would have (raw: the
 * module may have set a metatable on package.loaded). */
static void set_loaded(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushvalue(L, S_NAME);
  lua_pushvalue(L, idx);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static int loaded(lua_State *L, gs *g, mb_proc *p, int status, int *nargs) {
  g->report_init = 1;
  if (status != LUA_OK) return init_failed(L, g, p, -1, -1, -1);
  lua_settop(L, BASE + 2);   /* the chunk's first result, as require takes it (init's argument below) */
  if (!lua_istable(L, -1)) {
    lua_pushfstring(L, "module '%s' did not return a table", module_name(L));
    return init_failed(L, g, p, -1, -1, -1);
  }
  set_loaded(L, -1);
  lua_replace(L, S_MOD);
  int has = get_callback(L, "init");
  if (has < 0) g->crashed = 1;
  if (has == 0) lua_pushliteral(L, "missing init");
  if (has <= 0) return init_failed(L, g, p, -1, -1, -1);
  lua_insert(L, BASE + 1);   /* init, then its argument */
  *nargs = 1;
  return K_INIT;
}

static int inited(lua_State *L, gs *g, mb_proc *p, int status) {
  int n = lua_gettop(L) - BASE;
  if (status != LUA_OK) { g->report_init = 1; g->crashed = 1; return init_failed(L, g, p, -1, -1, -1); }
  const char *tag = lua_type(L, BASE + 1) == LUA_TSTRING ? lua_tostring(L, BASE + 1) : "";
  uint64_t deadline;
  g->report_init = 0;
  if (strcmp(tag, "ok") == 0 && (n == 2 || n == 3) && parse_timeout(L, BASE + 3, &deadline)) {
    lua_pushvalue(L, BASE + 2);
    lua_replace(L, S_STATE);
    g->deadline = deadline;
    lua_pushboolean(L, 1);
    ack(L, g, p, -1);
    lua_settop(L, BASE);
    return NEXT;
  }
  if (strcmp(tag, "stop") == 0 && n == 2) return init_failed(L, g, p, BASE + 2, BASE + 2, BASE + 2);
  if (strcmp(tag, "ignore") == 0 && n == 1) {
    lua_pushliteral(L, "normal");
    return init_failed(L, g, p, BASE + 1, BASE + 1, -1);
  }
  g->report_init = 1;
  push_values(L, "bad return from init: ", BASE + 1, BASE + n, BASE);
  return init_failed(L, g, p, -1, -1, -1);
}

/* ---- serving ---- */

static int not_reply(const mb_sig *s, void *ud) { (void)ud; return s->kind != MB_SIG_REPLY; }

/* A message nobody handles: one warning, dropped. The message is at S_MSG. */
static int drop_message(lua_State *L, mb_proc *p, const char *callback) {
  const char *text = push_render(L, S_MSG);
  mb_log(p->node, MB_LOG_WARNING, atomic_load(&p->pid), "gen_server (module '%s') has no %s; message dropped: %s",
         module_name(L), callback, text);
  lua_settop(L, BASE);
  return NEXT;
}

/* Call handle_info or handle_cast with the message at S_MSG. */
static int info_or_cast(lua_State *L, gs *g, mb_proc *p, const char *callback, int kind, int *nargs) {
  lua_settop(L, BASE);
  int has = get_callback(L, callback);
  if (has < 0) return terminate(L, g, p, -1, 1, nargs);
  if (has == 0) return drop_message(L, p, callback);
  lua_pushvalue(L, S_MSG);
  lua_pushvalue(L, S_STATE);
  *nargs = 2;
  return kind;
}

/* ---- upgrades (a reload superseded the module's code) ---- */

/* Should the server upgrade now? Its code was superseded, and the code a failed
 * upgrade left in code_next (kept so that it is not tried again) was too. */
static int must_upgrade(mb_proc *p) {
  return p->code && mb_code_superseded(p->code) && (!p->code_next || mb_code_superseded(p->code_next));
}

/* The upgrade failed with the value at the top: the old code stays (code_next
 * keeps the failed one, so it is not tried again until another reload). */
static int upgrade_failed(lua_State *L, mb_proc *p) {
  const char *why = push_render(L, -1);
  mb_log(p->node, MB_LOG_WARNING, atomic_load(&p->pid),
         "gen_server (module '%s') keeps its old code: the upgrade failed: %s", module_name(L), why);
  lua_settop(L, BASE);
  return NEXT;
}

/* Load the current code into code_next and push its chunk: K_UPGRADE, or NEXT
 * when it cannot be had (kept as the failed code). */
static int upgrade(lua_State *L, mb_proc *p, int *nargs) {
  char err[512];
  mb_code *c = mb_code_get(p->node, module_name(L), err, sizeof err);
  if (!c) {
    mb_log(p->node, MB_LOG_WARNING, atomic_load(&p->pid), "gen_server (module '%s') keeps its code: %s",
           module_name(L), err);
    return NEXT;   /* the entry is gone; superseded stays set but there is nothing newer */
  }
  if (p->code_next) mb_code_unref(p->code_next);
  p->code_next = c;
  if (mb_code_load(L, c) != LUA_OK) return upgrade_failed(L, p);   /* its message says why */
  lua_pushvalue(L, S_NAME);
  lua_pushstring(L, c->chunkname + 1);
  *nargs = 2;
  return K_UPGRADE;
}

/* The new module is at BASE + 1 (and the new state at idx, or 0): swap. */
static int upgraded(lua_State *L, mb_proc *p, int state_idx) {
  if (state_idx) { lua_pushvalue(L, state_idx); lua_replace(L, S_STATE); }
  set_loaded(L, BASE + 1);
  lua_pushvalue(L, BASE + 1);
  lua_replace(L, S_MOD);
  mb_code_unref(p->code);
  p->code = p->code_next;
  p->code_next = NULL;
  lua_settop(L, BASE);
  return NEXT;
}

/* The new chunk ran: call code_change(old_vsn, state, extra) if it has one. */
static int upgrade_loaded(lua_State *L, mb_proc *p, int status, int *nargs) {
  if (status != LUA_OK) return upgrade_failed(L, p);
  lua_settop(L, BASE + 1);   /* the chunk's first result */
  if (!lua_istable(L, -1)) {
    lua_pushfstring(L, "module '%s' did not return a table", module_name(L));
    return upgrade_failed(L, p);
  }
  if (get_field(L, BASE + 1, "code_change") < 0) return upgrade_failed(L, p);
  if (!lua_isfunction(L, -1)) { lua_pop(L, 1); return upgraded(L, p, 0); }
  if (get_field(L, S_MOD, "vsn") < 0) return upgrade_failed(L, p);
  lua_pushvalue(L, S_STATE);
  lua_pushnil(L);   /* extra: reload's, once the reload API passes one */
  *nargs = 3;
  return K_CODE_CHANGE;
}

static int code_changed(lua_State *L, mb_proc *p, int status) {
  if (status != LUA_OK) return upgrade_failed(L, p);
  int n = lua_gettop(L) - (BASE + 1);
  if (n == 2 && lua_type(L, BASE + 2) == LUA_TSTRING && strcmp(lua_tostring(L, BASE + 2), "ok") == 0)
    return upgraded(L, p, BASE + 3);
  push_values(L, "bad return from code_change: ", BASE + 2, BASE + 1 + n, BASE + 1);
  return upgrade_failed(L, p);
}

/* Take the next message and push its callback; or wait; or end. */
static int take_next(lua_State *L, gs *g, mb_proc *p, int *nargs) {
  lua_settop(L, BASE);
  if (must_upgrade(p)) {   /* between two messages, as SPEC 5 says */
    int next = upgrade(L, p, nargs);
    if (next != NEXT || !must_upgrade(p)) return next;
  }
  mb_sig *m = mb_recv_select(p, not_reply, NULL);
  if (p->doom) { if (m) mb_sig_free(m); return END; }
  if (!m) {
    if (g->deadline && mb_now_ns() >= g->deadline) {
      g->deadline = 0;
      mb_sched_disarm_wait(p);
      lua_pushliteral(L, "timeout");
      lua_replace(L, S_MSG);
      return info_or_cast(L, g, p, "handle_info", K_INFO, nargs);
    }
    p->deadline = g->deadline;
    const char *why = mb_wait_prepare(L, p);
    if (why) luaL_error(L, "gen_server: %s", why);
    return K_WAIT;
  }
  mb_sched_disarm_wait(p);
  g->deadline = 0;
  int kind = m->kind, system = m->flags & MB_SIGF_SYSTEM;
  mb_pid from = m->from;
  uint64_t ref = m->ref;
  if (kind == MB_SIG_CALL || kind == MB_SIG_CAST) mb_push_taken_payload(L, p, m);
  else mb_push_taken(L, p, m);   /* MSG; EXIT and DOWN as the tables receive gives */
  lua_replace(L, S_MSG);
  switch (kind) {
  case MB_SIG_CALL:
    if (system) return terminate(L, g, p, S_MSG, 0, nargs);   /* gen_server.stop */
    g->call_from = from;
    g->call_ref = ref;
    int has = get_callback(L, "handle_call");
    if (has < 0) return terminate(L, g, p, -1, 1, nargs);
    if (has == 0) {
      lua_pushliteral(L, "missing handle_call");
      return terminate(L, g, p, -1, 0, nargs);
    }
    lua_pushvalue(L, S_MSG);
    mb_push_from(L, from, ref);
    lua_pushvalue(L, S_STATE);
    *nargs = 3;
    return K_CALL;
  case MB_SIG_CAST:
    return info_or_cast(L, g, p, "handle_cast", K_CAST, nargs);
  case MB_SIG_EXIT:
    if (from == g->parent) {   /* trapping exits: the parent's end is ours */
      lua_rawgeti(L, S_MSG, 3);
      return terminate(L, g, p, -1, 0, nargs);
    }
    /* fall through */
  default:
    return info_or_cast(L, g, p, "handle_info", K_INFO, nargs);
  }
}

/* What handle_call/handle_cast/handle_info returned. */
static int handled(lua_State *L, gs *g, mb_proc *p, int kind, int status, int *nargs) {
  if (status != LUA_OK) return terminate(L, g, p, -1, 1, nargs);
  int n = lua_gettop(L) - BASE;
  const char *tag = lua_type(L, BASE + 1) == LUA_TSTRING ? lua_tostring(L, BASE + 1) : "";
  const char *bad = kind == K_CALL ? "bad return from handle_call: "
                  : kind == K_CAST ? "bad return from handle_cast: " : "bad return from handle_info: ";
  uint64_t deadline;
  int state_at = 0, reply_at = 0, reason_at = 0;
  if (kind == K_CALL && strcmp(tag, "reply") == 0 && (n == 3 || n == 4) && parse_timeout(L, BASE + 4, &deadline)) {
    reply_at = BASE + 2;
    state_at = BASE + 3;
  } else if (strcmp(tag, "noreply") == 0 && (n == 2 || n == 3) && parse_timeout(L, BASE + 3, &deadline)) {
    state_at = BASE + 2;
  } else if (strcmp(tag, "stop") == 0 && n == 3) {
    reason_at = BASE + 2;
    state_at = BASE + 3;
  } else if (kind == K_CALL && strcmp(tag, "stop") == 0 && n == 4) {
    reason_at = BASE + 2;
    reply_at = BASE + 3;
    state_at = BASE + 4;
  } else {
    push_values(L, bad, BASE + 1, BASE + n, BASE);
    return terminate(L, g, p, -1, 0, nargs);
  }
  lua_pushvalue(L, state_at);
  lua_replace(L, S_STATE);
  if (reply_at) {
    mb_sig *r = encode_reply(L, p, reply_at, "reply");
    if (!r) return terminate(L, g, p, -1, 0, nargs);   /* the encoder's message */
    mb_call_reply(p->node, p, g->call_from, g->call_ref, r);
  }
  if (reason_at) return terminate(L, g, p, reason_at, 0, nargs);
  g->deadline = deadline;
  lua_settop(L, BASE);
  return NEXT;
}

/* ---- the driver ---- */

/* Handle the outcome of step `kind` and say what comes next (pushing a callback
 * and its *nargs arguments when it is one). */
static int step(lua_State *L, gs *g, mb_proc *p, int kind, int status, int *nargs) {
  if (status != LUA_OK && status != LUA_YIELD && (p->doom || p->oom)) {
    if (!p->doom) mb_proc_doom(p, mb_sig_static("out of memory"));
    return END;
  }
  if (status == LUA_YIELD) status = LUA_OK;   /* a continuation after a yield: results are there */
  switch (kind) {
  case K_BOOT: return boot(L, g, p, nargs);
  case K_LOAD: return loaded(L, g, p, status, nargs);
  case K_INIT: return inited(L, g, p, status);
  case K_CALL: case K_CAST: case K_INFO: return handled(L, g, p, kind, status, nargs);
  case K_TERM:
    if (status != LUA_OK) { lua_replace(L, S_REASON); g->crashed = 1; }
    lua_settop(L, BASE);   /* terminate's results, if any, are not used */
    return finish(L, g, p);
  case K_UPGRADE: return upgrade_loaded(L, p, status, nargs);
  case K_CODE_CHANGE: return code_changed(L, p, status);
  default: return NEXT;   /* K_WAIT: a signal came, or the deadline */
  }
}

static int drive_k(lua_State *L, int status, lua_KContext ctx);

/* Preemption arms a hook that yields at the next Lua instruction, but the loop
 * may run none for a long backlog (messages dropped, callbacks written in C):
 * it gives way between two messages instead. */
static int give_way(lua_State *L, mb_proc *p) {
  if (lua_gethook(L) != mb_sched_hook || !mb_proc_can_yield(L, p)) return 0;
  lua_sethook(L, NULL, 0, 0);
  p->yield_reason = p->doom || p->oom ? MB_Y_DOOM : MB_Y_PREEMPT;
  return 1;
}

static int drive(lua_State *L, int kind, int status) {
  mb_proc *p = mb_proc_of(L);
  gs *g = gs_of(L);
  for (;;) {
    int nargs = 0;
    int next = step(L, g, p, kind, status, &nargs);
    while (next == NEXT) {   /* NEXT again: a message was dropped */
      if (give_way(L, p)) return lua_yieldk(L, 0, K_WAIT, drive_k);   /* then on with the next */
      next = take_next(L, g, p, &nargs);
    }
    if (next == END) return 0;   /* the body returns: p->doom is its reason */
    if (next == K_WAIT) return mb_wait_yield(L, K_WAIT, drive_k);
    kind = next;
    status = lua_pcallk(L, nargs, LUA_MULTRET, S_MSGH, kind, drive_k);
  }
}

static int drive_k(lua_State *L, int status, lua_KContext ctx) { return drive(L, (int)ctx, status); }

/* The start arguments mb_gen_server_spawn wrote, read in C: no Lua value is made
 * of the parent's pid and the ref (a fresh state would build their metatables for
 * them) nor of the keys. The strings point into the arguments. 0, or -1. */
typedef struct gs_start {
  mb_pid parent;
  uint64_t ref;
  const char *module, *args, *name;
  size_t module_len, args_len, name_len;
} gs_start;

static int read_start(const mb_sig *a, gs_start *st) {
  mb_tr r;
  uint64_t narr;
  uint32_t nh;
  int ok = 0, seen = 0;
  memset(st, 0, sizeof *st);
  if (!a || mb_tr_open(&r, mb_sig_payload(a), a->len) != 0) return -1;
  if (mb_tr_enter(&r, &narr, &nh) != 0 || narr != 0) goto done;
  for (uint32_t i = 0; i < nh; i++) {
    if (mb_tr_is_string(&r, "module")) { if (mb_tr_string(&r, &st->module, &st->module_len)) goto done; seen |= 1; }
    else if (mb_tr_is_string(&r, "args")) { if (mb_tr_string(&r, &st->args, &st->args_len)) goto done; }
    else if (mb_tr_is_string(&r, "name")) { if (mb_tr_string(&r, &st->name, &st->name_len)) goto done; }
    else if (mb_tr_is_string(&r, "parent")) { if (mb_tr_pid(&r, &st->parent)) goto done; seen |= 2; }
    else if (mb_tr_is_string(&r, "ref")) { if (mb_tr_ref(&r, &st->ref)) goto done; seen |= 4; }
    else goto done;
  }
  ok = seen == 7 && mb_tr_leave(&r) == 0;
done:
  mb_tr_close(&r);
  return ok ? 0 : -1;
}

int mb_gen_server_body(lua_State *L) {
  mb_proc *p = lua_touserdata(L, 1);
  if (lua_type(L, 1) != LUA_TLIGHTUSERDATA || p != mb_proc_of(L) || p->body != mb_gen_server_body)
    return luaL_error(L, "not for scripts");
  p->body = NULL;   /* once */
  /* p->args: {module =, args = its encoding, name =, parent =, ref =} (mb_gen_server_spawn) */
  gs_start st;
  /* on an error p->args stays: it goes with the process */
  if (read_start(p->args, &st) != 0) return luaL_error(L, "gen_server: bad start");
  lua_settop(L, 0);
  gs *g = lua_newuserdatauv(L, sizeof *g, 0);   /* 1, and the first slot */
  memset(g, 0, sizeof *g);
  g->parent = st.parent;
  g->ack_ref = st.ref;
  lua_pushnil(L);
  lua_pushcclosure(L, msgh, 1);                 /* message handler */
  lua_pushnil(L);                               /* module */
  lua_pushnil(L);                               /* state */
  lua_pushnil(L);                               /* message */
  lua_pushnil(L);                               /* reason */
  lua_pushlstring(L, st.module, st.module_len); /* module name */
  if (!st.args) lua_pushnil(L);                 /* init's argument */
  else if (mb_decode(L, st.args, st.args_len) != 0) return luaL_error(L, "gen_server: bad start");
  if (st.name) lua_pushlstring(L, st.name, st.name_len);   /* the name to register */
  else lua_pushnil(L);
  mb_sig_free(p->args);   /* the strings above pointed into it */
  p->args = NULL;
  return drive(L, K_BOOT, LUA_OK);
}

int mb_gen_server_spawn(mb_proc *self, const char *module, const char *args, size_t args_len,
                        const char *name, size_t name_len, int link, uint64_t ref, mb_pid *pid) {
  mb_node *n = self->node;
  mb_buf b;
  mb_tw w;
  if (mb_buf_init(&b, MB_SIG_HDR, 0) != 0) return MB_ENOMEM;
  mb_tw_begin(&w, &b);
  mb_tw_table(&w, 0);
  mb_tw_string(&w, "module");
  mb_tw_string(&w, module);
  if (args) { mb_tw_string(&w, "args"); mb_tw_lstring(&w, args, args_len); }
  if (name) { mb_tw_string(&w, "name"); mb_tw_lstring(&w, name, name_len); }
  mb_tw_string(&w, "parent");
  mb_tw_pid(&w, atomic_load(&self->pid));
  mb_tw_string(&w, "ref");
  mb_tw_ref(&w, ref);
  mb_tw_end(&w);
  if (mb_tw_finish(&w) != 0) { mb_buf_free(&b); return MB_ENOMEM; }
  mb_spawn_req r;
  memset(&r, 0, sizeof r);
  r.body = mb_gen_server_body;
  r.module = module;
  r.args = mb_sig_from_buf(&b, MB_SIG_MSG, 0, 0);
  r.link = link ? self : NULL;
  r.monitor = self;
  r.mref = ref;
  r.call_monitor = 1;
  r.handoff = 1;   /* self waits for its init's answer */
  return mb_spawn_proc(n, &r, pid);
}
