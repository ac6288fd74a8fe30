/* luatab: what the codec reads from Lua 5.4's private table layout, and the probe
 * that checks the running Lua before any of it is trusted.
 *
 * Why: no public call says whether keys 1..n live in the array part (so that the
 * hash part holds none of them), and reading a table through the API costs ~80
 * instructions an element (lua_rawgeti, lua_isinteger, lua_tointegerx) and ~400 a
 * string pair (lua_next re-finds the previous key, lua_type, lua_tolstring),
 * where the copy itself costs ten. What is read, for Lua 5.4 on a 64-bit ABI:
 *   Table:   GC header (pointer, two bytes), flags (bit 7: alimit is not the real
 *            array size, which is then the next power of two), lsizenode, unsigned
 *            alimit, TValue *array, Node *node; t[1..alimit] are in the array.
 *   TValue:  8 bytes of value, a tag byte (16 bytes).
 *   Node:    a TValue's fields, the key's tag, int next, the key's value (24 bytes).
 *   TString: GC header, extra, shrlen, hash, size_t lnglen, then the bytes.
 * Only reads, only of integers, floats, booleans and strings; everything else
 * goes through the public API. The probe builds tables and strings with public
 * calls and reads them back; on any mismatch (another Lua, another layout,
 * another ABI) nothing is trusted and the codec uses the public API only.
 * MB_CODEC_PORTABLE=1 in the environment skips the probe and forces the public
 * API (the test suite runs the codec both ways). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "luatab.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int trusted;

/* ---- the probe ---- */

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
static const char probe_long[] = "a string longer than any short string, which is forty bytes";

/* The string at idx read through the layout equals what lua_tolstring says. */
static int string_reads_back(lua_State *L, int idx, unsigned char tag) {
  size_t n, m;
  const char *s = lua_tolstring(L, idx, &n);
  return mb_luatab_string(lua_topointer(L, idx), tag, &m) == s && m == n;
}

/* A node of the view whose key is the value at kidx (same tag, same bits). */
static const mb_luatab_node *find_node(lua_State *L, const mb_luatab_view *v, int kidx,
                                       unsigned char ktag) {
  for (size_t i = 0; i < v->nnodes; i++) {
    const mb_luatab_node *nd = &v->nodes[i];
    if (mb_luatab_empty(nd->tag) || nd->key_tag != ktag) continue;
    if (ktag == MB_LUATAB_INT ? nd->key.i == lua_tointeger(L, kidx)
        : ktag == MB_LUATAB_FLOAT ? nd->key.n == lua_tonumber(L, kidx)
        : nd->key.p == lua_topointer(L, kidx))
      return nd;
  }
  return NULL;
}

static int probe_arrays(lua_State *L) {
  static const int sizes[] = {0, 1, 3, 17, 100, 1000, 4097};
  mb_luatab_view v;
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    lua_createtable(L, sizes[i], 3);
    mb_luatab_view_of(L, -1, &v);
    if (v.keys != (lua_Unsigned)sizes[i] || v.asize != v.keys || v.nnodes != 4) return 0;
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
  mb_luatab_view_of(L, -1, &v);
  const mb_luatab_slot *a = v.array;
  lua_rawgeti(L, -1, 3);
  int ok = v.keys == 4 && a && a[0].tag == MB_LUATAB_INT && a[0].v.i == probe_int &&
           a[1].tag == MB_LUATAB_FLOAT && a[1].v.n == probe_float && a[2].tag == MB_LUATAB_SHRSTR &&
           a[2].v.p == lua_topointer(L, -1) && string_reads_back(L, -1, MB_LUATAB_SHRSTR) &&
           a[3].tag == MB_LUATAB_TRUE && v.nnodes == 1 && mb_luatab_empty(v.nodes[0].tag);
  lua_pop(L, 2);
  if (!ok) return 0;
  /* 1..8 appended, t[8] removed: alimit may drop to the border (7) and then says
   * it is not the real size (8); either way the ninth slot is not in the array */
  lua_createtable(L, 0, 0);
  for (int i = 1; i <= 8; i++) {
    lua_pushinteger(L, i);
    lua_rawseti(L, -2, i);
  }
  lua_pushnil(L);
  lua_rawseti(L, -2, 8);
  ok = lua_rawlen(L, -1) == 7;
  mb_luatab_view_of(L, -1, &v);
  ok = ok && v.asize == 8 && (v.keys == 7 || v.keys == 8) && mb_luatab_empty(v.array[7].tag) &&
       v.array[6].tag == MB_LUATAB_INT && v.array[6].v.i == 7;
  lua_pop(L, 1);
  return ok;
}

static int probe_hash(lua_State *L) {
  mb_luatab_view v;
  lua_createtable(L, 0, 5);
  int t = lua_gettop(L);
  lua_pushliteral(L, "alpha");               /* t.alpha = 7 */
  lua_pushinteger(L, 7);
  lua_rawset(L, t);
  lua_pushstring(L, probe_long);             /* t[long] = "x" */
  lua_pushliteral(L, "x");
  lua_rawset(L, t);
  lua_pushnumber(L, probe_float);            /* t[2.5] = true */
  lua_pushboolean(L, 1);
  lua_rawset(L, t);
  lua_pushinteger(L, probe_int);             /* t[probe_int] = long */
  lua_pushstring(L, probe_long);
  lua_rawset(L, t);
  lua_pushboolean(L, 0);                     /* t[false] = 2.5 */
  lua_pushnumber(L, probe_float);
  lua_rawset(L, t);
  mb_luatab_view_of(L, t, &v);
  if (v.keys != 0 || v.nnodes != 8) return 0;
  size_t live = 0;
  for (size_t i = 0; i < v.nnodes; i++) live += !mb_luatab_empty(v.nodes[i].tag);
  if (live != 5) return 0;
  const mb_luatab_node *nd;
  lua_pushliteral(L, "alpha");
  nd = find_node(L, &v, -1, MB_LUATAB_SHRSTR);
  if (!nd || nd->tag != MB_LUATAB_INT || nd->v.i != 7 || !string_reads_back(L, -1, MB_LUATAB_SHRSTR))
    return 0;
  lua_pushstring(L, probe_long);             /* a long string: find the key by its bytes */
  lua_pushnil(L);
  nd = NULL;
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING && lua_rawequal(L, -1, t + 2)) {
      nd = find_node(L, &v, -1, MB_LUATAB_LNGSTR);
      if (!string_reads_back(L, -1, MB_LUATAB_LNGSTR)) return 0;
      break;
    }
  }
  if (!nd || nd->tag != MB_LUATAB_SHRSTR) return 0;
  lua_settop(L, t);
  lua_pushnumber(L, probe_float);
  nd = find_node(L, &v, -1, MB_LUATAB_FLOAT);
  if (!nd || nd->tag != MB_LUATAB_TRUE) return 0;
  lua_pushinteger(L, probe_int);
  nd = find_node(L, &v, -1, MB_LUATAB_INT);
  if (!nd || nd->tag != MB_LUATAB_LNGSTR) return 0;
  for (size_t i = 0; i < v.nnodes; i++)
    if (v.nodes[i].key_tag == MB_LUATAB_FALSE && v.nodes[i].tag == MB_LUATAB_FLOAT &&
        v.nodes[i].v.n == probe_float)
      return 1;
  return 0;
}

static int probe_all(lua_State *L) {
  int *ok = lua_touserdata(L, 1);
  /* the Lua that runs (a host's lua5.4, a linked liblua), not the headers built against */
  *ok = lua_version(L) == 504 && sizeof(mb_luatab_slot) == 16 && sizeof(mb_luatab_node) == 24 &&
        probe_arrays(L) && probe_hash(L);
  return 0;
}

static void probe(void) {
  int ok = 0;
  const char *portable = getenv("MB_CODEC_PORTABLE");
  if (portable && *portable && strcmp(portable, "0") != 0) return;
  lua_State *L = lua_newstate(probe_alloc, NULL);
  if (!L) return;
  lua_pushcfunction(L, probe_all);
  lua_pushlightuserdata(L, &ok);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) ok = 0;
  lua_close(L);
  trusted = ok;
}

int mb_luatab_trusted(void) {
  pthread_once(&once, probe);
  return trusted;
}
