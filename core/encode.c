/* encode: Lua values to the codec's encoding (codec_format.h): the sender's half of
 * every copy between process states. Reads tables in place when luatab trusts the
 * layout, names the path of a value it refuses. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "codec.h"
#include "codec_format.h"
#include "luatab.h"
#include "term.h"

static size_t put_varint(unsigned char *w, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    w[n++] = (unsigned char)(v | 0x80);
    v >>= 7;
  }
  w[n++] = (unsigned char)v;
  return n;
}

/* The bytes put_varint writes for v. */
static inline size_t varint_len(uint64_t v) {
  return v < 0x80 ? 1 : (size_t)(64 - __builtin_clzll(v) + 6) / 7;
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
static inline __attribute__((always_inline)) int put_tagvar(enc *e, int tag, uint64_t v) {
  size_t n = varint_len(v);
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
  size_t n = varint_len((uint64_t)len);
  int st = room(e, 1 + n + len);
  if (st) return st;
  unsigned char *w = (unsigned char *)e->b->data + e->b->len;
  w[0] = T_STR;
  put_varint(w + 1, len);
  if (len) copy_short((char *)w + 1 + n, s, len); /* s may be NULL when empty */
  e->b->len += 1 + n + len;
  return 0;
}

static inline int put_ref(enc *e, uint64_t ref) {
  if (e->b->on_ref) e->b->on_ref(e->b->on_ref_ud, ref);
  return put_tagvar(e, T_REF, ref);
}

/* A light userdata's pointer: 1 if it is a pid or a ref (written, or *st set on a
 * write failure), 0 if it is neither. */
static inline int put_light(enc *e, const void *p, int *st) {
  uint64_t id;
  if (mb_light_is(p, MB_LIGHT_PID, &id)) { *st = put_tagvar(e, T_PID, id); return 1; }
  if (mb_light_is(p, MB_LIGHT_REF, &id)) { *st = put_ref(e, id); return 1; }
  return 0;
}

/* The value at idx whose type is already known. Integers and strings, the bulk of
 * every message, are written here; the rest goes through enc_value. */
static inline __attribute__((always_inline)) int enc_typed(enc *e, int idx, int type) {
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

/* A value read in place: integers, floats, booleans, strings, light pids and refs. 1 if written
 * (or *st set on a write failure), 0 if it needs the public API. */
/* A short string (length below 0x80: one length byte) at w, with room checked:
 * returns the byte after it. */
static inline __attribute__((always_inline)) char *write_short(char *w, const char *s, size_t len) {
  w[0] = T_STR;
  w[1] = (char)len;
  copy_short(w + 2, s, len);
  return w + 2 + len;
}

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
    write_short(e->b->data + e->b->len, s, len);
    e->b->len += 2 + len;
    return 1;
  }
  case MB_LUATAB_LNGSTR: {
    size_t len;
    const char *s = mb_luatab_string(v->p, tag, &len);
    *st = put_string(e, s, len);
    return 1;
  }
  case MB_LUATAB_LIGHT:   /* a pid or a ref; any other goes through the API and is refused */
    return put_light(e, v->p, st);
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
        uint64_t z = zigzag(a[i - 1].v.i);
        w[0] = T_INT;
        if (z < 0x80) {            /* -64..63: no varint loop for the commonest */
          w[1] = (unsigned char)z;
          w += 2;
        } else if (z < 0x4000) {
          w[1] = (unsigned char)(z | 0x80);
          w[2] = (unsigned char)(z >> 7);
          w += 3;
        } else {
          w += 1 + put_varint(w + 1, z);
        }
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
    if (nd->key_tag == MB_LUATAB_SHRSTR && nd->tag == MB_LUATAB_SHRSTR) {
      /* a record's usual pair, two short strings: one room check and one length
       * update for both (put_plain's bytes) */
      size_t kl, vl;
      const char *ks = mb_luatab_string(nd->key.p, MB_LUATAB_SHRSTR, &kl);
      const char *vs = mb_luatab_string(nd->v.p, MB_LUATAB_SHRSTR, &vl);
      if (kl < 0x80 && vl < 0x80) {
        if ((st = room(e, 4 + kl + vl))) return st;
        write_short(write_short(e->b->data + e->b->len, ks, kl), vs, vl);
        e->b->len += 4 + kl + vl;
        count++;
        continue;
      }
    }
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
  case LUA_TLIGHTUSERDATA: {
    int st;
    if (put_light(e, lua_touserdata(L, idx), &st)) return st;
    return bad(e, MB_ENC_BADVALUE, "a userdata");
  }
  case LUA_TUSERDATA: {
    mb_pid pid;
    uint64_t ref;
    if (mb_test_pid(L, idx, &pid)) return put_tagvar(e, T_PID, pid);
    if (mb_test_ref(L, idx, &ref)) return put_ref(e, ref);
    int kind, st;
    if (mb_test_handle(L, idx, &kind, &ref))
      return (st = put_tagvar(e, T_HANDLE, ref)) ? st : put_byte(e, (unsigned char)kind);
    return bad(e, MB_ENC_BADVALUE, "a userdata");
  }
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

static size_t encode_scalar(lua_State *L, int idx, int type, unsigned char *out) {
  out[0] = HDR_VERSION;
  switch (type) {
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      out[1] = T_INT;   /* 1 + at most 10 varint bytes */
      return 2 + put_varint(out + 2, zigzag(lua_tointegerx(L, idx, NULL)));
    } else {
      lua_Number d = lua_tonumberx(L, idx, NULL);
      out[1] = T_FLOAT;
      memcpy(out + 2, &d, 8);
      return 10;
    }
  case LUA_TBOOLEAN:
    out[1] = lua_toboolean(L, idx) ? T_TRUE : T_FALSE;
    return 2;
  case LUA_TSTRING: {
    size_t len;
    const char *str = lua_tolstring(L, idx, &len);
    if (len > MB_SCALAR_STR) return 0;
    out[1] = T_STR;
    out[2] = (unsigned char)len;   /* below 0x80: one varint byte */
    memcpy(out + 3, str, len);
    return 3 + len;
  }
  default:
    return 0;
  }
}

size_t mb_encode_scalar(lua_State *L, int idx, unsigned char out[MB_SCALAR_MAX]) {
  return encode_scalar(L, idx, lua_type(L, idx), out);
}

/* One element of a tuple at w, at most room bytes: what it took, or 0 if it is not
 * a plain value (see encode_tuple) or does not fit. The tuple's own writer: no
 * buffer to grow, no error to report, a length known before anything is written. */
static inline size_t tuple_elem(unsigned char *w, size_t room, const mb_luatab_slot *v) {
  uint64_t id;
  size_t len;
  switch (v->tag) {
  case MB_LUATAB_INT:
    id = zigzag(v->v.i);
    len = varint_len(id);
    if (room < 1 + len) return 0;
    w[0] = T_INT;
    return 1 + put_varint(w + 1, id);
  case MB_LUATAB_FLOAT:
    if (room < 9) return 0;
    w[0] = T_FLOAT;
    memcpy(w + 1, &v->v.n, 8);
    return 9;
  case MB_LUATAB_TRUE: case MB_LUATAB_FALSE:
    if (room < 1) return 0;
    w[0] = v->tag == MB_LUATAB_TRUE ? T_TRUE : T_FALSE;
    return 1;
  case MB_LUATAB_SHRSTR: case MB_LUATAB_LNGSTR: {   /* a one-byte length, or not here */
    const char *s = mb_luatab_string(v->v.p, v->tag, &len);
    if (len >= 0x80 || room < 2 + len) return 0;
    write_short((char *)w, s, len);
    return 2 + len;
  }
  case MB_LUATAB_LIGHT:   /* a pid or a ref (no ref watcher: see mb_encode_small) */
    if (mb_light_is(v->v.p, MB_LIGHT_PID, &id)) w[0] = T_PID;
    else if (mb_light_is(v->v.p, MB_LIGHT_REF, &id)) w[0] = T_REF;
    else return 0;
    len = varint_len(id);
    return room < 1 + len ? 0 : 1 + put_varint(w + 1, id);
  default:
    return 0;
  }
}

static size_t encode_tuple(lua_State *L, int idx, unsigned char *out) {
  if (mb_luatab_trusted() != 1) return 0;
  mb_luatab_view tv;
  mb_luatab_view_of(L, idx, &tv);
  lua_Unsigned n = tv.keys;
  /* the array part is t[1..n] exactly, and the hash part one empty node (so
   * lua_rawlen is n: what mb_encode would write as the array section, and no pair) */
  if (n == 0 || n > MB_TUPLE_N || tv.asize != n || !tv.array || tv.nnodes != 1 ||
      !mb_luatab_empty(tv.nodes[0].tag))
    return 0;
  out[0] = HDR_VERSION;
  out[1] = T_TABLE;
  out[2] = (unsigned char)n;   /* n <= MB_TUPLE_N: one varint byte */
  memset(out + 3, 0, 4);       /* no pairs */
  size_t len = 7;
  for (lua_Unsigned i = 0; i < n; i++) {
    size_t k = tuple_elem(out + len, MB_TUPLE_MAX - len, &tv.array[i]);
    if (!k) return 0;
    len += k;
  }
  return len;
}

size_t mb_encode_tuple(lua_State *L, int idx, unsigned char out[MB_TUPLE_MAX]) {
  return lua_type(L, idx) == LUA_TTABLE ? encode_tuple(L, idx, out) : 0;
}

size_t mb_encode_small(lua_State *L, int idx, int type, unsigned char out[MB_SMALL_MAX], int tuples) {
  if (type == LUA_TTABLE) return tuples ? encode_tuple(L, idx, out) : 0;
  return encode_scalar(L, idx, type, out);
}

int mb_encode_string(mb_buf *b, const char *s, size_t len) {
  enc e;
  int st = enc_open(&e, NULL, b, 0);
  if (!st) st = put_string(&e, s, len);
  return enc_close(&e, st, 0, "", NULL, 0);
}
