/* luatab: what the codec may know of a Lua table beyond the public API (see luatab.c). */
#ifndef MB_LUATAB_H
#define MB_LUATAB_H

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <lua.h>
#include "buf.h"

/* Lua 5.4's value representation: 8 bytes of value, then a tag byte. */
typedef union mb_luatab_value {
  lua_Integer i;
  lua_Number n;
  const void *p; /* strings and other collectable objects */
} mb_luatab_value;

/* One element of a table's array part (a TValue). */
typedef struct mb_luatab_slot {
  mb_luatab_value v;
  unsigned char tag;
} mb_luatab_slot;

/* One node of a table's hash part: the value, then the key. */
typedef struct mb_luatab_node {
  mb_luatab_value v;
  unsigned char tag;
  unsigned char key_tag;
  int next;
  mb_luatab_value key;
} mb_luatab_node;

/* Tags of the values the codec reads in place; an empty slot has (tag & 0x0f) == 0. */
#define MB_LUATAB_FALSE  0x01
#define MB_LUATAB_TRUE   0x11
#define MB_LUATAB_INT    0x03
#define MB_LUATAB_FLOAT  0x13
#define MB_LUATAB_SHRSTR 0x44
#define MB_LUATAB_LNGSTR 0x54
#define MB_LUATAB_LIGHT  0x02   /* a light userdata: its pointer in v.p */

static inline int mb_luatab_empty(unsigned char tag) { return (tag & 0x0f) == 0; }

/* 1 for the tag of any Lua 5.4 value (light userdata, C and Lua functions,
 * tables, userdata, threads besides the above): a tag that is none of these
 * nor empty means the view misreads the table. */
static inline int mb_luatab_known(unsigned char tag) {
  switch (tag) {
  case MB_LUATAB_LIGHT: case 0x16: case 0x45: case 0x46: case 0x47: case 0x48: case 0x66:
  case MB_LUATAB_FALSE: case MB_LUATAB_TRUE: case MB_LUATAB_INT: case MB_LUATAB_FLOAT:
  case MB_LUATAB_SHRSTR: case MB_LUATAB_LNGSTR:
    return 1;
  default:
    return mb_luatab_empty(tag);
  }
}

/* A read-only view of a table, valid until the table is written to. */
typedef struct mb_luatab_view {
  const mb_luatab_slot *array; /* t[1..asize] */
  lua_Unsigned keys;           /* alimit: #t's hint, <= asize */
  lua_Unsigned asize;          /* the array part's real size: every key in 1..asize is there */
  const mb_luatab_node *nodes; /* the hash part, nnodes nodes */
  size_t nnodes;
} mb_luatab_view;

/* 1 when the running Lua passed the probe (done once per program). The answer,
 * once published, is read inline: every small tuple's send and receive asks. */
extern _Atomic int mb_luatab_answer;   /* -1 until probed */
int mb_luatab_probe_once(void);
static inline int mb_luatab_trusted(void) {
  int a = atomic_load_explicit(&mb_luatab_answer, memory_order_acquire);
  return a >= 0 ? a : mb_luatab_probe_once();
}

/* Table: GC header (a pointer, two bytes), flags, lsizenode, unsigned alimit,
 * TValue *array, Node *node. */
#define MB_LUATAB_FLAGS     (sizeof(void *) + 2)
#define MB_LUATAB_LSIZENODE (sizeof(void *) + 3)
#define MB_LUATAB_ALIMIT    (sizeof(void *) + 4)
#define MB_LUATAB_ARRAY     (sizeof(void *) + 8)
#define MB_LUATAB_NODE      (2 * sizeof(void *) + 8)
#define MB_LUATAB_NOT_REAL_ASIZE 0x80 /* in flags */

/* Table fields the decoder's new-key writer also uses (mb_luatab_newkey): the GC
 * mark byte (black: bit 5) and Node *lastfree, after node. */
#define MB_LUATAB_MARKED    (sizeof(void *) + 1)
#define MB_LUATAB_BLACK     0x20
#define MB_LUATAB_LASTFREE  (3 * sizeof(void *) + 8)
#define MB_LUATAB_TMFLAGS   0x3f   /* in flags: the cache of absent metamethods (__index..__eq) */

/* A short string object's hash (Lua's `hash` field). */
static inline unsigned mb_luatab_str_hash(const char *ts) {
  unsigned h;
  memcpy(&h, ts + sizeof(void *) + 4, sizeof h);
  return h;
}

/* Insert the pair (key, (vtag, v)) into the table tp as a new key, as luaH_newkey
 * would: 0. key is a short string object (MB_LUATAB_SHRSTR); tp is lua_topointer
 * of a table with no metatable that the caller is filling. The value is one of
 * the MB_LUATAB_ tags or a table (0x45) and must be kept alive by the caller (on
 * its stack or in its cache) until the table holds it: no barrier is written, so
 * -1, with nothing written, for a table that is black to the GC; also for a key
 * already there, a collision with a key that is not a short string, or no free
 * node (Lua then grows the table): lua_rawset must do those. No allocation, no
 * GC step. Only once mb_luatab_trusted() said 1; the caller clears the table's
 * metamethod cache (MB_LUATAB_TMFLAGS) once it is done, as lua_rawset does.
 * Inline: the decoder's loop over a map's pairs calls it for each. */
static inline int mb_luatab_newkey(char *tp, const void *key, unsigned char vtag, mb_luatab_value v) {
  const char *ks = key;
  if ((unsigned char)tp[MB_LUATAB_MARKED] & MB_LUATAB_BLACK) return -1;
  mb_luatab_node *nodes, *lastfree;
  memcpy(&nodes, tp + MB_LUATAB_NODE, sizeof nodes);
  memcpy(&lastfree, tp + MB_LUATAB_LASTFREE, sizeof lastfree);
  if (!lastfree) return -1;   /* the shared dummy node: no hash part */
  size_t mask = ((size_t)1 << ((unsigned char)tp[MB_LUATAB_LSIZENODE] & 31)) - 1;
  mb_luatab_node *mp = &nodes[mb_luatab_str_hash(ks) & mask];
  for (mb_luatab_node *n = mp;; n += n->next) {   /* the key's chain: is it there? */
    if (n->key_tag == MB_LUATAB_SHRSTR && n->key.p == ks) return -1;
    if (!n->next) break;
  }
  if (!mb_luatab_empty(mp->tag)) {   /* main position taken */
    if (mp->key_tag != MB_LUATAB_SHRSTR) return -1;
    mb_luatab_node *othern = &nodes[mb_luatab_str_hash(mp->key.p) & mask], *f = NULL;
    while (lastfree > nodes) {   /* getfreepos */
      lastfree--;
      if (lastfree->key_tag == 0) { f = lastfree; break; }
    }
    memcpy(tp + MB_LUATAB_LASTFREE, &lastfree, sizeof lastfree);
    if (!f) return -1;
    if (othern != mp) {   /* the colliding node is out of its main position: move it */
      while (othern + othern->next != mp) othern += othern->next;
      othern->next = (int)(f - othern);
      *f = *mp;
      if (mp->next) {
        f->next += (int)(mp - f);
        mp->next = 0;
      }
      mp->tag = 0x10;   /* empty (LUA_VEMPTY) */
    } else {          /* the new key goes to the free node, chained after mp */
      if (mp->next) f->next = (int)((mp + mp->next) - f);
      mp->next = (int)(f - mp);
      mp = f;
    }
  }
  mp->key.p = ks;
  mp->key_tag = MB_LUATAB_SHRSTR;
  mp->v = v;
  mp->tag = vtag;
  return 0;
}

/* The value tag of a string object: MB_LUATAB_SHRSTR or MB_LUATAB_LNGSTR (its
 * own tag byte, after the GC header's pointer, with the collectable bit). */
static inline unsigned char mb_luatab_string_tag(const void *ts) {
  return (unsigned char)(((const char *)ts)[sizeof(void *)] | 0x40);
}

/* The string object whose bytes are at s (what lua_tolstring returned). */
static inline const void *mb_luatab_string_object(const char *s) {
  return s - (sizeof(void *) + 8 + sizeof(size_t));
}

/* Fill v for the table t (lua_topointer of it). Only once mb_luatab_trusted()
 * said 1 (or within the probe, which is deciding that). */
static inline void mb_luatab_view_at(const char *t, mb_luatab_view *v) {
  unsigned alimit;
  memcpy(&alimit, t + MB_LUATAB_ALIMIT, sizeof alimit);
  memcpy(&v->array, t + MB_LUATAB_ARRAY, sizeof v->array);
  memcpy(&v->nodes, t + MB_LUATAB_NODE, sizeof v->nodes);
  v->keys = alimit;
  v->nnodes = (size_t)1 << ((unsigned char)t[MB_LUATAB_LSIZENODE] & 31);
  /* as luaH_realasize: alimit is the size unless flagged, and then still when
   * it is a power of two (or 0); else the size is the next power of two */
  if (((unsigned char)t[MB_LUATAB_FLAGS] & MB_LUATAB_NOT_REAL_ASIZE) && (alimit & (alimit - 1))) {
    lua_Unsigned s = alimit - 1;
    for (unsigned sh = 1; sh < 64; sh <<= 1) s |= s >> sh;
    v->asize = s + 1;
  } else {
    v->asize = alimit;
  }
}

/* The same for the table at idx. */
static inline void mb_luatab_view_of(lua_State *L, int idx, mb_luatab_view *v) {
  mb_luatab_view_at(lua_topointer(L, idx), v);
}

/* The bytes and length of a string value whose tag is MB_LUATAB_SHRSTR or _LNGSTR
 * (a TString: GC header, extra, shrlen, hash, size_t lnglen, then the bytes). */
static inline const char *mb_luatab_string(const void *ts, unsigned char tag, size_t *len) {
  const char *s = ts;
  if (tag == MB_LUATAB_SHRSTR) *len = (unsigned char)s[sizeof(void *) + 3];
  else memcpy(len, s + sizeof(void *) + 8, sizeof *len);
  return s + sizeof(void *) + 8 + sizeof(size_t);
}

/* mb_encode (encode.c) with the in-place reader on (inplace 1) or off (0),
 * whatever the probe said: for the probe, which compares the two, and for tests.
 * MB_INPLACE_DOUBT reads every table in place, then takes the view as wrong and
 * reads it again through the API (a test of that fallback). */
#define MB_INPLACE_DOUBT 2
int mb_encode_mode(lua_State *L, int idx, mb_buf *b, int inplace);

/* Tests only: f sees every in-place encoding the probe is about to compare (and
 * may change it). 0, or -1 when the probe has already run. */
int mb_luatab_probe_tamper(void (*f)(mb_buf *b));

#endif
