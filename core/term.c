/* term: pids and refs as Lua userdata. Each state keeps a weak table per kind
 * (id -> userdata) so one id is one value: `==` and table keys just work without
 * an __eq, and a pid never equals a ref. */
#include <lauxlib.h>
#include <inttypes.h>
#include <stdio.h>
#include "term.h"

typedef struct { uint64_t id; } box;

static int pid_tostring(lua_State *L) {
  box *b = luaL_checkudata(L, 1, MB_PID_MT);
  lua_pushfstring(L, "<0.%I>", (lua_Integer)b->id);
  return 1;
}

static int ref_tostring(lua_State *L) {
  box *b = luaL_checkudata(L, 1, MB_REF_MT);
  lua_pushfstring(L, "#Ref<0.%I>", (lua_Integer)b->id);
  return 1;
}

/* The intern table for a kind lives in the registry under the metatable name's address. */
static void push_box(lua_State *L, const char *mt, lua_CFunction tostr, uint64_t id) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, mt) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 4);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, mt);
  }
  if (lua_rawgeti(L, -1, (lua_Integer)id) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  box *b = lua_newuserdatauv(L, sizeof(box), 0);
  b->id = id;
  if (luaL_newmetatable(L, mt)) {
    lua_pushcfunction(L, tostr);
    lua_setfield(L, -2, "__tostring");
    lua_pushstring(L, mt);
    lua_setfield(L, -2, "__name");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, (lua_Integer)id);
  lua_remove(L, -2);
}

void mb_push_pid(lua_State *L, mb_pid pid) { push_box(L, MB_PID_MT, pid_tostring, pid); }
void mb_push_ref(lua_State *L, uint64_t ref) { push_box(L, MB_REF_MT, ref_tostring, ref); }

static int test_box(lua_State *L, int idx, const char *mt, uint64_t *out) {
  box *b = luaL_testudata(L, idx, mt);
  if (!b) return 0;
  if (out) *out = b->id;
  return 1;
}

int mb_test_pid(lua_State *L, int idx, mb_pid *out) { return test_box(L, idx, MB_PID_MT, out); }
int mb_test_ref(lua_State *L, int idx, uint64_t *out) { return test_box(L, idx, MB_REF_MT, out); }

mb_pid mb_check_pid(lua_State *L, int idx) {
  mb_pid p = 0;
  if (!mb_test_pid(L, idx, &p)) luaL_typeerror(L, idx, "pid");
  return p;
}

uint64_t mb_check_ref(lua_State *L, int idx) {
  uint64_t r = 0;
  if (!mb_test_ref(L, idx, &r)) luaL_typeerror(L, idx, "ref");
  return r;
}
