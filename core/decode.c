/* decode: the codec's encoding (codec_format.h) back to Lua values, bounded and
 * safe against any bytes: the receiver's half of every copy. Also the checks the
 * core makes on encoded reasons without decoding them. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "codec.h"
#include "codec_format.h"
#include "luatab.h"
#include "term.h"

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

/* An integer from its zigzag varint value (encode.c's zigzag, undone). */
static inline lua_Integer unzigzag(uint64_t v) { return (lua_Integer)((v >> 1) ^ (0 - (v & 1))); }

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
  strcache *sc;    /* the state's string cache (see strcache), NULL until known */
  void **memo;     /* where the caller keeps it between messages (mb_decode_in), or NULL */
  int scx;         /* its stack slot, 0 when there is none (no table to decode) */
  int sc_looked;   /* the registry was asked for it (strcache_look) */
  int sc_here;     /* it sits in its slot (a cache known from memo does not, until needed) */
  int lone;        /* no string value has come yet in this message (dec_elem) */
  unsigned nth[2]; /* strings of each half of the cache looked up so far (strcache's `at`) */
  rd r;
  int refs;        /* stack index of the decoded tables (by number), 0 = no back-references */
  int inplace;     /* -1 not asked yet; 1 arrays are filled in place (luatab trusts the layout) */
  uint32_t ntabs;
  int depth;
  uint32_t open[MB_CODEC_MAXDEPTH]; /* numbers of the tables being filled */
} dec;

/* Stack slots a level may use: table, key, value, and mb_push_pid's own. */
#define DEC_SLOTS 8

/* Strings repeat from message to message: hash keys ("type", "from", "id") and
 * short values used as names ("ping", "ok", a status), and pushing one costs Lua
 * a hash and a lookup in its string table, and a string to collect when it was
 * not interned already. Each state that decodes strings in tables gets a small
 * cache in two halves, one for keys and one for values, each two-way
 * set-associative: a userdata (kept in the registry) whose user values hold the
 * strings last seen, and whose C part keeps their bytes (pointers into those
 * strings, alive while the user values hold them) for the comparison; ~1.7 KB,
 * counted in the process's heap. While a table is decoded the userdata (or nil,
 * before the first string, or while only its C part is needed) sits at a fixed
 * stack slot. A half that does not pay (fewer than half of a window of lookups
 * hit, as with a dictionary of distinct names or a stream of unique values) is
 * bypassed for a while; the halves keep separate counts, so values that never
 * repeat do not turn the key cache off. A caller that decodes for one state again
 * and again (a process's receive) keeps the cache's address (mb_decode_in): the
 * registry, which only this file's key reaches, holds the userdata for the
 * state's life, so the address stays good, and a message need not look it up.
 *
 * Messages of one shape follow each other (a record's keys, in the order the
 * sender's table holds them; a tuple's tag): the cache also keeps, for the n-th
 * string of each half in a message, where that string was in the last message
 * (`at`; a tuple's element i has its own, `tuple_at`). That slot is tried first:
 * if it holds the same bytes, the string is found without its hash, its set's
 * search or the half's counts (which then count what the shape did not foretell).
 * A slot whose string changed since is only a miss of that try. */
#define SC_HALF   16   /* sets of each half */
#define SC_SETS   (2 * SC_HALF)
#define SC_WAYS   2
#define SC_MAXLEN 40   /* Lua's short strings */
#define SC_WINDOW 256  /* lookups between two looks at the hit rate */
#define SC_BYPASS 4096 /* strings pushed without the cache after a poor window */
#define SC_AT     64   /* strings of a half per message whose last place is kept */
enum { SC_KEYS, SC_VALUES };
struct strcache {
  const void *tag;   /* &strcache_key: a userdata put in its place is not taken for it */
  const char *s[SC_SETS * SC_WAYS];       /* by slot: set * SC_WAYS + way */
  unsigned char len[SC_SETS * SC_WAYS];
  unsigned char older[SC_SETS]; /* the way to replace next */
  struct { unsigned lookups, hits, bypass; } use[2]; /* per half */
  unsigned char at[2][SC_AT];              /* by half and rank in the message: 1 + the slot, 0 none */
  unsigned char tuple_at[MB_TUPLE_N];      /* by a tuple's element */
};
static const char strcache_key = 0;

/* The state's cache pushed from the registry: its address, or NULL (and whatever
 * the registry holds there pushed, nil or another value, which is not taken). */
static strcache *sc_fetch(lua_State *L) {
  strcache *sc = lua_rawgetp(L, LUA_REGISTRYINDEX, &strcache_key) == LUA_TUSERDATA ? lua_touserdata(L, -1) : NULL;
  return sc && lua_rawlen(L, -1) == sizeof *sc && sc->tag == &strcache_key ? sc : NULL;
}

/* A new cache, pushed and put in the registry (replacing what is there). */
static strcache *sc_new(lua_State *L) {
  strcache *sc = lua_newuserdatauv(L, sizeof *sc, SC_SETS * SC_WAYS);
  memset(sc, 0, sizeof *sc);
  sc->tag = &strcache_key;
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &strcache_key);
  return sc;
}

/* The string on top of the stack into the cache sc (the userdata at ud), at the
 * slot a miss chose (1..); the string stays on top. */
static void sc_store(lua_State *L, strcache *sc, int ud, int slot, size_t n) {
  int i = slot - 1;
  ud = lua_absindex(L, ud);
  lua_pushvalue(L, -1);
  sc->s[i] = NULL; /* the old string may go once its slot is overwritten */
  lua_setiuservalue(L, ud, slot);
  sc->s[i] = lua_tostring(L, -1);
  sc->len[i] = (unsigned char)n;
}

/* Reserve the cache's stack slot (nil); the cache is looked up there only when
 * the first short string comes (a message of numbers and pids never looks). */
static void strcache_slot(dec *d) {
  lua_pushnil(d->L);
  d->scx = lua_gettop(d->L);
  d->sc_here = 0;
}

/* The state's cache into the slot: the userdata, or nil when there is none yet (or
 * when the registry holds something else there: then a new cache replaces it). */
static void strcache_look(dec *d) {
  lua_State *L = d->L;
  d->sc_looked = 1;
  strcache *sc = sc_fetch(L);
  if (sc) {
    d->sc = sc;
    if (d->memo) *d->memo = sc;
    lua_replace(L, d->scx);
    d->sc_here = 1;
  } else {
    lua_pop(L, 1);
  }
}

static strcache *strcache_make(dec *d) {
  strcache *sc = sc_new(d->L);
  if (d->memo) *d->memo = sc;
  lua_replace(d->L, d->scx);
  d->sc_here = 1;
  return d->sc = sc;
}

/* Push the cache sc, known from a caller's memo, from the registry, for the user
 * value calls. It must be the registry's: anything else is a broken state. */
static void sc_push_known(lua_State *L, strcache *sc) {
  if (sc_fetch(L) != sc) luaL_error(L, "moonbeam: the decoder's string cache was replaced");
}

/* The cache, known from the caller's memo, into its slot. */
static void strcache_here(dec *d) {
  if (d->sc_here) return;
  sc_push_known(d->L, d->sc);
  lua_replace(d->L, d->scx);
  d->sc_here = 1;
}

static inline uint32_t str_hash(const unsigned char *s, size_t n) {
  uint64_t a, b;
  if (n >= 8) {
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
    /* bits 40..43 of a product depend on its factors' bits 0..43 only: the high
     * halves are folded in, or a word's last two bytes would not count (and
     * "user:0000".."user:0099" would all share one set) */
    a ^= a >> 32;
    b ^= b >> 32;
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
  return (uint32_t)(h >> 40) % SC_HALF;
}

/* Two overlapping fixed-size compares for 4..16 bytes (both sides hold n bytes). */
static inline __attribute__((always_inline)) int same_bytes(const char *a, const unsigned char *b, size_t n) {
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

/* Look the short string s[0..n) up in a half of the cache sc by its hash: its
 * user value's index (1..) on a hit, with *ts its string's bytes; -(index) on a
 * miss (the slot it is to take); 0 while that half is bypassed. */
static inline __attribute__((always_inline)) int sc_look(strcache *sc, int half, const unsigned char *s, size_t n,
                                                         const char **ts) {
  if (sc->use[half].bypass) {
    sc->use[half].bypass--;
    return 0;
  }
  if (++sc->use[half].lookups == SC_WINDOW) {
    if (sc->use[half].hits < SC_WINDOW / 2) sc->use[half].bypass = SC_BYPASS;
    sc->use[half].lookups = sc->use[half].hits = 0;
  }
  uint32_t h = str_hash(s, n) + (half == SC_VALUES ? SC_HALF : 0);
  for (int w = 0; w < SC_WAYS; w++) {
    uint32_t k = h * SC_WAYS + (uint32_t)w;
    if (sc->s[k] && sc->len[k] == n && same_bytes(sc->s[k], s, n)) {
      sc->use[half].hits++;
      sc->older[h] = (unsigned char)(w ^ 1);
      *ts = sc->s[k];
      return (int)k + 1;
    }
  }
  int w = sc->older[h];
  sc->older[h] = (unsigned char)(w ^ 1);
  return -((int)(h * SC_WAYS + (uint32_t)w) + 1);
}

/* sc_look, trying first the slot `at` says (see strcache), then setting `at` to
 * the answer; at may be NULL (a rank past SC_AT). */
static inline __attribute__((always_inline)) int sc_find(strcache *sc, int half, unsigned char *at,
                                                         const unsigned char *s, size_t n, const char **ts) {
  if (at && *at) {
    unsigned k = *at - 1u;
    const char *c = sc->s[k];
    if (c && sc->len[k] == n && same_bytes(c, s, n)) {
      sc->older[k / SC_WAYS] = (unsigned char)(k % SC_WAYS ^ 1);
      *ts = c;
      return (int)k + 1;
    }
  }
  int slot = sc_look(sc, half, s, n, ts);
  if (at) *at = (unsigned char)(slot < 0 ? -slot : slot);
  return slot;
}

/* Look s[0..n) up in a half of the decoder's cache, known to be there (d->sc):
 * as sc_find, and 0 for a long string. */
static inline __attribute__((always_inline)) int str_find_in(dec *d, int half, const unsigned char *s, size_t n,
                                                             const char **ts) {
  if (n > SC_MAXLEN) return 0;
  unsigned nth = d->nth[half]++;
  return sc_find(d->sc, half, nth < SC_AT ? &d->sc->at[half][nth] : NULL, s, n, ts);
}

/* The same, finding or making the cache first; 0 also where the cache is not
 * used (no table). */
static inline __attribute__((always_inline)) int str_find(dec *d, int half, const unsigned char *s, size_t n,
                                                          const char **ts) {
  if (n > SC_MAXLEN || !d->scx) return 0;
  if (!d->sc && !d->sc_looked) strcache_look(d);
  if (!d->sc) strcache_make(d);
  return str_find_in(d, half, s, n, ts);
}

/* Push s[0..n) as str_find left it: from its slot, into its slot, or plain. */
static inline __attribute__((always_inline)) void str_push(dec *d, int slot, const unsigned char *s, size_t n) {
  lua_State *L = d->L;
  if (slot > 0) {
    strcache_here(d);
    lua_getiuservalue(L, d->scx, slot);
    return;
  }
  lua_pushlstring(L, (const char *)s, n);
  if (slot == 0) return;
  strcache_here(d);
  sc_store(L, d->sc, d->scx, -slot, n);
}

/* Push the string s[0..n), a key or a value (half), through the cache when it is
 * short, a table is being decoded and that half of the cache pays. */
static inline __attribute__((always_inline)) void push_str(dec *d, int half, const unsigned char *s, size_t n) {
  const char *ts;
  str_push(d, str_find(d, half, s, n, &ts), s, n);
}

static int dec_value(dec *d);

/* A value's string through the cache: one copy of push_str for every value site. */
static __attribute__((noinline)) void push_value_str(dec *d, const unsigned char *s, size_t n) {
  push_str(d, SC_VALUES, s, n);
}

/* One element: integers and short strings inline, everything else through
 * dec_value. The hot loops below call this. */
static inline int dec_elem(dec *d) {
  rd *r = &d->r;
  uint64_t v;
  if (r->p != r->end) {
    if (*r->p == T_INT) {
      r->p++;
      if (rd_varint(r, &v)) return -1;
      lua_pushinteger(d->L, unzigzag(v));
      return 0;
    }
    if (*r->p == T_STR) {
      r->p++;
      if (rd_varint(r, &v) || v > rd_left(r)) return -1;
      /* Finding the cache costs more than a plain push: a message's first string
       * value does not look (a tuple's tag, {"ping", pid, n}); the next ones do. */
      if (d->lone && !d->sc) {
        d->lone = 0;
        lua_pushlstring(d->L, (const char *)r->p, (size_t)v);
      } else {
        push_value_str(d, r->p, (size_t)v);
      }
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
      lua_pushinteger(L, unzigzag(v));
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

/* t[1..narr] of the table at t, just made with an array part of exactly narr
 * slots (a): integers, floats, booleans and light pids and refs are written into
 * the slots, as lua_rawseti would write them (values the GC never follows: no
 * barrier is owed); anything else goes through the API. Lua moves an array part
 * only to resize it, which only a key outside it causes: the slots stay put while
 * strings and nested tables are made. */
#define FILL_MIN 2   /* from a pair up: bench/instr.sh pingpong 7,538 -> 7,455 against 8 (the
                      * trust check is one load now; a lone element is not worth a view) */

static __attribute__((noinline)) int dec_fill(dec *d, int t, uint64_t narr, mb_luatab_slot *a) {
  lua_State *L = d->L;
  /* local cursors: the stores into the slots could alias d->r for the compiler */
  const unsigned char *p = d->r.p, *end = d->r.end;
  for (uint64_t i = 0; i < narr; i++) {
    /* a run of integers of one or two varint bytes (-8192..8191), as many as
     * surely fit in what is left (three bytes each at most): no end check each */
    uint64_t stop = (uint64_t)(end - p) / 3;
    stop = narr - i < stop ? narr : i + stop;
    while (i < stop && p[0] == T_INT) {
      uint64_t v = p[1], two = v >> 7;   /* a second byte follows */
      if (two && p[2] >= 0x80) break;
      v = two ? (v & 0x7f) | (uint64_t)p[2] << 7 : v;
      p += 2 + two;
      a[i].v.i = unzigzag(v);
      a[i].tag = MB_LUATAB_INT;
      i++;
    }
    if (i == narr) break;
    if (p == end) return -1;
    unsigned char tag = *p;
    if (tag == T_TRUE || tag == T_FALSE) {
      p++;
      a[i].tag = tag == T_TRUE ? MB_LUATAB_TRUE : MB_LUATAB_FALSE;
      continue;
    }
    if (tag == T_NIL) { p++; continue; }   /* the slot stays empty, as a nil leaves it */
    d->r.p = p;
    if (tag == T_INT || tag == T_PID || tag == T_REF) {
      rd *r = &d->r;
      uint64_t v;
      r->p++;
      if (rd_varint(r, &v)) return -1;
      if (tag == T_INT) {
        a[i].v.i = unzigzag(v);
        a[i].tag = MB_LUATAB_INT;
        p = r->p;
        continue;
      }
      if (v <= MB_LIGHT_ID_MASK) {
        a[i].v.p = (const void *)(uintptr_t)((tag == T_PID ? MB_LIGHT_PID : MB_LIGHT_REF) | v);
        a[i].tag = MB_LUATAB_LIGHT;
        p = r->p;
        continue;
      }
      r->p = p;   /* a boxed one: through the API */
    } else if (tag == T_FLOAT) {
      if (end - p < 9) return -1;
      memcpy(&a[i].v.n, p + 1, 8);
      a[i].tag = MB_LUATAB_FLOAT;
      p += 9;
      continue;
    }
    if (dec_elem(d)) return -1;
    lua_rawseti(L, t, (lua_Integer)i + 1);
    p = d->r.p;
  }
  d->r.p = p;
  return 0;
}

/* A plain value that is not a string at the reader, as a table slot holds it:
 * an integer, float, boolean or light pid or ref. 1 read; 0 anything else (the
 * reader then stands where it stood). */
static inline int rd_plain(rd *r, mb_luatab_value *v, unsigned char *vtag) {
  rd at = *r;
  uint64_t x;
  if (r->p == r->end) return 0;
  unsigned char tag = *r->p++;
  switch (tag) {
  case T_INT:
    if (rd_varint(r, &x)) break;
    v->i = unzigzag(x);
    *vtag = MB_LUATAB_INT;
    return 1;
  case T_TRUE: case T_FALSE:
    v->i = 0;
    *vtag = tag == T_TRUE ? MB_LUATAB_TRUE : MB_LUATAB_FALSE;
    return 1;
  case T_FLOAT:
    if (rd_left(r) < 8) break;
    memcpy(&v->n, r->p, 8);
    r->p += 8;
    *vtag = MB_LUATAB_FLOAT;
    return 1;
  case T_PID: case T_REF:
    if (rd_varint(r, &x) || x > MB_LIGHT_ID_MASK) break;
    v->p = (const void *)(uintptr_t)((tag == T_PID ? MB_LIGHT_PID : MB_LIGHT_REF) | x);
    *vtag = MB_LUATAB_LIGHT;
    return 1;
  }
  *r = at;
  return 0;
}

/* The pair of the key kts (bytes of a string the cache holds) and the value at the
 * reader, written into the table tp without the stack (mb_luatab_newkey): 1, the
 * value read. Or 0, with nothing written or read, for a value it does not take
 * (not plain) or a pair mb_luatab_newkey leaves to lua_rawset. Between newkey's
 * look at the table's colour and its write nothing allocates, so no GC step runs;
 * the key stays alive in the cache, the value in the cache or on the stack. A
 * string value the cache does not hold is pushed here (its one look-up), and the
 * pair done with it, by newkey or lua_rawset: 1. */
static inline __attribute__((always_inline)) int put_pair(dec *d, int t, char *tp, int kslot, const char *kts) {
  rd *r = &d->r, save = *r;
  mb_luatab_value v;
  unsigned char vtag;
  uint64_t x;
  if (r->p != r->end && *r->p == T_STR) {
    r->p++;
    const char *vts = NULL;
    if (rd_varint(r, &x) || x > rd_left(r)) { *r = save; return 0; }
    int vslot = str_find_in(d, SC_VALUES, r->p, (size_t)x, &vts);   /* the key's cache */
    if (vslot <= 0) {
      /* not in the cache: pushed here, once (into the slot str_find chose, so
       * the cache's replacement and counts see one look-up), and written from
       * the stack, which holds it; else lua_rawset with the key under it */
      lua_State *L = d->L;
      str_push(d, vslot, r->p, (size_t)x);
      r->p += x;
      v.p = mb_luatab_string_object(lua_tostring(L, -1));
      if (mb_luatab_newkey(tp, mb_luatab_string_object(kts), mb_luatab_string_tag(v.p), v) == 0) {
        lua_pop(L, 1);
        return 1;
      }
      strcache_here(d);
      lua_getiuservalue(L, d->scx, kslot);
      lua_insert(L, -2);
      lua_rawset(L, t);
      return 1;
    }
    r->p += x;
    v.p = mb_luatab_string_object(vts);
    vtag = MB_LUATAB_SHRSTR;
  } else if (!rd_plain(r, &v, &vtag)) {
    return 0;
  }
  if (mb_luatab_newkey(tp, mb_luatab_string_object(kts), vtag, v)) {
    *r = save;
    return 0;
  }
  return 1;
}

static __attribute__((noinline)) int dec_table(dec *d) {
  lua_State *L = d->L;
  uint64_t narr;
  uint32_t nh;
  if (rd_table(&d->r, &narr, &nh) || d->depth >= MB_CODEC_MAXDEPTH || d->ntabs == UINT32_MAX ||
      !lua_checkstack(L, DEC_SLOTS))
    return -1;
  if ((narr >= FILL_MIN || nh) && d->inplace < 0) d->inplace = mb_luatab_trusted();
  if (d->inplace <= 0 && nh == 0 && narr >= PACK_MIN && narr <= PACK_MAX && narr <= rd_left(&d->r) &&
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
  mb_luatab_view tv;
  if (narr >= FILL_MIN && d->inplace > 0 && (mb_luatab_view_of(L, t, &tv), tv.asize == narr && tv.array)) {
    if (dec_fill(d, t, narr, (mb_luatab_slot *)tv.array)) return -1;
  } else {
    for (uint64_t i = 1; i <= narr; i++) {
      if (dec_elem(d)) return -1;
      lua_rawseti(L, t, (lua_Integer)i);
    }
  }
  /* a pair of a cached key and a plain value is written into the hash part
   * directly when the layout is trusted (put_pair) */
  char *tp = nh && d->inplace > 0 ? (char *)lua_topointer(L, t) : NULL;
  for (uint32_t j = 0; j < nh; j++) {
    rd *r = &d->r;
    uint64_t n;
    if (r->p != r->end && *r->p == T_STR) { /* the usual key: no checks needed */
      r->p++;
      if (rd_varint(r, &n) || n > rd_left(r)) return -1;
      const unsigned char *ksrc = r->p;
      const char *kts = NULL;
      r->p += n;
      int kslot = str_find(d, SC_KEYS, ksrc, (size_t)n, &kts);
      if (tp && kslot > 0 && put_pair(d, t, tp, kslot, kts)) continue;
      str_push(d, kslot, ksrc, (size_t)n);
      /* a string value (a record's usual field) through the cache here too: the
       * message's strings are past their first already */
      if (r->p != r->end && *r->p == T_STR) {
        r->p++;
        if (rd_varint(r, &n) || n > rd_left(r)) return -1;
        push_str(d, SC_VALUES, r->p, (size_t)n);
        r->p += n;
      } else if (dec_elem(d)) {
        return -1;
      }
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
  if (tp) tp[MB_LUATAB_FLAGS] &= (char)~MB_LUATAB_TMFLAGS;   /* as lua_rawset leaves it */
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
    lua_pushinteger(L, unzigzag(v));
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

static int dec_open(dec *d, lua_State *L, const char *p, size_t len, void **memo) {
  int backrefs;
  d->L = L;
  d->memo = memo;
  d->sc = memo ? *memo : NULL;
  d->scx = 0;
  d->sc_looked = 0;
  d->sc_here = 0;
  d->lone = 1;
  d->nth[SC_KEYS] = d->nth[SC_VALUES] = 0;
  d->refs = 0;
  d->inplace = -1;
  d->ntabs = 0;
  d->depth = 0;
  if (rd_header(&d->r, p, len, &backrefs) || !lua_checkstack(L, DEC_SLOTS + 2)) return -1;
  if (backrefs) { /* only then keep every table reachable by number */
    lua_createtable(L, 8, 0);
    d->refs = lua_gettop(L);
  }
  return 0;
}

/* A short flat tuple, as mb_encode_tuple writes them ({"ping", pid, n}): at most
 * MB_TUPLE_N elements, no pairs, each an integer, float, boolean, short string or
 * light pid or ref, and nothing after them. Read whole first (its values kept,
 * so a message that is not one leaves nothing behind), then built without the
 * decoder's set-up (no cache slot, no reference table): the
 * non-strings straight into the array slots (values the GC never follows). The
 * strings go through lua_rawseti; or, for a caller that keeps the state's string
 * cache (memo, mb_decode_in), a string the cache holds is written into its slot
 * too, while the table is not black (the cache keeps the string alive, and Lua
 * owes a barrier only for a black table), and one it does not hold joins it.
 * 1 done (the table pushed); 0 not such a message, nothing pushed: the general
 * decoder takes it. */
static int dec_tuple(lua_State *L, const unsigned char *u, const unsigned char *end, void **memo) {
  unsigned narr = u[2];
  uint32_t nh;
  memcpy(&nh, u + 3, 4);
  if (narr == 0 || narr > MB_TUPLE_N || nh != 0 || !mb_luatab_trusted()) return 0;
  mb_luatab_value v[MB_TUPLE_N];
  unsigned char tag[MB_TUPLE_N];
  size_t len[MB_TUPLE_N];
  int strings = 0;
  rd r = { u + 7, end };
  for (unsigned i = 0; i < narr; i++) {
    if (rd_plain(&r, &v[i], &tag[i])) continue;
    uint64_t n;
    if (r.p == r.end || *r.p++ != T_STR || rd_varint(&r, &n) || n > SC_MAXLEN || n > rd_left(&r)) return 0;
    v[i].p = r.p;   /* the bytes, pushed below */
    len[i] = (size_t)n;
    tag[i] = 0;
    strings = 1;
    r.p += n;
  }
  if (r.p != end) return 0;
  strcache *sc = NULL;
  if (strings && memo) {
    sc = *memo;
    if (!sc) {   /* a process's first: the state's cache, or a new one */
      if (!lua_checkstack(L, 2)) return 0;
      if (!(sc = sc_fetch(L))) {
        lua_pop(L, 1);
        sc = sc_new(L);
      }
      lua_pop(L, 1);
      *memo = sc;
    }
  }
  /* the table takes the one slot a caller leaves (see mb_decode_in); a string
   * pushed below asks for more */
  lua_createtable(L, (int)narr, 0);
  const char *tp = lua_topointer(L, -1);
  mb_luatab_view tv;
  mb_luatab_view_at(tp, &tv);
  if (tv.asize != narr || !tv.array) {
    lua_pop(L, 1);
    return 0;
  }
  mb_luatab_slot *a = (mb_luatab_slot *)tv.array;
  for (unsigned i = 0; i < narr; i++) {
    if (tag[i]) {
      a[i].v = v[i];
      a[i].tag = tag[i];
      continue;
    }
    const char *ts;
    int slot = sc ? sc_find(sc, SC_VALUES, &sc->tuple_at[i], v[i].p, len[i], &ts) : 0;
    if (slot > 0 && !(tp[MB_LUATAB_MARKED] & MB_LUATAB_BLACK)) {
      a[i].v.p = mb_luatab_string_object(ts);
      a[i].tag = MB_LUATAB_SHRSTR;
      continue;
    }
    if (!lua_checkstack(L, 3)) {   /* the general decoder fails the same way */
      lua_pop(L, 1);
      return 0;
    }
    /* Lua moves an array part only to resize it; this one keeps its size */
    lua_pushlstring(L, v[i].p, len[i]);
    if (slot < 0) {
      sc_push_known(L, sc);
      lua_insert(L, -2);
      sc_store(L, sc, -2, -slot, len[i]);
      lua_remove(L, -2);
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* mb_decode_in past a lone integer: a short tuple, or the general decoder (whose
 * frame a lone integer does not set up). */
static __attribute__((noinline)) int decode_rest(lua_State *L, const char *p, size_t len, void **cache) {
  const unsigned char *u = (const unsigned char *)p;
  if (p && len >= 8 && len <= 7 + MB_TUPLE_MAX && u[0] == HDR_VERSION && u[1] == T_TABLE &&
      dec_tuple(L, u, u + len, cache))
    return 0;
  dec d;
  int top = lua_gettop(L);
  if (dec_open(&d, L, p, len, cache)) return -1;
  if (d.r.p != d.r.end && *d.r.p == T_TABLE) strcache_slot(&d); /* below the result */
  if (dec_value(&d) || d.r.p != d.r.end) {
    lua_settop(L, top);
    return -1;
  }
  /* the cache's slot was pushed after refs, just below the result: the result
   * moves into it (cheaper than lua_remove's rotation) */
  if (d.scx) lua_replace(L, d.scx);
  if (d.refs) lua_remove(L, d.refs);
  return 0;
}

int mb_decode_in(lua_State *L, const char *p, size_t len, void **cache) {
  /* a lone integer (a ring's token, a counter): pushed at once,
   * without the decoder's set-up (a push needs one slot, which every C function
   * has: the callers decode from C functions with room left) */
  const unsigned char *u = (const unsigned char *)p;
  if (p && len >= 3 && len <= 2 + VARINT_MAX && u[0] == HDR_VERSION && u[1] == T_INT) {
    rd r = { u + 2, u + len };
    uint64_t v;
    if (!rd_varint(&r, &v) && r.p == r.end) {
      lua_pushinteger(L, unzigzag(v));
      return 0;
    }
  }
  return decode_rest(L, p, len, cache);
}

int mb_decode(lua_State *L, const char *p, size_t len) { return mb_decode_in(L, p, len, NULL); }

int mb_decode_values(lua_State *L, const char *p, size_t len) {
  dec d;
  uint64_t n;
  int top = lua_gettop(L);
  if (dec_open(&d, L, p, len, NULL) || rd_varint(&d.r, &n) || n > rd_left(&d.r) ||
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
