/* term: pids, refs and I/O handles as Lua userdata. Pids and refs are light
 * userdata (term.h) unless their id is too large; those, and handles, are full
 * userdata that each state interns per kind (id -> userdata, weakly) so one id is
 * one value: `==` and table keys just work without an __eq, and a pid never
 * equals a ref. A handle's userdata also holds its handle kind (ids are unique
 * across handle kinds: one intern table). */
#include <lauxlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>
#include "term.h"
#include "handle.h"

/* `key` is the registry key of its kind (&pid_key, &ref_key, &handle_key), written
 * by push_box only: Lua code cannot write a userdata's bytes, and no other
 * userdata of the same size holds one of these addresses there (a file handle's
 * second word is one of liblua's close functions), so a test is a size and a
 * compare, with nothing pushed. */
typedef struct { uint64_t id; const char *key; } box;
typedef struct { box b; uint64_t kind; } hbox;   /* a handle */

/* registry keys: the addresses of these */
static const char pid_key, ref_key;
static const char handle_key;
static const char methods_key[MB_HANDLE_KINDS];   /* a kind's metatable (set_kind_meta) */
static _Atomic(lua_CFunction) methods_open[MB_HANDLE_KINDS];

static void *test_box(lua_State *L, int idx, const char *key, size_t size, uint64_t *out);

static int pid_tostring(lua_State *L) {
  uint64_t id = 0;
  if (!mb_test_pid(L, 1, &id)) return luaL_typeerror(L, 1, "pid");
  lua_pushfstring(L, "<0.%I>", (lua_Integer)id);
  return 1;
}

static int ref_tostring(lua_State *L) {
  uint64_t id = 0;
  if (!mb_test_ref(L, 1, &id)) return luaL_typeerror(L, 1, "ref");
  lua_pushfstring(L, "#Ref<0.%I>", (lua_Integer)id);
  return 1;
}

/* __tostring of every light userdata in a state. */
static int light_tostring(lua_State *L) {
  if (lua_type(L, 1) != LUA_TLIGHTUSERDATA) return luaL_typeerror(L, 1, "light userdata");
  void *p = lua_touserdata(L, 1);
  uint64_t id;
  if (mb_light_is(p, MB_LIGHT_PID, &id)) lua_pushfstring(L, "<0.%I>", (lua_Integer)id);
  else if (mb_light_is(p, MB_LIGHT_REF, &id)) lua_pushfstring(L, "#Ref<0.%I>", (lua_Integer)id);
  else lua_pushfstring(L, "userdata: %p", p);
  return 1;
}

/* A new metatable on top: __tostring, __name (unless mt is NULL), a hidden
 * __metatable, room for more. */
static void new_meta(lua_State *L, int size, const char *mt, lua_CFunction tostr) {
  lua_createtable(L, 0, size);
  lua_pushcfunction(L, tostr);
  lua_setfield(L, -2, "__tostring");
  if (mt) {
    lua_pushstring(L, mt);
    lua_setfield(L, -2, "__name");
  }
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
}

/* Give the state's light userdata their metatable, unless they have one: __tostring,
 * and a hidden __metatable as a box's has (the core reads nothing from it: a pid is
 * tested by its bits). Pushing a pid does not make it: only what renders values
 * needs it (the process environment's base and string libraries, mb_tolstring),
 * and an idle process that holds a pid and renders nothing saves its 175 bytes. */
void mb_light_prepare(lua_State *L) {
  lua_pushlightuserdata(L, NULL);
  if (!lua_getmetatable(L, -1)) {
    new_meta(L, 2, NULL, light_tostring);
    lua_setmetatable(L, -2);
  } else {
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

const char *mb_tolstring(lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) == LUA_TLIGHTUSERDATA) mb_light_prepare(L);
  return luaL_tolstring(L, idx, len);
}

void mb_handle_methods(int kind, lua_CFunction open) {
  if (kind > 0 && kind < MB_HANDLE_KINDS) atomic_store(&methods_open[kind], open);
}

static int handle_tostring(lua_State *L) {
  uint64_t id = 0;
  if (!test_box(L, 1, &handle_key, sizeof(hbox), &id)) return luaL_typeerror(L, 1, "handle");
  lua_pushfstring(L, "#Port<0.%I>", (lua_Integer)id);
  return 1;
}

/* Per kind, the registry holds its metatable under the address of a static key
 * (a light userdata: no string hashing on the hot path). The metatable is also the
 * kind's intern table (id -> userdata): its own metatable (its __mode makes its
 * values weak; one table less to build per kind and state), and its string fields
 * are never collected. One table per kind and state; made
 * (replacing the non-table on top) the first time, out of the hot path. */

/* The intern table of boxed pids or refs (ids past 2^48), its own metatable. No
 * __name (a type error names the value "userdata"): while every pid was a box, it
 * cost a process that held one pid 164 bytes. Sized for three fields and a box. */
static __attribute__((noinline)) void make_meta(lua_State *L, const char *key, lua_CFunction tostr) {
  lua_pop(L, 1);
  new_meta(L, 4, NULL, tostr);
  lua_pushliteral(L, "v");   /* for the table as its own metatable; a userdata ignores it */
  lua_setfield(L, -2, "__mode");
  lua_pushvalue(L, -1);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* Push the interned box for id, or a new one of `size` bytes, zeroed past the id.
 * Inlined: each caller's size is a constant. */
static inline __attribute__((always_inline)) void push_box(lua_State *L, const char *key,
                                                           lua_CFunction tostr, uint64_t id, size_t size) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TTABLE) make_meta(L, key, tostr); /* mt */
  if (lua_rawgeti(L, -1, (lua_Integer)id) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  box *b = lua_newuserdatauv(L, size, 0);        /* mt ud */
  b->id = id;
  b->key = key;                                  /* the kind, for a cheap test_box */
  if (size > sizeof(box)) memset(b + 1, 0, size - sizeof(box));
  lua_pushvalue(L, -2);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawseti(L, -3, (lua_Integer)id);
  lua_remove(L, -2);
}

void mb_push_pid(lua_State *L, mb_pid pid) {
  if (pid <= MB_LIGHT_ID_MASK) lua_pushlightuserdata(L, (void *)(uintptr_t)(MB_LIGHT_PID | pid));
  else push_box(L, &pid_key, pid_tostring, pid, sizeof(box));
}

void mb_push_ref(lua_State *L, uint64_t ref) {
  if (ref <= MB_LIGHT_ID_MASK) lua_pushlightuserdata(L, (void *)(uintptr_t)(MB_LIGHT_REF | ref));
  else push_box(L, &ref_key, ref_tostring, ref, sizeof(box));
}

void mb_push_from(lua_State *L, mb_pid pid, uint64_t ref) {
  lua_createtable(L, 2, 0);
  mb_push_pid(L, pid);
  lua_rawseti(L, -2, 1);
  mb_push_ref(L, ref);
  lua_rawseti(L, -2, 2);
}

int mb_test_from(lua_State *L, int idx, mb_pid *pid, uint64_t *ref) {
  if (lua_type(L, idx) != LUA_TTABLE) return 0;
  idx = lua_absindex(L, idx);
  lua_rawgeti(L, idx, 1);
  lua_rawgeti(L, idx, 2);
  int ok = mb_test_pid(L, -2, pid) && mb_test_ref(L, -1, ref);
  lua_pop(L, 2);
  return ok;
}

/* A new handle's metatable is its kind's (not the intern table): __index is the
 * kind's method table itself, so `conn:recv` is one table lookup. Made once per
 * kind and state, the registered open function giving the methods. */
static __attribute__((noinline)) void set_kind_meta(lua_State *L, int kind) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &methods_key[kind]) != LUA_TTABLE) {
    lua_pop(L, 1);
    new_meta(L, 4, MB_HANDLE_MT, handle_tostring);
    lua_CFunction open = atomic_load(&methods_open[kind]);
    if (open) {
      lua_pushcfunction(L, open);
      lua_call(L, 0, 1);
      lua_setfield(L, -2, "__index");
    }
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &methods_key[kind]);
  }
  lua_setmetatable(L, -2);
}

int mb_push_handle(lua_State *L, int kind, uint64_t id) {
  if (kind <= 0 || kind >= MB_HANDLE_KINDS || id % MB_HANDLE_CAP == 0) return -1;
  push_box(L, &handle_key, handle_tostring, id, sizeof(hbox));
  hbox *h = lua_touserdata(L, -1);
  if (!h->kind) {   /* new */
    h->kind = (uint64_t)kind;
    set_kind_meta(L, kind);
  } else if (h->kind != (uint64_t)kind) {
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* The kind is the userdata's user value (a light userdata only this file can
 * make): no metatable or registry lookup, so a send's pid test stays cheap. */
static void *test_box(lua_State *L, int idx, const char *key, size_t size, uint64_t *out) {
  /* the size first: the key is read only from a block that has one */
  if (lua_type(L, idx) != LUA_TUSERDATA || lua_rawlen(L, idx) != size) return NULL;
  box *b = lua_touserdata(L, idx);
  if (b->key != key) return NULL;
  if (out) *out = b->id;
  return b;
}

/* A box of an id too large to be light (a box of a smaller id cannot be made: it
 * is not taken). */
static int test_boxed_id(lua_State *L, int idx, const char *key, uint64_t *out) {
  uint64_t id;
  if (lua_type(L, idx) != LUA_TUSERDATA || !test_box(L, idx, key, sizeof(box), &id) || id <= MB_LIGHT_ID_MASK)
    return 0;
  if (out) *out = id;
  return 1;
}

/* A light one by its pointer alone (term.h), or a box. */
static int test_id(lua_State *L, int idx, uint64_t tag, const char *key, uint64_t *out) {
  uint64_t id;
  if (mb_light_is(lua_touserdata(L, idx), tag, &id)) {
    if (out) *out = id;
    return 1;
  }
  return test_boxed_id(L, idx, key, out);
}

int mb_test_pid_boxed(lua_State *L, int idx, mb_pid *out) { return test_boxed_id(L, idx, &pid_key, out); }
int mb_test_ref(lua_State *L, int idx, uint64_t *out) { return test_id(L, idx, MB_LIGHT_REF, &ref_key, out); }

int mb_test_handle(lua_State *L, int idx, int *kind, uint64_t *id) {
  hbox *h = test_box(L, idx, &handle_key, sizeof(hbox), id);
  if (h && kind) *kind = (int)h->kind;
  return h != NULL;
}

uint64_t mb_handle_id_at(lua_State *L, int idx) { return ((box *)lua_touserdata(L, idx))->id; }

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
