/* codec: the compact tagged binary encoding that copies every message between process states. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "codec.h"
#include "luatab.h"
#include "term.h"

/* An encoding is one header byte, then the value(s). Messages never leave the
 * node, so floats and the hash count are stored in native byte order.
 *
 *   header      0x01, | 0x80 when the encoding holds a back-reference
 *   0 T_NIL, 1 T_FALSE, 2 T_TRUE
 *   3 T_INT     zigzag varint
 *   4 T_FLOAT   8 bytes (a double)
 *   5 T_STR     varint length, bytes
 *   6 T_PID     varint id
 *   7 T_REF     varint id
 *   8 T_TABLE   varint n (lua_rawlen), u32 h, values of t[1..n], h key/value pairs
 *   9 T_BACKREF varint k: the k-th table (0-based, in encounter order) again
 *  10 T_HANDLE  varint id, 1 byte kind (an I/O handle: term.c, handle.h)
 *
 * Varints are LEB128, at most 10 bytes. A table is numbered when its tag is
 * written (pre-order, keys before values), the same order the decoder meets it. */
enum { T_NIL, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_STR, T_PID, T_REF, T_TABLE, T_BACKREF, T_HANDLE };

#define HDR_VERSION  0x01
#define HDR_BACKREFS 0x80
#define VARINT_MAX   10

_Static_assert(sizeof(lua_Number) == 8, "floats are encoded as 8 bytes");

static size_t put_varint(unsigned char *w, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    w[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  w[n++] = (unsigned char)v;
  return n;
}

static uint64_t zigzag(lua_Integer i) {
  uint64_t u = (uint64_t)i;
  return (u << 1) ^ (0 - (u >> 63));
}

/* ---------------------------------------------------------------- encoder */

#define SEEN_SMALL 16 /* tables tracked by linear scan before a hash set is built */

enum { SEG_INDEX, SEG_KEY };
typedef struct seg {
  int kind;
  int key;         /* SEG_KEY: stack index of the key, alive until the encoder returns */
  lua_Integer i;   /* SEG_INDEX */
} seg;

typedef struct enc {
  lua_State *L;
  mb_buf *b;
  size_t hard;       /* start + limit (or SIZE_MAX): no byte may be written past it */
  size_t stop;       /* min(cap, hard): a write below it needs no further check */
  size_t len0;       /* b->len on entry, restored on failure */
  uintptr_t *tabs;   /* table pointers in encounter order; low bit set while being encoded */
  uint32_t ntabs, tabcap;
  uint32_t *slots;   /* open-addressed index into tabs (k+1, 0 = empty), once there are many */
  uint32_t slotmask;
  int depth, backrefs, nseg;
  int inplace;       /* tables may be read in place (luatab.c) */
  const char *what;  /* for MB_ENC_BADVALUE: "a function", "a cycle", ... */
  seg segs[MB_CODEC_MAXDEPTH + 2]; /* path of the failure, innermost first */
  uintptr_t small[SEEN_SMALL];
} enc;

static int bad(enc *e, int code, const char *what) {
  e->what = what;
  return code;
}

/* Called while unwinding from a failure: the path is collected innermost first,
 * at no cost on success. */
static int note(enc *e, int code, int kind, lua_Integer i, int key) {
  if (e->nseg < (int)(sizeof e->segs / sizeof e->segs[0])) {
    seg *s = &e->segs[e->nseg++];
    s->kind = kind;
    s->i = i;
    s->key = key;
  }
  return code;
}

/* Slow path of every write: check the limit before allocating, then double. */
static int grow(enc *e, size_t n) {
  mb_buf *b = e->b;
  if (n > e->hard - b->len) return bad(e, MB_ENC_TOOBIG, NULL);
  size_t need = b->len + n, cap = b->cap < 64 ? 64 : b->cap;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
  if (cap > e->hard) cap = e->hard;
  if (cap > b->cap) {
    char *d = realloc(b->data, cap);
    if (!d) return bad(e, MB_ENC_NOMEM, NULL);
    b->data = d;
    b->cap = cap;
  }
  e->stop = b->cap < e->hard ? b->cap : e->hard;
  return 0;
}

static inline int room(enc *e, size_t n) {
  return n <= e->stop - e->b->len ? 0 : grow(e, n);
}

static int put_bytes(enc *e, const void *p, size_t n) {
  int st = room(e, n);
  if (st) return st;
  memcpy(e->b->data + e->b->len, p, n);
  e->b->len += n;
  return 0;
}

static inline int put_byte(enc *e, unsigned char c) {
  int st = room(e, 1);
  if (st) return st;
  e->b->data[e->b->len++] = (char)c;
  return 0;
}

/* A tag and a varint, written in place (the hottest write: every integer). */
static inline int put_tagvar(enc *e, int tag, uint64_t v) {
  size_t n = v < 0x80 ? 1 : (size_t)(64 - __builtin_clzll(v) + 6) / 7;
  int st = room(e, 1 + n);
  if (st) return st;
  unsigned char *w = (unsigned char *)e->b->data + e->b->len;
  w[0] = (unsigned char)tag;
  put_varint(w + 1, v);
  e->b->len += 1 + n;
  return 0;
}

static uint32_t hash_ptr(uintptr_t p, uint32_t mask) {
  return (uint32_t)(((uint64_t)p * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static int64_t seen_find(const enc *e, uintptr_t p) {
  if (!e->slots) {
    for (uint32_t k = 0; k < e->ntabs; k++)
      if ((e->tabs[k] & ~(uintptr_t)1) == p) return k;
    return -1;
  }
  for (uint32_t h = hash_ptr(p, e->slotmask);; h = (h + 1) & e->slotmask) {
    uint32_t s = e->slots[h];
    if (!s) return -1;
    if ((e->tabs[s - 1] & ~(uintptr_t)1) == p) return s - 1;
  }
}

static void slot_put(enc *e, uint32_t k) {
  uint32_t h = hash_ptr(e->tabs[k] & ~(uintptr_t)1, e->slotmask);
  while (e->slots[h]) h = (h + 1) & e->slotmask;
  e->slots[h] = k + 1;
}

/* Rebuild the index at twice the size, keeping the load under one half. */
static int slots_rebuild(enc *e, uint32_t size) {
  uint32_t *s = calloc(size, sizeof *s);
  if (!s) return -1;
  free(e->slots);
  e->slots = s;
  e->slotmask = size - 1;
  for (uint32_t k = 0; k < e->ntabs; k++) slot_put(e, k);
  return 0;
}

/* Forget the tables numbered count and after: their encoding was rewound. */
static __attribute__((noinline, cold)) void seen_truncate(enc *e, uint32_t count) {
  e->ntabs = count;
  if (!e->slots) return;
  memset(e->slots, 0, ((size_t)e->slotmask + 1) * sizeof *e->slots);
  for (uint32_t k = 0; k < count; k++) slot_put(e, k);
}

/* Record p as table number ntabs, open. Returns its number or -1 (no memory). */
static int64_t seen_add(enc *e, uintptr_t p) {
  if (e->ntabs == e->tabcap) {
    if (e->tabcap >= UINT32_MAX / 4) return -1;
    uint32_t cap = e->tabcap * 2;
    uintptr_t *t = e->tabs == e->small ? malloc(cap * sizeof *t)
                                       : realloc(e->tabs, cap * sizeof *t);
    if (!t) return -1;
    if (e->tabs == e->small) memcpy(t, e->small, sizeof e->small);
    e->tabs = t;
    e->tabcap = cap;
  }
  uint32_t k = e->ntabs++;
  e->tabs[k] = p | 1;
  if (e->slots && e->ntabs * 2 <= e->slotmask + 1) slot_put(e, k);
  else if (e->ntabs > SEEN_SMALL && slots_rebuild(e, e->slots ? (e->slotmask + 1) * 2 : 4 * SEEN_SMALL))
    return -1;
  return k;
}

static int enc_value(enc *e, int idx);
static inline int enc_table(enc *e, int idx);

/* Short strings are copied with two overlapping fixed-size moves: a libc memcpy
 * call costs more than such a copy. */
static inline __attribute__((always_inline)) void copy_short(char *d, const char *s, size_t n) {
  if (n >= 8 && n <= 16) {
    memcpy(d, s, 8);
    memcpy(d + n - 8, s + n - 8, 8);
  } else if (n >= 4 && n < 8) {
    memcpy(d, s, 4);
    memcpy(d + n - 4, s + n - 4, 4);
  } else if (n < 4) {
    for (size_t i = 0; i < n; i++) d[i] = s[i];
  } else {
    memcpy(d, s, n);
  }
}

static inline int put_float(enc *e, lua_Number d) {
  int st = room(e, 9);
  if (st) return st;
  char *w = e->b->data + e->b->len;
  w[0] = T_FLOAT;
  memcpy(w + 1, &d, 8);
  e->b->len += 9;
  return 0;
}

static inline __attribute__((always_inline)) int put_string(enc *e, const char *s, size_t len) {
  size_t n = len < 0x80 ? 1 : (size_t)(64 - __builtin_clzll((uint64_t)len) + 6) / 7;
  int st = room(e, 1 + n + len);
  if (st) return st;
  unsigned char *w = (unsigned char *)e->b->data + e->b->len;
  w[0] = T_STR;
  put_varint(w + 1, len);
  if (len) copy_short((char *)w + 1 + n, s, len); /* s may be NULL when empty */
  e->b->len += 1 + n + len;
  return 0;
}

/* The value at idx whose type is already known. Integers and strings, the bulk of
 * every message, are written here; the rest goes through enc_value. */
static inline int enc_typed(enc *e, int idx, int type) {
  lua_State *L = e->L;
  if (type == LUA_TNUMBER) {
    /* lua_isinteger first: lua_tointegerx would also take an integral float */
    if (lua_isinteger(L, idx)) return put_tagvar(e, T_INT, zigzag(lua_tointegerx(L, idx, NULL)));
  } else if (type == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return put_string(e, s, len);
  }
  return enc_value(e, idx);
}

/* Stack slots a table level uses: key, value, and two for luaL_testudata. */
#define ENC_SLOTS 5
/* Integers written after one room check (bounds the reservation for big arrays). */
#define ENC_RUN 256
/* Array elements read onto the stack at once, then popped together. */
#define ENC_BATCH 32

/* Write t[i..n] by index, ENC_BATCH elements per lua_settop. */
static int enc_array_from(enc *e, int idx, lua_Unsigned i, lua_Unsigned n) {
  lua_State *L = e->L;
  int base = lua_gettop(L), types[ENC_BATCH];
  while (i <= n) {
    int k = n - i + 1 > ENC_BATCH ? ENC_BATCH : (int)(n - i + 1);
    for (int j = 0; j < k; j++) types[j] = lua_rawgeti(L, idx, (lua_Integer)(i + (lua_Unsigned)j));
    /* With room for k integers reserved, an integer is written with no check. */
    int roomy = room(e, (size_t)k * (1 + VARINT_MAX)) == 0;
    for (int j = 0; j < k; j++) {
      int st;
      if (roomy && types[j] == LUA_TNUMBER && lua_isinteger(L, base + 1 + j)) {
        unsigned char *w = (unsigned char *)e->b->data + e->b->len;
        w[0] = T_INT;
        e->b->len += 1 + put_varint(w + 1, zigzag(lua_tointegerx(L, base + 1 + j, NULL)));
        continue;
      }
      /* anything else may write more than an integer: check every write again */
      roomy = 0;
      if ((st = enc_typed(e, base + 1 + j, types[j])))
        return note(e, st, SEG_INDEX, (lua_Integer)(i + (lua_Unsigned)j), 0);
    }
    lua_settop(L, base);
    i += (lua_Unsigned)k;
  }
  return 0;
}

/* A value read in place: integers, floats, booleans and strings. 1 if written
 * (or *st set on a write failure), 0 if it needs the public API. */
static inline __attribute__((always_inline)) int put_plain(enc *e, unsigned char tag, const mb_luatab_value *v, int *st) {
  switch (tag) {
  case MB_LUATAB_INT: *st = put_tagvar(e, T_INT, zigzag(v->i)); return 1;
  case MB_LUATAB_FLOAT: *st = put_float(e, v->n); return 1;
  case MB_LUATAB_TRUE: *st = put_byte(e, T_TRUE); return 1;
  case MB_LUATAB_FALSE: *st = put_byte(e, T_FALSE); return 1;
  case MB_LUATAB_SHRSTR: { /* at most 40 bytes in Lua 5.4: a one-byte length */
    size_t len;
    const char *s = mb_luatab_string(v->p, tag, &len);
    if (len >= 0x80) {
      *st = put_string(e, s, len);
      return 1;
    }
    if ((*st = room(e, 2 + len))) return 1;
    char *w = e->b->data + e->b->len;
    w[0] = T_STR;
    w[1] = (char)len;
    copy_short(w + 2, s, len);
    e->b->len += 2 + len;
    return 1;
  }
  case MB_LUATAB_LNGSTR: {
    size_t len;
    const char *s = mb_luatab_string(v->p, tag, &len);
    *st = put_string(e, s, len);
    return 1;
  }
  default:
    return 0;
  }
}

/* What the in-place reader returns besides 0 and an error (errors are negative). */
#define NOT_PLAIN 1 /* a key or value it does not copy: walk the rest with lua_next */
#define VIEW_WRONG 2 /* the view does not account for the table: read it all through the API */

/* Write t[1..n] from the array part, which holds them all (the caller checked):
 * plain values are read in place, anything else through lua_rawgeti. The view is
 * taken again after each of those, in case encoding it changed the table. */
static inline __attribute__((always_inline)) int enc_slots(enc *e, int idx, lua_Unsigned n,
                                                            mb_luatab_view *tv) {
  lua_State *L = e->L;
  const mb_luatab_slot *a = tv->array;
  for (lua_Unsigned i = 1; i <= n; i++) {
    const mb_luatab_slot *v = &a[i - 1];
    int st;
    lua_Unsigned last = n - i >= ENC_RUN ? i + ENC_RUN - 1 : n;
    if (v->tag == MB_LUATAB_INT && room(e, (size_t)(last - i + 1) * (1 + VARINT_MAX)) == 0) {
      /* a run of up to ENC_RUN integers, with room for them reserved: no checks */
      unsigned char *w = (unsigned char *)e->b->data + e->b->len, *w0 = w;
      for (; i <= last && a[i - 1].tag == MB_LUATAB_INT; i++) {
        *w++ = T_INT;
        w += put_varint(w, zigzag(a[i - 1].v.i));
      }
      e->b->len += (size_t)(w - w0);
      i--;
      continue;
    }
    if (!put_plain(e, v->tag, &v->v, &st)) {
      if (!mb_luatab_known(v->tag)) return VIEW_WRONG;
      int type = lua_rawgeti(L, idx, (lua_Integer)i);
      if (!(st = enc_typed(e, lua_gettop(L), type))) {
        lua_settop(L, -2);
        mb_luatab_view_of(L, idx, tv);
        a = tv->array;
        if (n > tv->keys) return VIEW_WRONG; /* alimit only grows while we read */
      }
    }
    if (st) return note(e, st, SEG_INDEX, (lua_Integer)i, 0);
  }
  return 0;
}

/* The pairs after t[1..n] (array slots past n, then the hash part) read in place.
 * Returns 0 and the count in *nh, an error, NOT_PLAIN when some key or value is
 * not plain, or VIEW_WRONG when a tag is none of Lua's (nothing written then). */
static inline __attribute__((always_inline)) int enc_rest_plain(enc *e, lua_Unsigned n,
                                                                 const mb_luatab_view *tv, uint64_t *nh) {
  size_t len0 = e->b->len;
  uint64_t count = 0;
  unsigned char tag;
  int st = 0;
  for (lua_Unsigned i = n + 1; i <= tv->asize; i++) {
    const mb_luatab_slot *v = &tv->array[i - 1];
    if (mb_luatab_empty(v->tag)) continue;
    if ((st = put_tagvar(e, T_INT, zigzag((lua_Integer)i)))) return st;
    if (!put_plain(e, v->tag, &v->v, &st)) {
      tag = v->tag;
      goto not_plain;
    }
    if (st) return st;
    count++;
  }
  for (size_t j = 0; j < tv->nnodes; j++) {
    const mb_luatab_node *nd = &tv->nodes[j];
    if (mb_luatab_empty(nd->tag)) continue;
    if (!put_plain(e, nd->key_tag, &nd->key, &st)) {
      tag = nd->key_tag;
      goto not_plain;
    }
    if (st) return st;
    if (!put_plain(e, nd->tag, &nd->v, &st)) {
      tag = nd->tag;
      goto not_plain;
    }
    if (st) return st;
    count++;
  }
  *nh = count;
  return 0;
not_plain:
  e->b->len = len0;
  return mb_luatab_known(tag) && !mb_luatab_empty(tag) ? NOT_PLAIN : VIEW_WRONG;
}

/* The pairs after key n by lua_next. n is in the array part, so every pair before
 * it in Lua's traversal is one of t[1..n-1], and none of 1..n comes after it
 * (VIEW_WRONG if one does: nothing left on the stack then). */
static __attribute__((noinline)) int enc_walk_from(enc *e, int idx, lua_Unsigned n, uint64_t *nh) {
  lua_State *L = e->L;
  int kx = lua_gettop(L) + 1, vx = kx + 1, st;
  if (n) lua_pushinteger(L, (lua_Integer)n);
  else lua_pushnil(L);
  while (lua_next(L, idx)) {
    int kt = lua_type(L, kx);
    if (kt == LUA_TNUMBER && lua_isinteger(L, kx) && (lua_Unsigned)lua_tointegerx(L, kx, NULL) - 1 < n) {
      lua_settop(L, kx - 1);
      return VIEW_WRONG;
    }
    if ((st = enc_typed(e, kx, kt)) || (st = enc_typed(e, vx, lua_type(L, vx))))
      return note(e, st, SEG_KEY, 0, kx);
    (*nh)++;
    lua_settop(L, kx);
  }
  return 0;
}

/* A table whose t[1..n] the view puts in the array part: those from the slots,
 * then the rest in place when every key and value is plain, else by lua_next
 * from key n. 0 (count in *nh), an error, or VIEW_WRONG. */
static __attribute__((noinline)) int enc_inplace(enc *e, int idx, lua_Unsigned n, mb_luatab_view *tv,
                                                 uint64_t *nh) {
  int st;
  if (n && (st = enc_slots(e, idx, n, tv))) return st;
  if ((st = enc_rest_plain(e, n, tv, nh)) != NOT_PLAIN) return st;
  return enc_walk_from(e, idx, n, nh);
}

/* Patch the pair count into the table's header and close it. */
static int enc_table_end(enc *e, int64_t k, size_t hpos, uint64_t nh) {
  if (nh > UINT32_MAX) return bad(e, MB_ENC_TOOBIG, NULL);
  uint32_t h32 = (uint32_t)nh;
  memcpy(e->b->data + hpos, &h32, 4);
  e->depth--;
  e->tabs[k] &= ~(uintptr_t)1;
  return 0;
}

static inline __attribute__((always_inline)) int enc_table(enc *e, int idx) {
  lua_State *L = e->L;
  uintptr_t p = (uintptr_t)lua_topointer(L, idx);
  int64_t k = seen_find(e, p);
  if (k >= 0) {
    /* Still open means it is its own ancestor. */
    if (e->tabs[k] & 1) return bad(e, MB_ENC_BADVALUE, "a cycle");
    e->backrefs = 1;
    return put_tagvar(e, T_BACKREF, (uint64_t)k);
  }
  if (e->depth >= MB_CODEC_MAXDEPTH) return bad(e, MB_ENC_DEEP, NULL);
  if (!lua_checkstack(L, ENC_BATCH + ENC_SLOTS) || (k = seen_add(e, p)) < 0)
    return bad(e, MB_ENC_NOMEM, NULL);

  lua_Unsigned n = lua_rawlen(L, idx);
  unsigned char w[1 + VARINT_MAX + 4];
  w[0] = T_TABLE;
  size_t h = 1 + put_varint(w + 1, n);
  memset(w + h, 0, 4);
  int st = put_bytes(e, w, h + 4);
  if (st) return st;
  size_t hpos = e->b->len - 4; /* an offset: the buffer may move */
  e->depth++;

  int kx = lua_gettop(L) + 1, vx = kx + 1;
  uint64_t nh = 0;
  mb_luatab_view tv;
  if (e->inplace && (mb_luatab_view_of(L, idx, &tv), n <= tv.keys)) {
    /* t[1..n] are all in the array part */
    st = enc_inplace(e, idx, n, &tv, &nh);
    if (!st) {
      if (e->inplace != MB_INPLACE_DOUBT) return enc_table_end(e, k, hpos, nh);
    } else if (st != VIEW_WRONG) {
      return st;
    }
    /* Never lose a key: forget what was written of the table and the tables
     * numbered in it (e->backrefs may stay set: they will be met again), then
     * read it through the API. */
    e->b->len = hpos + 4;
    seen_truncate(e, (uint32_t)k + 1);
    nh = 0;
  }

  /* One lua_next pass: it walks the array part in order first, so t[1..n] usually
   * arrive as keys 1, 2, ... and are written as they come. At the first key out of
   * that order (a hole, or an array kept in the hash part) the rest of 1..n is
   * written by index and from then on keys 1..n are skipped. The key and value
   * sit at the same two stack slots on every turn. */
  lua_Unsigned i = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    /* lua_isinteger is false for strings, so a numeric string key is never taken
     * for an index; a float key is never integral (Lua normalises those) */
    int isint = n ? lua_isinteger(L, kx) : 0;
    lua_Unsigned ki = isint ? (lua_Unsigned)lua_tointegerx(L, kx, NULL) : 0;
    if (i <= n) {
      if (ki == i) {
        if ((st = enc_typed(e, vx, lua_type(L, vx)))) return note(e, st, SEG_INDEX, (lua_Integer)i, 0);
        i++;
        lua_settop(L, kx);
        continue;
      }
      if ((st = enc_array_from(e, idx, i, n))) return st;
      i = n + 1;
    }
    if (isint && ki >= 1 && ki <= n) { /* already in the array part */
      lua_settop(L, kx);
      continue;
    }
    if ((st = enc_typed(e, kx, lua_type(L, kx))) || (st = enc_typed(e, vx, lua_type(L, vx))))
      return note(e, st, SEG_KEY, 0, kx);
    nh++;
    lua_settop(L, kx);
  }
  /* Only reached with i <= n when no pair was written, so still in the array part. */
  if (i <= n && (st = enc_array_from(e, idx, i, n))) return st;
  return enc_table_end(e, k, hpos, nh);
}

/* Every type; kept out of line so that the hot loops above stay small. */
static __attribute__((noinline)) int enc_value(enc *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNONE: /* past the top, as a missing argument: nil */
  case LUA_TNIL:
    return put_byte(e, T_NIL);
  case LUA_TBOOLEAN:
    return put_byte(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) return put_tagvar(e, T_INT, zigzag(lua_tointeger(L, idx)));
    return put_float(e, lua_tonumber(L, idx));
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return put_string(e, s, len);
  }
  case LUA_TTABLE:
    return enc_table(e, idx);
  case LUA_TUSERDATA: {
    mb_pid pid;
    uint64_t ref;
    if (mb_test_pid(L, idx, &pid)) return put_tagvar(e, T_PID, pid);
    if (mb_test_ref(L, idx, &ref)) return put_tagvar(e, T_REF, ref);
    int kind, st;
    if (mb_test_handle(L, idx, &kind, &ref))
      return (st = put_tagvar(e, T_HANDLE, ref)) ? st : put_byte(e, (unsigned char)kind);
    return bad(e, MB_ENC_BADVALUE, "a userdata");
  }
  case LUA_TLIGHTUSERDATA:
    return bad(e, MB_ENC_BADVALUE, "a userdata");
  case LUA_TFUNCTION:
    return bad(e, MB_ENC_BADVALUE, "a function");
  case LUA_TTHREAD:
    return bad(e, MB_ENC_BADVALUE, "a coroutine");
  default:
    return bad(e, MB_ENC_BADVALUE, "a value");
  }
}

/* A bounded string builder for error messages: truncates, always terminated. */
typedef struct sb { char *p; size_t len, cap; } sb;

static void sb_add(sb *s, const char *t, size_t n) {
  if (!s->cap) return;
  size_t room = s->cap - 1 - s->len;
  if (n > room) n = room;
  memcpy(s->p + s->len, t, n);
  s->len += n;
  s->p[s->len] = '\0';
}

static void sb_str(sb *s, const char *t) { sb_add(s, t, strlen(t)); }

static int is_name(const char *k, size_t n) {
  static const char *const reserved[] = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
    "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"};
  if (n == 0 || (k[0] >= '0' && k[0] <= '9')) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)k[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
      return 0;
  }
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
    if (strlen(reserved[i]) == n && memcmp(reserved[i], k, n) == 0) return 0;
  return 1;
}

static void sb_quoted(sb *s, const char *k, size_t n) {
  sb_add(s, "\"", 1);
  for (size_t i = 0; i < n && s->len + 1 < s->cap; i++) {
    unsigned char c = (unsigned char)k[i];
    char esc[8];
    if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; sb_add(s, esc, 2); }
    else if (c == '\n') sb_add(s, "\\n", 2);
    else if (c == '\r') sb_add(s, "\\r", 2);
    else if (c == '\0') sb_add(s, "\\0", 2);
    else if (c < 32 || c == 127) sb_add(s, esc, (size_t)snprintf(esc, sizeof esc, "\\%d", c));
    else sb_add(s, (const char *)&c, 1);
  }
  sb_add(s, "\"", 1);
}

static void sb_key(sb *s, lua_State *L, int k) {
  char num[64];
  switch (lua_type(L, k)) {
  case LUA_TNUMBER:
    if (lua_isinteger(L, k))
      snprintf(num, sizeof num, "[" LUA_INTEGER_FMT "]", (LUAI_UACINT)lua_tointeger(L, k));
    else
      snprintf(num, sizeof num, "[%.14g]", (double)lua_tonumber(L, k));
    sb_str(s, num);
    break;
  case LUA_TSTRING: {
    size_t n;
    const char *t = lua_tolstring(L, k, &n);
    if (is_name(t, n)) { sb_add(s, ".", 1); sb_add(s, t, n); }
    else { sb_add(s, "[", 1); sb_quoted(s, t, n); sb_add(s, "]", 1); }
    break;
  }
  case LUA_TBOOLEAN:
    sb_str(s, lua_toboolean(L, k) ? "[true]" : "[false]");
    break;
  default:
    sb_add(s, "[", 1);
    sb_str(s, lua_typename(L, lua_type(L, k)));
    sb_add(s, "]", 1);
  }
}

static void enc_message(enc *e, int st, const char *root, char *err, size_t errlen) {
  sb s = {err, 0, errlen};
  if (!err || !errlen) return;
  err[0] = '\0';
  if (st == MB_ENC_TOOBIG) { sb_str(&s, "message too large"); return; }
  if (st == MB_ENC_NOMEM) { sb_str(&s, "not enough memory"); return; }
  if (st == MB_ENC_DEEP) sb_str(&s, "message nested too deeply");
  else { sb_str(&s, "cannot send "); sb_str(&s, e->what); }
  sb_str(&s, " (at ");
  sb_str(&s, root);
  for (int i = e->nseg - 1; i >= 0; i--) {
    const seg *g = &e->segs[i];
    if (g->kind == SEG_KEY) sb_key(&s, e->L, g->key);
    else {
      char num[32];
      snprintf(num, sizeof num, "[" LUA_INTEGER_FMT "]", (LUAI_UACINT)g->i);
      sb_str(&s, num);
    }
  }
  sb_str(&s, ")");
}

/* Set up and write the header byte. */
static int enc_open(enc *e, lua_State *L, mb_buf *b, int inplace) {
  e->L = L;
  e->inplace = inplace;
  e->b = b;
  e->len0 = b->len;
  e->hard = b->limit && b->start + b->limit >= b->start ? b->start + b->limit : SIZE_MAX;
  e->tabs = e->small;
  e->ntabs = 0;
  e->tabcap = SEEN_SMALL;
  e->slots = NULL;
  e->slotmask = 0;
  e->depth = e->backrefs = e->nseg = 0;
  e->what = NULL;
  if (b->len > e->hard) return bad(e, MB_ENC_TOOBIG, NULL);
  e->stop = b->cap < e->hard ? b->cap : e->hard;
  unsigned char h = HDR_VERSION;
  return put_bytes(e, &h, 1);
}

/* Format the error while the keys it names are still on the stack, then restore
 * the stack and the buffer and free the seen set. */
static int enc_close(enc *e, int st, int top, const char *root, char *err, size_t errlen) {
  if (st) {
    enc_message(e, st, root, err, errlen);
    e->b->len = e->len0;
  } else if (e->backrefs) {
    e->b->data[e->len0] |= (char)HDR_BACKREFS;
  }
  if (e->L) lua_settop(e->L, top);
  if (e->tabs != e->small) free(e->tabs);
  free(e->slots);
  return st;
}

static inline __attribute__((always_inline)) int encode(lua_State *L, int idx, mb_buf *b,
                                                       const char *root, char *err, size_t errlen,
                                                       int inplace) {
  enc e;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  int st = enc_open(&e, L, b, inplace);
  if (!st && !lua_checkstack(L, 4)) st = bad(&e, MB_ENC_NOMEM, NULL);
  if (!st) st = enc_value(&e, idx);
  return enc_close(&e, st, top, root ? root : "msg", err, errlen);
}

int mb_encode(lua_State *L, int idx, mb_buf *b, const char *root, char *err, size_t errlen) {
  return encode(L, idx, b, root, err, errlen, mb_luatab_trusted());
}

int mb_encode_mode(lua_State *L, int idx, mb_buf *b, int inplace) {
  return encode(L, idx, b, "msg", NULL, 0, inplace);
}

int mb_encode_values(lua_State *L, int first, int n, mb_buf *b, char *err, size_t errlen) {
  enc e;
  int top = lua_gettop(L);
  first = lua_absindex(L, first);
  int st = enc_open(&e, L, b, mb_luatab_trusted());
  if (!st && !lua_checkstack(L, 4)) st = bad(&e, MB_ENC_NOMEM, NULL);
  if (!st) {
    unsigned char w[VARINT_MAX];
    st = put_bytes(&e, w, put_varint(w, n < 0 ? 0 : (uint64_t)n));
  }
  for (int i = 0; !st && i < n; i++)
    if ((st = enc_value(&e, first + i))) note(&e, st, SEG_INDEX, i + 1, 0);
  return enc_close(&e, st, top, "args", err, errlen);
}

int mb_encode_string(mb_buf *b, const char *s, size_t len) {
  enc e;
  int st = enc_open(&e, NULL, b, 0);
  if (!st) st = put_string(&e, s, len);
  return enc_close(&e, st, 0, "", NULL, 0);
}

/* ---------------------------------------------------------------- reader */

typedef struct rd { const unsigned char *p, *end; } rd;

static int rd_varint_slow(rd *r, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 7 * VARINT_MAX; shift += 7) {
    if (r->p == r->end) return -1;
    unsigned c = *r->p++;
    if (shift == 63 && c > 1) return -1; /* more than 64 bits */
    v |= (uint64_t)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *out = v;
      return 0;
    }
  }
  return -1;
}

/* One byte holds every value below 128: no loop for those. */
static inline int rd_varint(rd *r, uint64_t *out) {
  if (r->p != r->end && *r->p < 0x80) {
    *out = *r->p++;
    return 0;
  }
  return rd_varint_slow(r, out);
}

static size_t rd_left(const rd *r) { return (size_t)(r->end - r->p); }

/* Table header: sizes checked against what is left (every value takes a byte). */
static int rd_table(rd *r, uint64_t *narr, uint32_t *nh) {
  if (rd_varint(r, narr) || *narr > rd_left(r) || rd_left(r) - *narr < 4) return -1;
  memcpy(nh, r->p, 4);
  r->p += 4;
  return (uint64_t)*nh * 2 > rd_left(r) - *narr ? -1 : 0;
}

static int rd_header(rd *r, const char *p, size_t len, int *backrefs) {
  if (!p || !len) return -1; /* before any pointer arithmetic on a NULL p */
  r->p = (const unsigned char *)p;
  r->end = r->p + len;
  if ((r->p[0] & ~HDR_BACKREFS) != HDR_VERSION) return -1;
  *backrefs = (r->p[0] & HDR_BACKREFS) != 0;
  r->p++;
  return 0;
}

/* Walk one value without Lua: structure and bounds only. */
static int rd_skip(rd *r, int depth) {
  uint64_t v;
  if (r->p == r->end) return -1;
  switch (*r->p++) {
  case T_NIL: case T_FALSE: case T_TRUE:
    return 0;
  case T_INT: case T_PID: case T_REF: case T_BACKREF:
    return rd_varint(r, &v);
  case T_FLOAT:
    if (rd_left(r) < 8) return -1;
    r->p += 8;
    return 0;
  case T_STR:
    if (rd_varint(r, &v) || v > rd_left(r)) return -1;
    r->p += v;
    return 0;
  case T_HANDLE:
    if (rd_varint(r, &v) || r->p == r->end) return -1;
    r->p++;
    return 0;
  case T_TABLE: {
    uint32_t nh;
    if (depth >= MB_CODEC_MAXDEPTH || rd_table(r, &v, &nh)) return -1;
    for (uint64_t i = 0; i < v + 2 * (uint64_t)nh; i++)
      if (rd_skip(r, depth + 1)) return -1;
    return 0;
  }
  default:
    return -1;
  }
}

static int rd_is_string(rd *r, const char *s, size_t n) {
  uint64_t len;
  if (r->p == r->end || *r->p++ != T_STR || rd_varint(r, &len) || len > rd_left(r)) return 0;
  r->p += len;
  return len == n && memcmp(r->p - len, s, n) == 0;
}

int mb_encoded_is_string(const char *p, size_t len, const char *s) {
  rd r;
  int br;
  return !rd_header(&r, p, len, &br) && rd_is_string(&r, s, strlen(s)) && r.p == r.end;
}

int mb_reason_is_normal(const char *p, size_t len) {
  rd r;
  int br;
  uint64_t narr;
  uint32_t nh;
  if (rd_header(&r, p, len, &br) || r.p == r.end) return 0;
  if (*r.p == T_STR)
    return mb_encoded_is_string(p, len, "normal") || mb_encoded_is_string(p, len, "shutdown");
  if (*r.p++ != T_TABLE || rd_table(&r, &narr, &nh) || narr != 2 || nh != 0) return 0;
  return rd_is_string(&r, "shutdown", 8) && !rd_skip(&r, 1) && r.p == r.end;
}

/* ---------------------------------------------------------------- decoder */

typedef struct strcache strcache;

typedef struct dec {
  lua_State *L;
  strcache *sc;    /* the state's key cache (see strcache), NULL until made */
  int scx;         /* its stack slot, 0 when there is none (no table to decode) */
  rd r;
  int refs;        /* stack index of the decoded tables (by number), 0 = no back-references */
  uint32_t ntabs;
  int depth;
  uint32_t open[MB_CODEC_MAXDEPTH]; /* numbers of the tables being filled */
} dec;

/* Stack slots a level may use: table, key, value, and mb_push_pid's own. */
#define DEC_SLOTS 8

/* Hash keys repeat from message to message ("type", "from", "id"), and pushing
 * one costs Lua a hash and a lookup in its string table. Each state that decodes
 * string keys gets a small two-way set-associative cache: a userdata (kept in the
 * registry) whose user values hold the keys last seen, and whose C part keeps
 * their bytes (pointers into those strings, alive while the user values hold
 * them) for the comparison; ~1.7 KB, counted in the process's heap. While a
 * table is decoded the userdata (or nil, before the first key) sits at a fixed
 * stack slot. A cache that does not pay (fewer than half of a window of lookups
 * hit, as with a dictionary of distinct names) is bypassed for a while. Values
 * are not cached: they repeat far less, and a miss costs more than a plain push. */
#define SC_SETS   32
#define SC_WAYS   2
#define SC_MAXLEN 40   /* Lua's short strings */
#define SC_WINDOW 256  /* lookups between two looks at the hit rate */
#define SC_BYPASS 4096 /* keys pushed without the cache after a poor window */
struct strcache {
  const void *tag;   /* &strcache_key: a userdata put in its place is not taken for it */
  const char *s[SC_SETS][SC_WAYS];
  unsigned char len[SC_SETS][SC_WAYS];
  unsigned char older[SC_SETS]; /* the way to replace next */
  unsigned lookups, hits, bypass;
};
static const char strcache_key = 0;

/* Reserve the cache's stack slot: the userdata, or nil until a key needs it (or
 * when the registry holds something else there: then a new cache replaces it). */
static void strcache_slot(dec *d) {
  lua_State *L = d->L;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &strcache_key);
  d->scx = lua_gettop(L);
  d->sc = lua_touserdata(L, d->scx);
  if (d->sc && (lua_type(L, d->scx) != LUA_TUSERDATA || lua_rawlen(L, d->scx) != sizeof *d->sc ||
                d->sc->tag != &strcache_key)) {
    d->sc = NULL;
    lua_pushnil(L);
    lua_replace(L, d->scx);
  }
}

static strcache *strcache_make(dec *d) {
  lua_State *L = d->L;
  strcache *sc = lua_newuserdatauv(L, sizeof *sc, SC_SETS * SC_WAYS);
  memset(sc, 0, sizeof *sc);
  sc->tag = &strcache_key;
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &strcache_key);
  lua_replace(L, d->scx);
  return d->sc = sc;
}

static inline uint32_t str_hash(const unsigned char *s, size_t n) {
  uint64_t a, b;
  if (n >= 8) {
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
  } else if (n >= 4) {
    uint32_t x, y;
    memcpy(&x, s, 4);
    memcpy(&y, s + n - 4, 4);
    a = x;
    b = y;
  } else {
    a = n ? (uint64_t)s[0] | (uint64_t)s[n / 2] << 8 | (uint64_t)s[n - 1] << 16 : 0;
    b = 0;
  }
  uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + n) * 0xC2B2AE3D27D4EB4Full;
  return (uint32_t)(h >> 40) % SC_SETS;
}

/* Two overlapping fixed-size compares for 4..16 bytes (both sides hold n bytes). */
static inline int same_bytes(const char *a, const unsigned char *b, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t x0, x1, y0, y1;
    memcpy(&x0, a, 8); memcpy(&y0, b, 8);
    memcpy(&x1, a + n - 8, 8); memcpy(&y1, b + n - 8, 8);
    return x0 == y0 && x1 == y1;
  }
  if (n >= 4 && n < 8) {
    uint32_t x0, x1, y0, y1;
    memcpy(&x0, a, 4); memcpy(&y0, b, 4);
    memcpy(&x1, a + n - 4, 4); memcpy(&y1, b + n - 4, 4);
    return x0 == y0 && x1 == y1;
  }
  return memcmp(a, b, n) == 0;
}

/* Push the key s[0..n), through the cache when it is short and the cache pays. */
static void push_key(dec *d, const unsigned char *s, size_t n) {
  lua_State *L = d->L;
  strcache *sc = d->sc;
  if (n > SC_MAXLEN || !d->scx) {
    lua_pushlstring(L, (const char *)s, n);
    return;
  }
  if (!sc) sc = strcache_make(d);
  if (sc->bypass) {
    sc->bypass--;
    lua_pushlstring(L, (const char *)s, n);
    return;
  }
  if (++sc->lookups == SC_WINDOW) {
    if (sc->hits < SC_WINDOW / 2) sc->bypass = SC_BYPASS;
    sc->lookups = sc->hits = 0;
  }
  uint32_t h = str_hash(s, n);
  for (int w = 0; w < SC_WAYS; w++)
    if (sc->s[h][w] && sc->len[h][w] == n && same_bytes(sc->s[h][w], s, n)) {
      sc->hits++;
      sc->older[h] = (unsigned char)(w ^ 1);
      lua_getiuservalue(L, d->scx, (int)(h * SC_WAYS + (uint32_t)w) + 1);
      return;
    }
  int w = sc->older[h];
  sc->older[h] = (unsigned char)(w ^ 1);
  lua_pushlstring(L, (const char *)s, n);
  lua_pushvalue(L, -1);
  sc->s[h][w] = NULL; /* the old key may go once its slot is overwritten */
  lua_setiuservalue(L, d->scx, (int)(h * SC_WAYS + (uint32_t)w) + 1);
  sc->s[h][w] = lua_tostring(L, -1);
  sc->len[h][w] = (unsigned char)n;
}

static int dec_value(dec *d);

/* One element: integers and short strings inline, everything else through
 * dec_value. The hot loops below call this. */
static inline int dec_elem(dec *d) {
  rd *r = &d->r;
  uint64_t v;
  if (r->p != r->end) {
    if (*r->p == T_INT) {
      r->p++;
      if (rd_varint(r, &v)) return -1;
      lua_pushinteger(d->L, (lua_Integer)((v >> 1) ^ (0 - (v & 1))));
      return 0;
    }
    if (*r->p == T_STR) {
      r->p++;
      if (rd_varint(r, &v) || v > rd_left(r)) return -1;
      lua_pushlstring(d->L, (const char *)r->p, (size_t)v);
      r->p += v;
      return 0;
    }
  }
  return dec_value(d);
}

/* A pure array of a few dozen elements or more is built by Lua itself: its values
 * go on the stack and `return {...}` (one SETLIST) makes the table, instead of
 * one lua_rawseti per element. The packer is compiled once per state. */
#define PACK_MIN 16
#define PACK_MAX 4096
static const char pack_key = 0;

static int dec_packed(dec *d, int narr) {
  lua_State *L = d->L;
  uint32_t k = d->ntabs++;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &pack_key) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    if (luaL_loadstring(L, "return {...}") != LUA_OK) lua_error(L);   /* only memory can fail: raise it */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &pack_key);
  }
  int base = lua_gettop(L);
  d->open[d->depth++] = k;
  /* Small integers (one or two varint bytes) straight from local cursors; the
   * rest through dec_elem. */
  const unsigned char *p = d->r.p, *end = d->r.end;
  for (int i = 0; i < narr; i++) {
    if (end - p >= 3 && p[0] == T_INT) {
      uint64_t v;
      if (p[1] < 0x80) {
        v = p[1];
        p += 2;
      } else if (p[2] < 0x80) {
        v = (uint64_t)(p[1] & 0x7f) | (uint64_t)p[2] << 7;
        p += 3;
      } else {
        goto general;
      }
      lua_pushinteger(L, (lua_Integer)((v >> 1) ^ (0 - (v & 1))));
      continue;
    }
  general:
    d->r.p = p;
    if (dec_elem(d)) { lua_settop(L, base - 1); return -1; }
    p = d->r.p;
  }
  d->r.p = p;
  lua_call(L, narr, 1);
  if (d->refs) {
    lua_pushvalue(L, -1);
    lua_rawseti(L, d->refs, (lua_Integer)k + 1);
  }
  d->depth--;
  return 0;
}

static __attribute__((noinline)) int dec_table(dec *d) {
  lua_State *L = d->L;
  uint64_t narr;
  uint32_t nh;
  if (rd_table(&d->r, &narr, &nh) || d->depth >= MB_CODEC_MAXDEPTH || d->ntabs == UINT32_MAX ||
      !lua_checkstack(L, DEC_SLOTS))
    return -1;
  if (nh == 0 && narr >= PACK_MIN && narr <= PACK_MAX && narr <= rd_left(&d->r) &&
      lua_checkstack(L, (int)narr + DEC_SLOTS))
    return dec_packed(d, (int)narr);
  lua_createtable(L, narr > INT_MAX ? INT_MAX : (int)narr, nh > INT_MAX ? INT_MAX : (int)nh);
  uint32_t k = d->ntabs++;
  int t = lua_gettop(L);
  if (d->refs) {
    lua_pushvalue(L, t);
    lua_rawseti(L, d->refs, (lua_Integer)k + 1);
  }
  d->open[d->depth++] = k;
  for (uint64_t i = 1; i <= narr; i++) {
    if (dec_elem(d)) return -1;
    lua_rawseti(L, t, (lua_Integer)i);
  }
  for (uint32_t j = 0; j < nh; j++) {
    rd *r = &d->r;
    uint64_t n;
    if (r->p != r->end && *r->p == T_STR) { /* the usual key: no checks needed */
      r->p++;
      if (rd_varint(r, &n) || n > rd_left(r)) return -1;
      push_key(d, r->p, (size_t)n);
      r->p += n;
      if (dec_elem(d)) return -1;
      lua_rawset(L, t);
      continue;
    }
    if (dec_elem(d)) return -1;
    /* lua_rawset would raise on these */
    int kt = lua_type(L, t + 1);
    if (kt != LUA_TSTRING) {
      if (kt == LUA_TNIL) return -1;
      if (kt == LUA_TNUMBER && !lua_isinteger(L, t + 1)) {
        lua_Number n = lua_tonumber(L, t + 1);
        if (n != n) return -1;
      }
    }
    if (dec_elem(d)) return -1;
    lua_rawset(L, t);
  }
  d->depth--;
  return 0;
}

static int dec_value(dec *d) {
  lua_State *L = d->L;
  rd *r = &d->r;
  uint64_t v;
  if (r->p == r->end) return -1;
  switch (*r->p++) {
  case T_NIL: lua_pushnil(L); return 0;
  case T_FALSE: lua_pushboolean(L, 0); return 0;
  case T_TRUE: lua_pushboolean(L, 1); return 0;
  case T_INT:
    if (rd_varint(r, &v)) return -1;
    lua_pushinteger(L, (lua_Integer)((v >> 1) ^ (0 - (v & 1))));
    return 0;
  case T_FLOAT: {
    lua_Number n;
    if (rd_left(r) < 8) return -1;
    memcpy(&n, r->p, 8);
    r->p += 8;
    lua_pushnumber(L, n);
    return 0;
  }
  case T_STR:
    if (rd_varint(r, &v) || v > rd_left(r)) return -1;
    lua_pushlstring(L, (const char *)r->p, (size_t)v);
    r->p += v;
    return 0;
  case T_PID:
    if (rd_varint(r, &v)) return -1;
    mb_push_pid(L, v);
    return 0;
  case T_REF:
    if (rd_varint(r, &v)) return -1;
    mb_push_ref(L, v);
    return 0;
  case T_HANDLE:   /* kind and id checked by mb_push_handle */
    if (rd_varint(r, &v) || r->p == r->end) return -1;
    return mb_push_handle(L, *r->p++, v);
  case T_TABLE:
    return dec_table(d);
  case T_BACKREF:
    if (!d->refs || rd_varint(r, &v) || v >= d->ntabs) return -1;
    for (int i = 0; i < d->depth; i++)
      if (d->open[i] == v) return -1; /* the encoder never writes a cycle */
    lua_rawgeti(L, d->refs, (lua_Integer)v + 1);
    return 0;
  default:
    return -1;
  }
}

static int dec_open(dec *d, lua_State *L, const char *p, size_t len) {
  int backrefs;
  d->L = L;
  d->sc = NULL;
  d->scx = 0;
  d->refs = 0;
  d->ntabs = 0;
  d->depth = 0;
  if (rd_header(&d->r, p, len, &backrefs) || !lua_checkstack(L, DEC_SLOTS + 2)) return -1;
  if (backrefs) { /* only then keep every table reachable by number */
    lua_createtable(L, 8, 0);
    d->refs = lua_gettop(L);
  }
  return 0;
}

int mb_decode(lua_State *L, const char *p, size_t len) {
  dec d;
  int top = lua_gettop(L);
  if (dec_open(&d, L, p, len)) return -1;
  if (d.r.p != d.r.end && *d.r.p == T_TABLE) strcache_slot(&d); /* below the result */
  if (dec_value(&d) || d.r.p != d.r.end) {
    lua_settop(L, top);
    return -1;
  }
  if (d.scx) lua_remove(L, d.scx); /* above refs: it was pushed after them */
  if (d.refs) lua_remove(L, d.refs);
  return 0;
}

int mb_decode_values(lua_State *L, const char *p, size_t len) {
  dec d;
  uint64_t n;
  int top = lua_gettop(L);
  if (dec_open(&d, L, p, len) || rd_varint(&d.r, &n) || n > rd_left(&d.r) ||
      n > INT_MAX - 2 * DEC_SLOTS || !lua_checkstack(L, (int)n + DEC_SLOTS))
    goto bad;
  for (uint64_t i = 0; i < n; i++)
    if (dec_value(&d)) goto bad;
  if (d.r.p != d.r.end) goto bad;
  if (d.refs) lua_remove(L, d.refs);
  return (int)n;
bad:
  lua_settop(L, top);
  return -1;
}
