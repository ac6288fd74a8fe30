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
 *            alimit, TValue *array, Node *node; every key in 1..size is in the array.
 *   TValue:  8 bytes of value, a tag byte (16 bytes).
 *   Node:    a TValue's fields, the key's tag, int next, the key's value (24 bytes).
 *   TString: GC header, extra, shrlen, hash, size_t lnglen, then the bytes.
 * The encoder only reads, only integers, floats, booleans and strings. The
 * decoder writes such values into a new table's array slots (values the GC never
 * follows), and writes pairs of a short string key and a plain value, string or
 * table into a new table's nodes (mb_luatab_newkey, as luaH_newkey does: it also
 * reads the Table's mark byte and lastfree, and a TString's hash), only while the
 * table is not black, so that no GC barrier is owed; everything else goes
 * through the public API. The probe, in a state of its own: lua_version
 * must be 504; tables and strings built with public calls must read back as the
 * API says; for every table of a corpus (arrays grown, made, holed, shrunk and
 * rehashed, alimit flagged and not, hash parts, nested tables) the view must
 * account for exactly the pairs lua_next visits, in its order, and for what
 * lua_rawgeti returns for 1..size+1; the codec must encode each the same
 * bytes in place as through the public API; and a table filled by
 * mb_luatab_newkey must read back through the API (probe_newkey). On any mismatch (another Lua,
 * layout, ABI or array semantics) nothing is trusted and the codec uses the
 * public API only. MB_CODEC_PORTABLE=1 in the environment skips the probe and
 * forces the public API (the test suite runs the codec both ways). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "luatab.h"

#define TABLE_TAG 0x45

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int trusted, probed;
static void (*tamper)(mb_buf *b);

/* (the decoder's new-key writer, mb_luatab_newkey, is inline in luatab.h) */

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

/* mb_luatab_newkey against Lua: a table filled by it, with colliding keys (more
 * keys than sets of the low hash bits), a key put through lua_rawset between, a
 * key already there, and values of each kind, reads back through the API as the
 * pairs written (lua_rawget and a lua_next count); Lua then adds keys of its own to
 * it; "__index" written in takes effect once the table is a metatable (the
 * metamethod cache is cleared at the flags' place); a fresh table's lastfree is
 * its node vector's end; and a table made old by generational collections reads
 * as black and is refused. */
static int probe_newkey(lua_State *L) {
  enum { N = 40 };
  char name[16];
  lua_createtable(L, 0, N + 1);
  int t = lua_gettop(L);
  char *tp = (char *)lua_topointer(L, t);
  mb_luatab_node *nodes, *lastfree;
  memcpy(&nodes, tp + MB_LUATAB_NODE, sizeof nodes);
  memcpy(&lastfree, tp + MB_LUATAB_LASTFREE, sizeof lastfree);
  if (lastfree != nodes + 64 || ((unsigned char)tp[MB_LUATAB_MARKED] & MB_LUATAB_BLACK)) return 0;
  /* the decoder takes a string of at most 40 bytes for a short one (its hash is set) */
  lua_pushlstring(L, probe_long, 40);
  lua_pushlstring(L, probe_long, 41);
  int shrt = mb_luatab_string_tag(lua_topointer(L, -2)) == MB_LUATAB_SHRSTR &&
             mb_luatab_string_tag(lua_topointer(L, -1)) == MB_LUATAB_LNGSTR;
  lua_pop(L, 2);
  if (!shrt) return 0;
  lua_createtable(L, N, 0);   /* the keys, kept alive here */
  int keys = t + 1;
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "k%d", i);
    lua_pushstring(L, name);
    lua_rawseti(L, keys, i + 1);
  }
  for (int i = 0; i < N; i++) {
    lua_rawgeti(L, keys, i + 1);
    mb_luatab_value v;
    unsigned char tag;
    switch (i % 4) {
    case 0: v.i = i; tag = MB_LUATAB_INT; break;
    case 1: v.n = i + 0.5; tag = MB_LUATAB_FLOAT; break;
    case 2: v.i = 0; tag = i % 8 == 2 ? MB_LUATAB_TRUE : MB_LUATAB_FALSE; break;
    default: v.p = lua_topointer(L, -1); tag = MB_LUATAB_SHRSTR; break;   /* the key itself */
    }
    if (i == N / 2) {   /* one through Lua, in the middle */
      lua_pushinteger(L, i);
      lua_rawset(L, t);
      continue;
    }
    const void *ks = lua_topointer(L, -1);
    if (mb_luatab_string_object(lua_tostring(L, -1)) != ks || mb_luatab_newkey(tp, ks, tag, v) != 0 ||
        mb_luatab_newkey(tp, ks, tag, v) != -1)   /* there now */
      return 0;
    lua_pop(L, 1);
  }
  lua_newtable(L);           /* a look-up through t as a metatable caches "no __index" */
  lua_pushvalue(L, t);
  lua_setmetatable(L, -2);
  if (lua_getfield(L, -1, "via") != LUA_TNIL) return 0;
  lua_settop(L, keys);
  lua_pushliteral(L, "__index");              /* t.__index = {via = true} */
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "via");
  if (mb_luatab_newkey(tp, lua_topointer(L, -2), TABLE_TAG, (mb_luatab_value){ .p = lua_topointer(L, -1) }))
    return 0;
  lua_pop(L, 2);
  tp[MB_LUATAB_FLAGS] &= (char)~MB_LUATAB_TMFLAGS;
  size_t count = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) { count++; lua_pop(L, 1); }
  if (count != N + 1) return 0;
  for (int i = 0; i < N; i++) {
    lua_rawgeti(L, keys, i + 1);
    int type = lua_rawget(L, t);
    int ok = i == N / 2 || i % 4 == 0 ? type == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) == i
           : i % 4 == 1 ? type == LUA_TNUMBER && lua_tonumber(L, -1) == i + 0.5
           : i % 4 == 2 ? type == LUA_TBOOLEAN && lua_toboolean(L, -1) == (i % 8 == 2)
           : (lua_rawgeti(L, keys, i + 1), lua_rawequal(L, -1, -2));
    if (!ok) return 0;
    lua_settop(L, keys);
  }
  lua_newtable(L);           /* setmetatable({}, t).via: through t.__index, before a
                             * lua_rawset clears the cache itself */
  lua_pushvalue(L, t);
  lua_setmetatable(L, -2);
  if (lua_getfield(L, -1, "via") != LUA_TBOOLEAN) return 0;
  lua_settop(L, keys);
  for (int i = 0; i < 100; i++) {   /* Lua's own keys after ours: it grows the table */
    lua_pushinteger(L, 1000 + i);
    lua_pushinteger(L, i);
    lua_rawset(L, t);
  }
  lua_rawgeti(L, keys, 4);   /* "k3" */
  if (lua_rawget(L, t) != LUA_TSTRING) return 0;
  lua_pop(L, 1);
  /* an old table is black, and refused */
  lua_gc(L, LUA_GCGEN, 0, 0);
  lua_gc(L, LUA_GCCOLLECT);
  lua_gc(L, LUA_GCCOLLECT);
  int black = ((unsigned char)tp[MB_LUATAB_MARKED] & MB_LUATAB_BLACK) != 0;
  lua_pushliteral(L, "late");
  int refused = mb_luatab_newkey(tp, lua_topointer(L, -1), MB_LUATAB_TRUE, (mb_luatab_value){ .i = 0 }) == -1;
  lua_gc(L, LUA_GCINC, 0, 0, 0);
  lua_settop(L, t - 1);
  return black && refused;
}

/* The value at idx is the one the layout holds as (tag, v): same kind, same bits,
 * the same object for strings and tables. */
static int same_value(lua_State *L, int idx, unsigned char tag, const mb_luatab_value *v) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return mb_luatab_empty(tag);
  case LUA_TBOOLEAN:
    return tag == (lua_toboolean(L, idx) ? MB_LUATAB_TRUE : MB_LUATAB_FALSE);
  case LUA_TNUMBER: {
    if (lua_isinteger(L, idx)) return tag == MB_LUATAB_INT && v->i == lua_tointeger(L, idx);
    lua_Number n = lua_tonumber(L, idx);
    return tag == MB_LUATAB_FLOAT && memcmp(&n, &v->n, sizeof n) == 0;
  }
  case LUA_TSTRING:
    return (tag == MB_LUATAB_SHRSTR || tag == MB_LUATAB_LNGSTR) && v->p == lua_topointer(L, idx) &&
           string_reads_back(L, idx, tag);
  case LUA_TTABLE:
    return tag == TABLE_TAG && v->p == lua_topointer(L, idx);
  case LUA_TLIGHTUSERDATA:
    return tag == MB_LUATAB_LIGHT && v->p == lua_touserdata(L, idx);
  default:
    return 0;
  }
}

/* The view of the table at t accounts for exactly the pairs lua_next visits, in
 * the order it visits them (array slots 1..asize, then the nodes), no node holds
 * a key of 1..asize, and lua_rawgeti (luaH_getint, which may move alimit) agrees
 * on t[1..asize + 1]: what is in the array part, and that asize + 1 is not. */
static int accounts_for(lua_State *L, int t) {
  mb_luatab_view v;
  mb_luatab_view_of(L, t, &v);
  if (v.keys > v.asize || (v.asize && !v.array)) return 0;
  lua_Unsigned i = 0; /* array slots passed */
  size_t j = 0;       /* nodes passed */
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int ok;
    while (i < v.asize && mb_luatab_empty(v.array[i].tag)) i++;
    if (i < v.asize) {
      ok = lua_isinteger(L, -2) && lua_tointeger(L, -2) == (lua_Integer)(i + 1) &&
           same_value(L, -1, v.array[i].tag, &v.array[i].v);
      i++;
    } else {
      while (j < v.nnodes && mb_luatab_empty(v.nodes[j].tag)) j++;
      ok = j < v.nnodes && same_value(L, -2, v.nodes[j].key_tag, &v.nodes[j].key) &&
           same_value(L, -1, v.nodes[j].tag, &v.nodes[j].v) &&
           !(v.nodes[j].key_tag == MB_LUATAB_INT && (lua_Unsigned)v.nodes[j].key.i - 1 < v.asize);
      j++;
    }
    lua_pop(L, ok ? 1 : 2);
    if (!ok) return 0;
  }
  for (; i < v.asize; i++) /* nothing lua_next did not visit */
    if (!mb_luatab_empty(v.array[i].tag)) return 0;
  for (; j < v.nnodes; j++)
    if (!mb_luatab_empty(v.nodes[j].tag)) return 0;
  for (lua_Unsigned k = 1; k <= v.asize + 1; k++) {
    lua_rawgeti(L, t, (lua_Integer)k);
    int ok = k <= v.asize ? same_value(L, -1, v.array[k - 1].tag, &v.array[k - 1].v) : 1;
    if (k > v.asize && !lua_isnil(L, -1)) { /* then it is a node's */
      ok = 0;
      for (j = 0; j < v.nnodes; j++)
        if (v.nodes[j].key_tag == MB_LUATAB_INT && v.nodes[j].key.i == (lua_Integer)k)
          ok = same_value(L, -1, v.nodes[j].tag, &v.nodes[j].v);
    }
    lua_pop(L, 1);
    if (!ok) return 0;
  }
  return 1;
}

static int probe_nop(lua_State *L) { (void)L; return 0; }

/* Values of every kind, in the array part and as hash values, have tags that
 * mb_luatab_known accepts and whose low nibble is their lua_type. */
static int probe_kinds(lua_State *L) {
  lua_createtable(L, 7, 7);
  int t = lua_gettop(L);
  lua_pushcfunction(L, probe_nop);          /* a light C function */
  lua_pushboolean(L, 0);
  lua_pushcclosure(L, probe_nop, 1);        /* a C closure */
  lua_newuserdatauv(L, 8, 0);
  lua_pushlightuserdata(L, &trusted);
  lua_newthread(L);
  lua_createtable(L, 0, 0);
  if (luaL_loadstring(L, "return 1") != LUA_OK) return 0; /* a Lua function */
  for (int i = 7; i >= 1; i--) {
    lua_pushvalue(L, t + i);
    lua_rawseti(L, t, i);                   /* t[i] */
    lua_pushinteger(L, -i);
    lua_pushvalue(L, t + i);
    lua_rawset(L, t);                       /* t[-i] */
  }
  mb_luatab_view v;
  mb_luatab_view_of(L, t, &v);
  int ok = v.keys == 7, live = 0;
  for (int i = 0; ok && i < 7; i++) {
    lua_rawgeti(L, t, i + 1);
    ok = mb_luatab_known(v.array[i].tag) && (v.array[i].tag & 0x0f) == lua_type(L, -1);
    if (ok && lua_type(L, -1) == LUA_TLIGHTUSERDATA)   /* read in place: pids and refs */
      ok = v.array[i].tag == MB_LUATAB_LIGHT && v.array[i].v.p == (const void *)&trusted;
    lua_pop(L, 1);
  }
  for (size_t j = 0; ok && j < v.nnodes; j++) {
    const mb_luatab_node *nd = &v.nodes[j];
    if (mb_luatab_empty(nd->tag)) continue;
    live++;
    ok = nd->key_tag == MB_LUATAB_INT && nd->key.i >= -7 && nd->key.i <= -1 &&
         nd->tag == v.array[-nd->key.i - 1].tag && nd->v.p == v.array[-nd->key.i - 1].v.p;
  }
  lua_settop(L, t - 1);
  return ok && live == 7;
}

/* The codec writes the same bytes for the table at t in place as through the API. */
static int same_encodings(lua_State *L, int t) {
  mb_buf a, b;
  int ok = 0;
  if (mb_buf_init(&a, 0, 0)) return 0;
  if (!mb_buf_init(&b, 0, 0)) {
    /* in place first: the public path's lua_rawgeti may move alimit */
    if (mb_encode_mode(L, t, &a, 1) == 0 && mb_encode_mode(L, t, &b, 0) == 0) {
      if (tamper) tamper(&a);
      ok = a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
    }
    mb_buf_free(&b);
  }
  mb_buf_free(&a);
  return ok;
}

/* Tables of every shape the reader meets (the probe state has no libraries). */
static const char corpus[] =
  "local shapes, n = {}\n"
  "local function add(t) shapes[#shapes + 1] = t end\n"
  "local function rep(s, k) local r = '' for _ = 1, k do r = r .. s end return r end\n"
  "local long = rep('a long string, ', 4)\n"
  /* arrays of one kind, grown by appends */
  "local t = {} for i = 1, 100 do t[i] = i * 7 - 300 end add(t)\n"
  "t = {} for i = 1, 33 do t[i] = i + 0.25 end add(t)\n"
  "t = {} for i = 1, 33 do t[i] = 'v' .. i end add(t)\n"
  "t = {} for i = 1, 33 do t[i] = i % 3 == 0 end add(t)\n"
  "t = {} for i = 1, 9 do t[i] = long .. i end add(t)\n"
  /* made by constructors at their exact size: mixed, integral floats, -0.0, holes */
  "add({1, 2.5, 'three', true, false, long, 3.0, -0.0, 1e300, {}, {1}})\n"
  "add({1.0, 2.0, 3.0}) add({nil, nil, 3}) add({1, nil, 3, nil, 5, nil, nil, 8})\n"
  "t = {} for i = 1, 100 do t[i] = i end for i = 1, 100, 3 do t[i] = nil end add(t)\n"
  /* t[n] removed: alimit drops to the border (flagged), the array keeps its size */
  "t = {} for i = 1, 8 do t[i] = i end t[8] = nil n = #t add(t)\n"
  /* keys past alimit in the array part: #t finds 10, t[13] and t[14] stay */
  "t = {} for i = 1, 16 do t[i] = i end t[11], t[12], t[15], t[16] = nil, nil, nil, nil\n"
  "n = #t add(t)\n"
  /* the same, then t[13] read: luaH_getint moves alimit to 13 */
  "t = {} for i = 1, 16 do t[i] = i end t[11], t[12], t[15], t[16] = nil, nil, nil, nil\n"
  "n = #t n = t[13] add(t)\n"
  /* a flagged alimit that is a power of two: 5 by #t, then 8 by reading t[8] */
  "t = {} for i = 1, 8 do t[i] = i end t[6], t[7], t[8] = nil, nil, nil n = #t n = t[8] t[7] = 7\n"
  "add(t)\n"
  /* rehashed: t[9] after t[8] removed; a hash key after #t flagged alimit; shrunk */
  "t = {} for i = 1, 8 do t[i] = i end t[8] = nil t[9] = 9 n = #t add(t)\n"
  "t = {} for i = 1, 8 do t[i] = i end t[8] = nil n = #t t.x = 'x' add(t)\n"
  "t = {} for i = 1, 64 do t[i] = i end for i = 64, 10, -1 do t[i] = nil end\n"
  "for i = 1, 40 do t['k' .. i] = i end add(t)\n"
  /* hash only, every plain kind of key and value */
  "add({a = 1, b = 'x', c = 2.5, d = true, e = false, f = long, [long] = 1, [2.5] = 'f',\n"
  "     [true] = 0, [false] = 1})\n"
  /* array and hash */
  "t = {1, 2, 3, x = 1, y = 'y'} t[4] = 4 add(t)\n"
  "t = {} for i = 1, 30 do t[i] = i end t.name = 'n' t[-1] = -1 t[0] = 0 add(t)\n"
  /* integer keys in the hash: built backwards, after string keys, past the array */
  "t = {} for i = 40, 1, -1 do t[i] = i end add(t)\n"
  "t = {a = 1, b = 2, c = 3, d = 4, e = 5} t.a, t.b, t.c = nil, nil, nil\n"
  "for i = 1, 3 do t[i] = i * 10 end add(t)\n"
  "t = {1, 2, 3, 4, [false] = 0, [true] = 1, [0] = 0, [-1] = -1, [-2] = -2} t[5] = 5 t[6] = 6\n"
  "add(t)\n"
  /* negative, zero, extreme, float and sparse keys */
  "add({[0] = 'z', [-1] = 'n', [-9223372036854775807 - 1] = 'min', [9223372036854775807] = 'max',\n"
  "     [2^53] = 'f', [-0.5] = 'h'})\n"
  "t = {} for i = 1, 64 do t[i * 1000003] = i end t[1 << 40] = 'far' add(t)\n"
  /* nested, with a table met twice */
  "local s = {1, 'two'}\n"
  "add({s, s, sub = {a = {b = {c = {1, 2.0, {x = 'y'}}}}}, list = {{}, {{}}, {long}}, [9] = s})\n"
  "return shapes\n";

static int probe_corpus(lua_State *L) {
  if (luaL_loadstring(L, corpus) != LUA_OK) return 0;
  lua_call(L, 0, 1);
  int list = lua_gettop(L), past = 0;
  for (lua_Integer i = 1; lua_rawgeti(L, list, i) == LUA_TTABLE; i++) {
    int t = lua_gettop(L);
    mb_luatab_view v;
    mb_luatab_view_of(L, t, &v);
    for (lua_Unsigned k = v.keys; k < v.asize; k++) past += !mb_luatab_empty(v.array[k].tag);
    /* the encodings before and after accounts_for, whose lua_rawgeti moves alimit */
    if (!same_encodings(L, t) || !accounts_for(L, t) || !same_encodings(L, t) ||
        !accounts_for(L, t))
      return 0;
    lua_settop(L, list);
  }
  lua_settop(L, list - 1);
  return past > 0; /* the corpus did put keys past alimit */
}

static int probe_all(lua_State *L) {
  int *ok = lua_touserdata(L, 1);
  /* the Lua that runs (a host's lua5.4, a linked liblua), not the headers built against */
  *ok = lua_version(L) == 504 && sizeof(mb_luatab_slot) == 16 && sizeof(mb_luatab_node) == 24 &&
        probe_arrays(L) && probe_hash(L) && probe_kinds(L) && probe_corpus(L) && probe_newkey(L);
  return 0;
}

/* trusted, published once probed: later calls read it without pthread_once (the
 * send of every small tuple asks, inline: luatab.h) */
_Atomic int mb_luatab_answer = -1;

static void probe(void) {
  int ok = 0;
  probed = 1;
  const char *portable = getenv("MB_CODEC_PORTABLE");
  lua_State *L = portable && *portable && strcmp(portable, "0") != 0 ? NULL : lua_newstate(probe_alloc, NULL);
  if (L) {
    lua_pushcfunction(L, probe_all);
    lua_pushlightuserdata(L, &ok);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) ok = 0;
    lua_close(L);
  }
  trusted = ok;
  atomic_store_explicit(&mb_luatab_answer, ok, memory_order_release);
}

int mb_luatab_probe_once(void) {
  pthread_once(&once, probe);
  return trusted;
}

int mb_luatab_probe_tamper(void (*f)(mb_buf *b)) {
  if (probed) return -1;
  tamper = f;
  return 0;
}
