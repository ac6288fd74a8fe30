/* luatab: what the codec may know of a Lua table beyond the public API (see luatab.c). */
#ifndef MB_LUATAB_H
#define MB_LUATAB_H

#include <lua.h>

/* 1 when the running Lua passed the layout probe (done once per program). */
int mb_luatab_trusted(void);

/* For the table at idx: a k such that t[1..k] all live in its array part, so no
 * key 1..k is in the hash part. 0 when unknown. */
lua_Unsigned mb_luatab_array_keys(lua_State *L, int idx);

#endif
