/* stateimage: the node's image of a bare Lua state and its copies (see stateimage.h).
 *
 * The image is made by lua_newstate on an allocator that lays its blocks out one
 * after the other in a region, rounded to the arena's 8-byte classes, as a fresh
 * state's blocks come out of an arena chunk. Every pointer the state holds into
 * itself is a naturally aligned 8-byte word whose value lies in the region; every
 * other word (sizes, flags, string bytes and hashes, the pointers to C functions and
 * static data) lies far outside it, since the region is a heap address. Those words
 * are listed once, and a copy adds (copy - region) to each. What the method assumes
 * (no other word of the state falls in the region, and nothing in it depends on
 * where it lives: the state's tables have no keys hashed by the address of an
 * object of the state) is checked when the image is made: a trial copy, at another
 * address, runs Lua code that needs the interned reserved words and metamethod names
 * to be found by their hashes, the string table to work, the GC to walk every list
 * and the state to close; if anything is off, the node has no image. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include "stateimage.h"
#include "alloc.h"
#include "spawn.h"
#include "node.h"

#define REGION_MAX (16 * 1024)   /* a bare state is ~5.2 KB */

struct mb_stateimage {
  char *base;        /* the region (64-aligned); the image's state is never run again */
  size_t size;       /* bytes used */
  size_t lstate;     /* offset of the lua_State */
  int64_t bytes;     /* Lua's count of the state's bytes */
  size_t first;      /* the first block's bytes: the lua_State and global state */
  uint32_t nptr;
  uint32_t *ptr;     /* indexes of the words that point into the region */
};

size_t mb_stateimage_size(const mb_stateimage *im) { return im->size; }
const void *mb_stateimage_region(const mb_stateimage *im) { return im->base; }
int64_t mb_stateimage_bytes(const mb_stateimage *im) { return im->bytes; }
size_t mb_stateimage_first_block(const mb_stateimage *im) { return im->first; }

lua_State *mb_stateimage_copy(const mb_stateimage *im, void *dst) {
  memcpy(dst, im->base, im->size);
  uintptr_t delta = (uintptr_t)dst - (uintptr_t)im->base;   /* modular: either way */
  uintptr_t *w = dst;
  for (uint32_t i = 0; i < im->nptr; i++) w[im->ptr[i]] += delta;
  return (lua_State *)((char *)dst + im->lstate);
}

/* ---- the image ---- */

#ifdef MB_ALLOC_PLAIN
mb_stateimage *mb_stateimage_new(mb_node *n, int lua) {
  (void)n; (void)lua;
  return NULL;   /* each block is its own malloc: a copy's could not be freed one by one */
}
#else
typedef struct { char *base; size_t used, holes, first; } region;

/* Blocks laid out one after the other, each in its 8-byte class as the arena would
 * give it. A block reallocated within its class stays (as the arena keeps it); one
 * freed or moved leaves a hole (counted: an image with one is refused). */
static void *region_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  region *r = ud;
  size_t old = ptr ? mb_alloc_class(osize) << MB_ALLOC_GRAIN_SHIFT : 0, k = mb_alloc_class(nsize) << MB_ALLOC_GRAIN_SHIFT;
  if (ptr && k == old) return ptr;
  r->holes += old;
  if (nsize == 0) return NULL;
  if (k > MB_ALLOC_SMALL || REGION_MAX - r->used < k) return NULL;   /* copies' blocks are small */
  void *np = r->base + r->used;
  if (!r->used) r->first = k;
  r->used += k;
  if (ptr) memcpy(np, ptr, osize < nsize ? osize : nsize);
  return np;
}

/* ---- the trial ---- */

/* The trial copy's allocator: its own blocks are never freed (the copy is freed
 * whole), and new ones come from malloc. A block in the image itself (a pointer the
 * copy did not move, were the method wrong for this Lua) is not freed either, so a
 * failing trial fails safely: the image is compared with what it was after. */
typedef struct { char *lo, *hi, *img_lo, *img_hi; } trial;

static void *trial_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  trial *t = ud;
  int inside = ((char *)ptr >= t->lo && (char *)ptr < t->hi) ||
               ((char *)ptr >= t->img_lo && (char *)ptr < t->img_hi);
  if (nsize == 0) {
    if (!inside) free(ptr);
    return NULL;
  }
  if (!inside) return realloc(ptr, nsize);
  void *np = malloc(nsize);
  if (np && ptr) memcpy(np, ptr, osize < nsize ? osize : nsize);
  return np;
}

/* Reserved words must lex as such (the lexer finds them by hash), a metamethod's name
 * must be the one the state interned, a string made at run time must be the same
 * object as the interned one (short strings compare by address), and a full GC must
 * walk everything. */
static const char TRIAL[] =
  "local t = setmetatable({}, { __index = function(_, k) return k .. '!' end })\n"
  "local n = 0\n"
  "for _, w in ipairs { 'and', 'while', '__index', 'function' } do n = n + #w end\n"
  "while n > 0 do n = n - 1 end\n"
  "collectgarbage()\n"
  "local s = 'wh'\n"
  "return t.x == 'x!' and n == 0 and s .. 'ile' == 'while' and rawequal(s .. 'ile', 'while')\n";

static int trial_run(lua_State *L) {
  luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
  lua_pop(L, 1);
  if (luaL_loadbufferx(L, TRIAL, sizeof TRIAL - 1, "=stateimage", "t") != LUA_OK) return lua_error(L);
  lua_call(L, 0, 1);
  return 1;
}

static int trial_ok(const mb_stateimage *im) {
  char *copy = aligned_alloc(64, (im->size + 63) & ~(size_t)63);
  char *before = malloc(im->size);
  int ok = 0;
  if (copy && before) {
    memcpy(before, im->base, im->size);
    trial t = { copy, copy + im->size, im->base, im->base + im->size };
    lua_State *L = mb_stateimage_copy(im, copy);
    lua_setallocf(L, trial_alloc, &t);
    lua_pushcfunction(L, trial_run);
    ok = lua_pcall(L, 0, 1, 0) == LUA_OK && lua_toboolean(L, -1);
    lua_close(L);
    ok = ok && memcmp(before, im->base, im->size) == 0;   /* nothing wrote into the image */
  }
  free(before);
  free(copy);
  return ok;
}

mb_stateimage *mb_stateimage_new(mb_node *n, int lua) {
  mb_stateimage *im = calloc(1, sizeof *im);
  region r = { aligned_alloc(64, REGION_MAX), 0, 0, 0 };
  if (!im || !r.base) goto fail;
  memset(r.base, 0, REGION_MAX);   /* padding copied into states is zero, not garbage */
  lua_State *L = lua_newstate(region_alloc, &r);
  if (!L) goto fail;
  mb_spawn_prepare(L);
  if (n && mb_spawn_open_ahead(L, n, lua) != LUA_OK) goto fail;
  lua_setallocf(L, NULL, NULL);   /* the image is never run again: nothing may allocate */
  /* a block freed or moved while it was made would be dead bytes in every copy, never
   * freed (Lua counts it freed): no image then (none on 5.4.4 with the node's opens) */
  if (r.holes) goto fail;
  im->base = r.base;
  im->size = r.used;
  im->first = r.first;
  im->lstate = (size_t)((char *)L - r.base);
  im->bytes = (int64_t)lua_gc(L, LUA_GCCOUNT) * 1024 + lua_gc(L, LUA_GCCOUNTB);
  uintptr_t lo = (uintptr_t)r.base, hi = lo + r.used;   /* one past the end counts */
  const uintptr_t *w = (const uintptr_t *)r.base;
  size_t words = r.used / sizeof *w;
  im->ptr = malloc(words * sizeof *im->ptr);
  if (!im->ptr) goto fail;
  for (size_t i = 0; i < words; i++)
    if (w[i] >= lo && w[i] <= hi) im->ptr[im->nptr++] = (uint32_t)i;
  if (!trial_ok(im)) goto fail;
  return im;
fail:
  if (im) free(im->ptr);
  free(r.base);
  free(im);
  return NULL;
}
#endif

void mb_stateimage_free(mb_stateimage *im) {
  if (!im) return;
  free(im->ptr);
  free(im->base);
  free(im);
}
