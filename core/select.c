/* select: selective receive into a process's Lua state — a message's Lua value, the
 * first message, or the first one a Lua match function accepts — keeping the others
 * queued in order and decoding none twice. Owner only (see core/receive.c for the
 * C selects, which decode nothing). */
#include <lauxlib.h>
#include "select.h"
#include "codec.h"
#include "term.h"

/* Where the decoder keeps p's string cache between messages: in a process state,
 * whose registry no Lua code reaches (only a C library can, on a node started with
 * c_modules: native code, trusted as the core is). Not in a host's state (an
 * external process, p->L NULL), whose Lua code has the whole debug library and may
 * change what the registry holds. */
static void **strcache_memo(mb_proc *p) { return p->L ? &p->strcache : NULL; }

/* Push the Lua value of message m (cached if it was decoded before). */
static void push_message(lua_State *L, mb_proc *p, mb_sig *m) {
  if (m->lref != LUA_NOREF) { lua_rawgeti(L, LUA_REGISTRYINDEX, m->lref); return; }
  if (m->kind == MB_SIG_MSG || m->kind == MB_SIG_REPLY) {
    if (mb_decode_in(L, mb_sig_payload(m), m->len, strcache_memo(p)) != 0) luaL_error(L, "receive: corrupt message");
    return;
  }
  if (m->kind == MB_SIG_CALL || m->kind == MB_SIG_CAST) {   /* Erlang's shapes, for plain receives */
    int call = m->kind == MB_SIG_CALL;
    lua_createtable(L, call ? 3 : 2, 0);
    lua_pushstring(L, !call ? "$gen_cast" : (m->flags & MB_SIGF_SYSTEM) ? "$gen_stop" : "$gen_call");
    lua_rawseti(L, -2, 1);
    if (call) { mb_push_from(L, m->from, m->ref); lua_rawseti(L, -2, 2); }
    if (mb_decode_in(L, mb_sig_payload(m), m->len, strcache_memo(p)) != 0) luaL_error(L, "receive: corrupt message");
    lua_rawseti(L, -2, call ? 3 : 2);
    return;
  }
  int down = m->kind == MB_SIG_DOWN;
  lua_createtable(L, down ? 4 : 3, 0);
  lua_pushstring(L, down ? "DOWN" : "EXIT");
  lua_rawseti(L, -2, 1);
  int i = 2;
  if (down) { mb_push_ref(L, m->ref); lua_rawseti(L, -2, i++); }
  mb_push_pid(L, m->from);
  lua_rawseti(L, -2, i++);
  if (mb_decode_in(L, mb_sig_payload(m), m->len, strcache_memo(p)) != 0) luaL_error(L, "receive: corrupt message");
  lua_rawseti(L, -2, i);
}

/* The first message in the inbox: unlinked before it is decoded, so Lua code that
 * runs meanwhile (a finalizer during an allocation, receiving itself) cannot free
 * it under us. While decoded it sits on p->taken (a stack: such receives nest);
 * if decoding raises (memory), it stays there until the process ends. */
static int select_first(lua_State *L, mb_proc *p) {
  mb_sig *prev = NULL, *m = p->inbox;
  while (m && m->kind == MB_SIG_REPLY) { prev = m; m = m->next; }   /* for C selects only */
  if (!m) return 0;
  mb_proc_take(p, prev, m);
  mb_push_taken(L, p, m);
  mb_proc_reduce(p, 1);
  return 1;
}

static void push_taken(lua_State *L, mb_proc *p, mb_sig *m, int payload) {
  m->next = p->taken;
  p->taken = m;
  if (m->lref != LUA_NOREF && !payload) {   /* decoded before by a selective receive */
    lua_rawgeti(L, LUA_REGISTRYINDEX, m->lref);
    luaL_unref(L, LUA_REGISTRYINDEX, m->lref);
  } else if (!payload) {
    push_message(L, p, m);
  } else {
    if (m->lref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, m->lref);
    m->lref = LUA_NOREF;
    if (mb_decode_in(L, mb_sig_payload(m), m->len, strcache_memo(p)) != 0) luaL_error(L, "receive: corrupt message");
  }
  p->taken = m->next;   /* nested receives have popped theirs by now */
  mb_sig_free(m);
}

void mb_push_taken(lua_State *L, mb_proc *p, mb_sig *m) { push_taken(L, p, m, 0); }
void mb_push_taken_payload(lua_State *L, mb_proc *p, mb_sig *m) { push_taken(L, p, m, 1); }

/* Selective receive, run protected with p->selecting set for its whole length:
 * while it walks the inbox, neither the match function nor a finalizer may
 * receive or demonitor (which would unlink messages it holds). The match function
 * can reach this function (debug.getinfo): only mb_select's own call, with the
 * process as a light userdata (Lua code has pids and refs as light userdata, never
 * that one) and p->selecting 1, may run it. */
static __thread mb_proc *select_proc;   /* the process mb_select runs select_match for */

static int select_match(lua_State *L) {
  mb_proc *p = lua_touserdata(L, 1);   /* 2: the match function */
  /* a script has light userdata too (pids, refs): it must be the very process
   * mb_select passed, before anything is read through it */
  if (lua_type(L, 1) != LUA_TLIGHTUSERDATA || !p || p != select_proc || p->selecting != 1)
    return luaL_error(L, "receive: not a selective receive");
  p->selecting = 2;
  mb_sig *prev = p->recv_pos;
  mb_sig *m = prev ? prev->next : p->inbox;
  while (m) {
    if (m->kind == MB_SIG_REPLY) {   /* a call's reply: only C selects take it (core/receive.c) */
      prev = m;
      m = m->next;
      p->recv_pos = prev;
      continue;
    }
    push_message(L, p, m);
    if (m->lref == LUA_NOREF) { lua_pushvalue(L, -1); m->lref = luaL_ref(L, LUA_REGISTRYINDEX); }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);
    int ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (ok) {
      luaL_unref(L, LUA_REGISTRYINDEX, m->lref);
      mb_proc_take(p, prev, m);
      mb_sig_free(m);
      mb_proc_reduce(p, 1);
      return 1;
    }
    lua_pop(L, 1);
    prev = m;
    m = m->next;
    p->recv_pos = prev;
  }
  return 0;
}

int mb_select(lua_State *L, mb_proc *p, int match_idx) {
  if (!match_idx) return select_first(L, p);
  int base = lua_gettop(L);
  lua_pushcfunction(L, select_match);
  lua_pushlightuserdata(L, p);
  lua_pushvalue(L, match_idx);
  p->selecting = 1;
  select_proc = p;   /* no nesting: a match function cannot receive */
  int st = lua_pcall(L, 2, LUA_MULTRET, 0);
  select_proc = NULL;
  p->selecting = 0;
  if (st != LUA_OK) return lua_error(L);
  return lua_gettop(L) - base;   /* 1: the message is on top; 0: none matched */
}
