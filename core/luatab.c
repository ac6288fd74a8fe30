/* luatab: what the codec reads from Lua 5.4's private table layout — how many
 * leading integer keys a table keeps in its array part, and the integers and
 * floats stored there — and the probe that checks the running Lua before any of
 * it is trusted.
 *
 * Why: no public call says whether keys 1..n live in the array part (so that the
 * hash part holds none of them), and reading an element through the API costs
 * ~80 instructions (lua_rawgeti, lua_isinteger, lua_tointegerx) where the copy
 * itself costs ten. Lua 5.4's Table starts with the GC header (a pointer and two
 * bytes), `flags`, `lsizenode`, `unsigned alimit`, then `TValue *array`; it keeps
 * t[1..alimit] in that array (alimit never exceeds its real size), and a TValue
 * is 16 bytes: the value, then a tag byte (3 for an integer, 0x13 for a float).
 * The probe builds tables with lua_createtable and lua_rawseti and reads them
 * back; on any mismatch (another Lua, another layout, another ABI) nothing is
 * trusted and the encoder uses the public API only. MB_CODEC_PORTABLE=1 in the
 * environment skips the probe and forces the public API (the test suite runs the
 * codec both ways). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "luatab.h"

#define ALIMIT_OFFSET (sizeof(void *) + 4)
#define ARRAY_OFFSET  (sizeof(void *) + 8)

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int trusted;

static unsigned read_alimit(const void *t) {
  unsigned v;
  memcpy(&v, (const char *)t + ALIMIT_OFFSET, sizeof v);
  return v;
}

static void *probe_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, nsize);
}

static const lua_Integer probe_int = 0x0102030405060708;
static const lua_Number probe_float = 2.5;

static int probe_tables(lua_State *L) {
  static const int sizes[] = {0, 1, 3, 17, 100, 1000, 4097};
  int *ok = lua_touserdata(L, 1);
  *ok = LUA_VERSION_NUM == 504 && sizeof(mb_luatab_slot) == 16;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    lua_createtable(L, sizes[i], 3);
    if (read_alimit(lua_topointer(L, -1)) != (unsigned)sizes[i]) *ok = 0;
    lua_pop(L, 1);
  }
  lua_createtable(L, 4, 0);
  lua_pushinteger(L, probe_int);
  lua_rawseti(L, -2, 1);
  lua_pushnumber(L, probe_float);
  lua_rawseti(L, -2, 2);
  lua_pushliteral(L, "x");
  lua_rawseti(L, -2, 3);
  lua_pushboolean(L, 1);
  lua_rawseti(L, -2, 4);
  const mb_luatab_slot *a;
  memcpy(&a, (const char *)lua_topointer(L, -1) + ARRAY_OFFSET, sizeof a);
  if (read_alimit(lua_topointer(L, -1)) != 4 || !a || a[0].tag != MB_LUATAB_INT ||
      a[0].v.i != probe_int || a[1].tag != MB_LUATAB_FLOAT || a[1].v.n != probe_float ||
      a[2].tag == MB_LUATAB_INT || a[2].tag == MB_LUATAB_FLOAT ||
      a[3].tag == MB_LUATAB_INT || a[3].tag == MB_LUATAB_FLOAT)
    *ok = 0;
  lua_pop(L, 1);
  return 0;
}

static void probe(void) {
  int ok = 0;
  const char *portable = getenv("MB_CODEC_PORTABLE");
  if (portable && *portable && strcmp(portable, "0") != 0) return;
  lua_State *L = lua_newstate(probe_alloc, NULL);
  if (!L) return;
  lua_pushcfunction(L, probe_tables);
  lua_pushlightuserdata(L, &ok);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) ok = 0;
  lua_close(L);
  trusted = ok;
}

int mb_luatab_trusted(void) {
  pthread_once(&once, probe);
  return trusted;
}

const mb_luatab_slot *mb_luatab_array(lua_State *L, int idx, lua_Unsigned *keys) {
  const mb_luatab_slot *a;
  const char *t = lua_topointer(L, idx);
  if (!mb_luatab_trusted()) {
    *keys = 0;
    return NULL;
  }
  *keys = read_alimit(t);
  memcpy(&a, t + ARRAY_OFFSET, sizeof a);
  return a;
}
