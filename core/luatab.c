/* luatab: the one fact the codec reads from Lua 5.4's private table layout —
 * how many leading integer keys a table keeps in its array part — and the probe
 * that checks the running Lua before that fact is trusted.
 *
 * Why: to copy t[1..n] by index and then walk only the rest with lua_next, the
 * encoder must know that keys 1..n are not also in the hash part; no public call
 * says so, and walking every element with lua_next costs three times the copy.
 * Lua 5.4's Table starts with the GC header (a pointer and two bytes), `flags`,
 * `lsizenode`, then `unsigned alimit`, and keeps t[1..alimit] in its array part
 * (alimit never exceeds the array's real size). The probe builds tables of known
 * array sizes with lua_createtable and reads them back; on any mismatch (another
 * Lua, another layout) the hint is 0 and the encoder walks everything. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "luatab.h"

#define ALIMIT_OFFSET (sizeof(void *) + 4)

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

static int probe_tables(lua_State *L) {
  static const int sizes[] = {0, 1, 3, 17, 100, 1000, 4097};
  int *ok = lua_touserdata(L, 1);
  *ok = LUA_VERSION_NUM == 504;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    lua_createtable(L, sizes[i], 3);
    if (read_alimit(lua_topointer(L, -1)) != (unsigned)sizes[i]) *ok = 0;
    lua_pop(L, 1);
  }
  return 0;
}

static void probe(void) {
  int ok = 0;
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

lua_Unsigned mb_luatab_array_keys(lua_State *L, int idx) {
  if (!mb_luatab_trusted()) return 0;
  return read_alimit(lua_topointer(L, idx));
}
