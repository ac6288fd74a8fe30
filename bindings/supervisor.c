/* supervisor: the `moonbeam.supervisor` Lua module (SPEC section 3). Thin: a spec
 * is checked and written in its normal form here (bindings/supspec.c); the
 * supervisor itself is a native process (core/supervisor.c). start_link waits
 * like gen_server.start_link; the other functions are calls to the supervisor
 * (gen_server.call's, flagged MB_SIGF_TRUSTED; no timeout) whose replies are turned into SPEC's
 * return shapes by a continuation. */
#include <lauxlib.h>
#include <math.h>
#include <string.h>
#include "luaface.h"
#include "call.h"
#include "cterm.h"
#include "scheduler.h"
#include "supervisor.h"
#include "supspec.h"   /* the Lua face's checker (bindings/), and core/supspec.h */

static mb_proc *self_proc(lua_State *L) {
  mb_proc *p = mb_proc_of(L);
  if (!p) luaL_error(L, "moonbeam.supervisor: not inside a moonbeam process");
  return p;
}

static int l_start_link(lua_State *L) {
  mb_proc *p = self_proc(L);
  mb_node *n = p->node;
  lua_settop(L, 1);   /* a spec that is not a table is an invalid spec, answered below */
  if (!mb_proc_can_yield(L, p) || !mb_sched_self())
    return luaL_error(L, "start_link: cannot block here (attempt to yield across a C-call boundary)");
  mb_buf b;
  char err[512];
  if (mb_buf_init(&b, 0, n->max_message) != 0) return luaL_error(L, "start_link: not enough memory");
  if (mb_l_sup_spec(L, n, 1, &b, err, sizeof err) != 0) {
    mb_buf_free(&b);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  mb_sup_spec *spec = mb_sup_spec_parse(b.data + b.start, b.len - b.start, err, sizeof err);
  mb_buf_free(&b);
  if (!spec) return luaL_error(L, "start_link: %s", err);
  mb_call c;
  memset(&c, 0, sizeof c);
  c.ref = mb_node_make_ref(n);
  c.mark = mb_recv_mark(p);
  if (mb_call_ref_add(p, c.ref) < 0) { mb_sup_spec_free(spec); return luaL_error(L, "start_link: not enough memory"); }
  int rc = mb_supervisor_spawn(p, spec, c.ref, &c.server);
  if (rc != 0) { mb_call_ref_del(p, c.ref); return luaL_error(L, "start_link: %s", mb_strerror(rc)); }
  return mb_l_start_wait(L, p, &c, 0, 1);
}

/* ---- calls ---- */

enum { R_RESULT, R_AS_IS };

/* The reply is on top: {true [, pid]} -> pid or true; {false, reason [, pid]} ->
 * nil, reason [, pid]; which_children and count_children as they are. */
static int reply_k(lua_State *L, int status, lua_KContext how) {
  (void)status;
  if (how == R_AS_IS || !lua_istable(L, -1)) return 1;
  int r = lua_gettop(L);
  lua_rawgeti(L, r, 1);
  if (lua_toboolean(L, -1)) {
    if (lua_rawgeti(L, r, 2) == LUA_TNIL) lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_rawgeti(L, r, 2);
  if (lua_rawgeti(L, r, 3) == LUA_TNIL) { lua_pop(L, 1); return 2; }
  return 3;
}

/* Call the supervisor at 1 with the request table on top. */
static int sup_call(lua_State *L, int how) {
  int req = lua_gettop(L);
  lua_pushcfunction(L, mb_l_gen_call_trusted);   /* a start_child gen_server.call cannot make */
  lua_pushvalue(L, 1);
  lua_pushvalue(L, req);
  lua_pushnumber(L, HUGE_VAL);
  lua_callk(L, 3, 1, how, reply_k);
  return reply_k(L, LUA_OK, how);
}

/* {op [, the value at arg]} */
static void request(lua_State *L, const char *op, int arg) {
  lua_createtable(L, 2, 0);
  lua_pushstring(L, op);
  lua_rawseti(L, -2, 1);
  if (arg) { lua_pushvalue(L, arg); lua_rawseti(L, -2, 2); }
}

static void check_sup(lua_State *L) {
  if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TUSERDATA && lua_type(L, 1) != LUA_TLIGHTUSERDATA)
    luaL_typeerror(L, 1, "pid or registered name");
}

static void check_id(lua_State *L) {
  if (!lua_isinteger(L, 2) && lua_type(L, 2) != LUA_TSTRING) luaL_typeerror(L, 2, "child id (string or integer)");
}

static int l_start_child(lua_State *L) {
  mb_proc *p = self_proc(L);
  lua_settop(L, 2);
  check_sup(L);
  mb_buf b;
  char err[512];
  if (mb_buf_init(&b, 0, p->node->max_message) != 0) return luaL_error(L, "start_child: not enough memory");
  if (mb_l_child_spec(L, p->node, 2, &b, err, sizeof err) != 0) {
    mb_buf_free(&b);
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, b.data + b.start, b.len - b.start);   /* may raise: b is freed first */
  mb_buf_free(&b);
  request(L, "start_child", 3);
  return sup_call(L, R_RESULT);
}

static int id_call(lua_State *L, const char *op) {
  self_proc(L);
  lua_settop(L, 2);
  check_sup(L);
  check_id(L);
  request(L, op, 2);
  return sup_call(L, R_RESULT);
}

static int l_terminate_child(lua_State *L) { return id_call(L, "terminate_child"); }
static int l_restart_child(lua_State *L) { return id_call(L, "restart_child"); }
static int l_delete_child(lua_State *L) { return id_call(L, "delete_child"); }

static int plain_call(lua_State *L, const char *op) {
  self_proc(L);
  lua_settop(L, 1);
  check_sup(L);
  request(L, op, 0);
  return sup_call(L, R_AS_IS);
}

static int l_which_children(lua_State *L) { return plain_call(L, "which_children"); }
static int l_count_children(lua_State *L) { return plain_call(L, "count_children"); }

int luaopen_moonbeam_supervisor(lua_State *L) {
  static const luaL_Reg functions[] = {
    { "start_link", l_start_link }, { "start_child", l_start_child },
    { "terminate_child", l_terminate_child }, { "restart_child", l_restart_child },
    { "delete_child", l_delete_child }, { "which_children", l_which_children },
    { "count_children", l_count_children }, { NULL, NULL } };
  luaL_newlib(L, functions);
  return 1;
}
