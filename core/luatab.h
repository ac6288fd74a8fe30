/* luatab: what the codec may know of a Lua table beyond the public API (see luatab.c). */
#ifndef MB_LUATAB_H
#define MB_LUATAB_H

#include <lua.h>

/* One element of a table's array part, as Lua 5.4 lays it out. */
typedef struct mb_luatab_slot {
  union { lua_Integer i; lua_Number n; void *p; } v;
  unsigned char tag;
} mb_luatab_slot;

#define MB_LUATAB_INT   0x03 /* LUA_TNUMBER, integer variant */
#define MB_LUATAB_FLOAT 0x13 /* LUA_TNUMBER, float variant */

/* 1 when the running Lua passed the layout probe (done once per program). */
int mb_luatab_trusted(void);

/* For the table at idx: its array part, whose first *keys slots hold t[1..*keys]
 * (so no key 1..*keys is in the hash part). *keys is 0 and the result NULL when
 * the layout is not trusted. Valid until the table is written to. */
const mb_luatab_slot *mb_luatab_array(lua_State *L, int idx, lua_Unsigned *keys);

#endif
