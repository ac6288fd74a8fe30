/* term: pids, refs and I/O handles as Lua userdata, interned per state so that equal ids are the same value. */
#ifndef MB_TERM_H
#define MB_TERM_H

#include <stdint.h>
#include <lua.h>
#include "moonbeam.h"

#define MB_HANDLE_MT "moonbeam.handle"

/* A pid or ref whose id is below 2^48 is a light userdata: the id under a tag in
 * the top 16 bits, which no address a program holds has (user-space addresses are
 * below 2^47; the tags are not small integers either). It costs nothing to push
 * (no allocation, no lookup), is the same value wherever it is pushed, and works as
 * a table key. One of a larger id (a node that made 2^48 refs) is a full userdata
 * interned per state, as a handle is. All light userdata of a state share one
 * metatable, made by mb_light_prepare: its __tostring renders these and, for any
 * other light userdata (a host program's), what Lua's default would. */
#define MB_LIGHT_ID_MASK (((uint64_t)1 << 48) - 1)
#define MB_LIGHT_TAG_MASK (~MB_LIGHT_ID_MASK)
#define MB_LIGHT_PID ((uint64_t)0x7A1D << 48)
#define MB_LIGHT_REF ((uint64_t)0x7A1E << 48)

/* 1 and *id if the light userdata's pointer p is a pid (tag MB_LIGHT_PID) or a ref
 * (MB_LIGHT_REF), as asked by tag. */
static inline int mb_light_is(const void *p, uint64_t tag, uint64_t *id) {
  uint64_t v = (uint64_t)(uintptr_t)p;
  if ((v & MB_LIGHT_TAG_MASK) != tag) return 0;
  *id = v & MB_LIGHT_ID_MASK;
  return 1;
}

/* Make sure the state's light userdata metatable exists. Pushing a pid or ref does
 * not: whatever lets Lua code render values (tostring, string.format) calls this
 * when it opens (the process environment does, for the base and string libraries). */
void mb_light_prepare(lua_State *L);
/* luaL_tolstring, which renders pids and refs as <0.N> in any state. */
const char *mb_tolstring(lua_State *L, int idx, size_t *len);

/* Push the pid (ref) userdata for id; the same id gives the same userdata in one state. */
void mb_push_pid(lua_State *L, mb_pid pid);
void mb_push_ref(lua_State *L, uint64_t ref);

/* 1 and *out set if the value at idx is a pid (ref); else 0. Never raises. A light
 * pid, the commonest (every send asks), is told inline by its pointer alone: a full
 * userdata's block is never at an address with a pid's or ref's tag bits (bits
 * 48..62, above any user-space address, tagged or not); mb_test_pid_boxed looks at
 * the rest (a box of an id too large to be light). */
int mb_test_pid_boxed(lua_State *L, int idx, mb_pid *out);
static inline int mb_test_pid(lua_State *L, int idx, mb_pid *out) {
  uint64_t id;
  if (!mb_light_is(lua_touserdata(L, idx), MB_LIGHT_PID, &id)) return mb_test_pid_boxed(L, idx, out);
  if (out) *out = id;
  return 1;
}
int mb_test_ref(lua_State *L, int idx, uint64_t *out);

/* A call's `from` (gen_server): the table {pid, ref}, Erlang's {Pid, Tag}. test: 1
 * and the two set if the value at idx has that shape; else 0. Never raises. */
void mb_push_from(lua_State *L, mb_pid pid, uint64_t ref);
int mb_test_from(lua_State *L, int idx, mb_pid *pid, uint64_t *ref);

/* The pid (ref) at idx, or a luaL_argerror. */
mb_pid mb_check_pid(lua_State *L, int idx);
uint64_t mb_check_ref(lua_State *L, int idx);

/* An I/O handle: (kind, id) as in the node's handle table (handle.h); tostring
 * "#Port<0.ID>". Interned like pids. Pushes it and returns 0, or returns -1 and
 * pushes nothing if kind or id is out of range or this state already holds id
 * with another kind (only a forged encoding can ask for that). */
int mb_push_handle(lua_State *L, int kind, uint64_t id);
int mb_test_handle(lua_State *L, int idx, int *kind, uint64_t *id);
/* The id of the handle at idx, which the caller has tested already (a value of its
 * own stack it has not changed since): no checks. */
uint64_t mb_handle_id_at(lua_State *L, int idx);
/* The methods of a kind of handle (`conn:recv()`): open pushes the kind's method
 * table, made once per state the first time a method is looked up. Register
 * before any node runs; any state holding such a handle then finds them, whether
 * or not it required the module. */
void mb_handle_methods(int kind, lua_CFunction open);

#endif
