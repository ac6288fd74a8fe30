/* alloc: size-class free lists without headers for process states (see alloc.h), and
 * the lua_Alloc each process state runs on. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "alloc.h"
#include "proc.h"
#include "node.h"
#include "scheduler.h"

/* When a block does not fit in the rest of the newest chunk, that rest (less than
 * the largest class, 2 KB) is left: ~0.1% of a 1 MiB chunk. At 64 KiB it came to
 * ~1 KB a chunk in bench/spawn, whose identical processes kept hitting the same
 * phase: ~100 bytes a process. (A run, a state image's copy, that does not fit
 * takes a new chunk and leaves the rest to small blocks: carve_run.) A chunk is
 * mapped with its pages populated: one system call instead of a page fault per
 * 4 KiB as processes are made (bench/spawn spent a third of its time in the
 * kernel's fault path). A node's caches each hold at most two chunks not yet used
 * up (the one small blocks come from, and the spare a run started). */
#define CHUNK_SIZE (1024 * 1024)

typedef struct mb_chunk { struct mb_chunk *next; } mb_chunk;

void mb_arena_init(mb_arena *a) {
  memset(a, 0, sizeof *a);
  pthread_mutex_init(&a->lock, NULL);
}

void mb_arena_free(mb_arena *a) {
  for (mb_chunk *c = a->chunks, *next; c; c = next) { next = c->next; munmap(c, CHUNK_SIZE); }
  a->chunks = NULL;
  pthread_mutex_destroy(&a->lock);
}

#ifndef MB_ALLOC_PLAIN
static void *chunk_map(void) {
  void *p = mmap(NULL, CHUNK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* A new chunk, linked into the arena: where its usable bytes start (the chunk header
 * takes the first 16), or NULL. */
static char *chunk_new(mb_arena *a, mb_acache *c) {
  mb_chunk *ch = chunk_map();
  if (!ch) return NULL;
  int shared = c == &a->shared;   /* the shared cache is used under the lock already */
  if (!shared) pthread_mutex_lock(&a->lock);
  ch->next = a->chunks;
  a->chunks = ch;
  if (!shared) pthread_mutex_unlock(&a->lock);
  return (char *)ch + 16;
}

/* Carve from the spare (the rest of a chunk a run was taken from) when it has room
 * for bytes, else from a new chunk (the rest of the old one, and a spare too small
 * for bytes, are left). -1: none. */
static int new_chunk(mb_arena *a, mb_acache *c, size_t bytes) {
  int spare = (size_t)(c->spare_end - c->spare) >= bytes;
  c->bump = spare ? c->spare : NULL;
  c->bump_end = spare ? c->spare_end : NULL;
  c->spare = c->spare_end = NULL;
  if (spare) return 0;
  char *start = chunk_new(a, c);
  if (!start) return -1;
  c->bump = start;
  c->bump_end = start - 16 + CHUNK_SIZE;
  return 0;
}

/* Carve a block of class k from the cache's chunk, taking a new chunk when needed. */
static void *carve(mb_arena *a, mb_acache *c, size_t k) {
  size_t bytes = k << MB_ALLOC_GRAIN_SHIFT;
  if ((size_t)(c->bump_end - c->bump) < bytes && new_chunk(a, c, bytes)) return NULL;
  void *p = c->bump;
  c->bump += bytes;
  return p;
}

static void *small_alloc(mb_arena *a, mb_acache *c, size_t k) {
  void *p = c->free[k];
  if (p) { c->free[k] = *(void **)p; return p; }
  return carve(a, c, k);
}

static void small_free(mb_acache *c, void *p, size_t k) {
  *(void **)p = c->free[k];
  c->free[k] = p;
}

/* Carve bytes (a multiple of 64, at most MB_ALLOC_SMALL) at a 64-byte boundary: from
 * the top of the chunk down, while small blocks and runs go up from its bottom, so
 * line blocks follow each other with no gap (the chunk's end is page-aligned). When
 * they came from the bottom, each skipped up to 56 bytes to reach a line, which
 * the blocks of a fresh state used to fill but a state copied whole does not. */
static void *carve_lines(mb_arena *a, mb_acache *c, size_t bytes) {
  if ((size_t)(c->bump_end - c->bump) < bytes && new_chunk(a, c, bytes)) return NULL;
  c->bump_end -= bytes;
  return c->bump_end;
}

static void *realloc_in(mb_arena *a, mb_acache *c, void *ptr, size_t old, size_t nsize) {
  size_t ok = old && old <= MB_ALLOC_SMALL ? mb_alloc_class(old) : 0;   /* 0: not small */
  if (nsize == 0) {
    if (ok) small_free(c, ptr, ok);
    else free(ptr);
    return NULL;
  }
  size_t nk = nsize <= MB_ALLOC_SMALL ? mb_alloc_class(nsize) : 0;
  if (ptr && ok && ok == nk) return ptr;
  if (ptr && !ok && !nk) return realloc(ptr, nsize);
  void *np = nk ? small_alloc(a, c, nk) : malloc(nsize);
  if (!np) return NULL;
  if (ptr) {
    memcpy(np, ptr, old < nsize ? old : nsize);
    if (ok) small_free(c, ptr, ok);
    else free(ptr);
  }
  return np;
}

#endif

void *mb_arena_realloc(mb_arena *a, mb_acache *c, void *ptr, size_t old, size_t nsize) {
#ifdef MB_ALLOC_PLAIN
  (void)a; (void)c; (void)old;
  if (nsize == 0) { free(ptr); return NULL; }
  return realloc(ptr, nsize);
#else
  if (c) return realloc_in(a, c, ptr, old, nsize);
  pthread_mutex_lock(&a->lock);
  void *p = realloc_in(a, &a->shared, ptr, old, nsize);
  pthread_mutex_unlock(&a->lock);
  return p;
#endif
}

#ifndef MB_ALLOC_PLAIN
/* carve on this thread's cache, or on the arena's shared one under its lock */
static void *carve_on(mb_arena *a, mb_acache *c, void *(*carve_fn)(mb_arena *, mb_acache *, size_t),
                      size_t bytes) {
  if (c) return carve_fn(a, c, bytes);
  pthread_mutex_lock(&a->lock);
  void *p = carve_fn(a, &a->shared, bytes);
  pthread_mutex_unlock(&a->lock);
  return p;
}
#endif

void *mb_arena_alloc_lines(mb_arena *a, mb_acache *c, size_t nsize) {
#ifdef MB_ALLOC_PLAIN
  (void)a; (void)c;
  return aligned_alloc(64, nsize);
#else
  return carve_on(a, c, carve_lines, nsize);
#endif
}

#ifndef MB_ALLOC_PLAIN
/* A run from the chunk; when the rest of it is too small, from a new chunk whose rest
 * becomes the spare, and the old rest stays for small blocks and line blocks (they
 * take the spare once it is used up): a run of ~6 KB at the end of every chunk left
 * ~3 KB there on average, which the blocks of a state made block by block filled. */
static void *carve_run(mb_arena *a, mb_acache *c, size_t bytes) {
  char **from = (size_t)(c->bump_end - c->bump) >= bytes ? &c->bump
              : (size_t)(c->spare_end - c->spare) >= bytes ? &c->spare : NULL;
  if (!from) {
    char *start = chunk_new(a, c);
    if (!start) return NULL;
    if (c->spare_end - c->spare > c->bump_end - c->bump) {   /* keep the larger rest */
      c->bump = c->spare;
      c->bump_end = c->spare_end;
    }
    c->spare = start;
    c->spare_end = start - 16 + CHUNK_SIZE;
    from = &c->spare;
  }
  void *p = *from;
  *from += bytes;
  return p;
}
#endif

void *mb_arena_alloc_run(mb_arena *a, mb_acache *c, size_t nsize) {
#ifdef MB_ALLOC_PLAIN
  (void)a; (void)c; (void)nsize;
  return NULL;
#else
  return carve_on(a, c, carve_run, mb_alloc_class(nsize) << MB_ALLOC_GRAIN_SHIFT);
#endif
}

/* ---- the lua_Alloc of a process state: counting its bytes, enforcing max_heap ---- */

/* Everything but the two common cases below: growing, limits, large blocks, no cache. */
static __attribute__((noinline)) void *proc_alloc_slow(mb_proc *p, void *ptr, size_t osize, size_t nsize) {
  size_t old = ptr ? osize : 0;
  int64_t heap = atomic_load_explicit(&p->heap_bytes, memory_order_relaxed);
  mb_node *n = p->node;
  if (nsize == 0) {
    if (!mb_arena_free_fast(p->acache, ptr, old)) mb_arena_realloc(&n->arena, p->acache, ptr, old, 0);
    atomic_store_explicit(&p->heap_bytes, heap - (int64_t)old, memory_order_relaxed);
    return NULL;
  }
  /* every refusal arms the hook again on the thread running now: the first one
   * may have been a coroutine that is gone by now (pcall around it) */
  if (nsize > old && (p->oom || (p->max_heap &&
      heap + atomic_load_explicit(&p->queue_bytes, memory_order_relaxed) + (int64_t)(nsize - old) >
      (int64_t)p->max_heap))) {
    p->oom = 1;
    mb_sched_arm_hook(p);
    return NULL;
  }
  void *np = ptr ? NULL : mb_arena_alloc_fast(p->acache, nsize);
  if (!np) np = mb_arena_realloc(&n->arena, p->acache, ptr, old, nsize);
  if (!np) {
    p->oom = 1;
    mb_sched_arm_hook(p);
    return NULL;
  }
  atomic_store_explicit(&p->heap_bytes, heap + (int64_t)nsize - (int64_t)old, memory_order_relaxed);
  return np;
}

/* The common cases inline, nothing saved on the stack: a small block freed, and a
 * new small block (no limit to check) from this thread's cache. */
void *mb_proc_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  mb_proc *p = ud;
  if (nsize == 0) {
    if (mb_arena_free_fast(p->acache, ptr, osize)) {
      atomic_store_explicit(&p->heap_bytes,
                            atomic_load_explicit(&p->heap_bytes, memory_order_relaxed) - (int64_t)osize,
                            memory_order_relaxed);
      return NULL;
    }
  } else if (!ptr && !p->max_heap && !p->oom) {
    void *np = mb_arena_alloc_fast(p->acache, nsize);
    if (np) {
      atomic_store_explicit(&p->heap_bytes,
                            atomic_load_explicit(&p->heap_bytes, memory_order_relaxed) + (int64_t)nsize,
                            memory_order_relaxed);
      return np;
    }
  }
  return proc_alloc_slow(p, ptr, osize, nsize);
}
