/* alloc: the allocator behind every process state. Lua tells the old size of a
 * block on each free and realloc, so small blocks need no header: 8-byte size
 * classes up to MB_ALLOC_SMALL, free lists per scheduler thread, carved from
 * chunks the node owns and releases when it is freed. Larger blocks use malloc.
 *
 * Ownership: chunks belong to the arena (one per node); a free list belongs to
 * one scheduler thread (or, for other threads, to the arena under its lock).
 * A block freed on another thread than the one that allocated it simply joins
 * that thread's list. Memory of small blocks is reused, not returned to the OS
 * until the node is freed. The ASan build uses malloc for every block. */
#ifndef MB_ALLOC_H
#define MB_ALLOC_H

#include <pthread.h>
#include <stddef.h>

#define MB_ALLOC_SMALL 2048
#define MB_ALLOC_GRAIN_SHIFT 3   /* 8-byte classes: Lua needs no more alignment */
#define MB_ALLOC_GRAIN (1u << MB_ALLOC_GRAIN_SHIFT)
#define MB_ALLOC_CLASSES (MB_ALLOC_SMALL / MB_ALLOC_GRAIN)

/* The class of a small block of n bytes: class k holds blocks of k * 8 bytes. */
static inline size_t mb_alloc_class(size_t n) { return (n + MB_ALLOC_GRAIN - 1) >> MB_ALLOC_GRAIN_SHIFT; }

typedef struct mb_acache {
  void *free[MB_ALLOC_CLASSES + 1];   /* by class: class k holds blocks of k*8 bytes */
  char *bump, *bump_end;              /* the unused rest of the newest chunk: small blocks
                                       * from its bottom up, line blocks from its top down */
  char *spare, *spare_end;            /* the rest of a chunk taken for a run, next after bump */
} mb_acache;

typedef struct mb_arena {
  pthread_mutex_t lock;
  struct mb_chunk *chunks;
  mb_acache shared;                   /* for threads that are not schedulers */
} mb_arena;

void mb_arena_init(mb_arena *a);
void mb_arena_free(mb_arena *a);      /* releases every chunk: no state may be alive */

/* lua_Alloc semantics (old = 0 when ptr is NULL). c: this thread's cache, or NULL
 * for the arena's shared one. */
void *mb_arena_realloc(mb_arena *a, mb_acache *c, void *ptr, size_t old, size_t nsize);
/* A new block of nsize bytes (a multiple of 64, at most MB_ALLOC_SMALL) that starts a
 * cache line, for a struct whose fields are grouped by line; freed as any block of
 * its size (mb_arena_realloc to 0). Never from a free list, which mixes alignments. */
void *mb_arena_alloc_lines(mb_arena *a, mb_acache *c, size_t nsize);
/* A run of nsize bytes (a multiple of 8, at most 64 KiB) carved from the current
 * chunk, for small blocks laid out in it that are freed one by one, each with its
 * own size (a copy of a state image). NULL in the ASan build (each block is a
 * malloc there), or with no memory. */
void *mb_arena_alloc_run(mb_arena *a, mb_acache *c, size_t nsize);

/* ASan must see every block; TSan runs the real allocator (it is on every path). */
#if defined(__SANITIZE_ADDRESS__)
#define MB_ALLOC_PLAIN 1
#endif

/* The commonest cases, inline for the allocator of every process: a small block
 * freed, and a small block taken from a free list or the current chunk. Each returns
 * 0 / NULL when it does not apply; then call mb_arena_realloc. */
static inline int mb_arena_free_fast(mb_acache *c, void *ptr, size_t old) {
#ifndef MB_ALLOC_PLAIN
  if (c && ptr && old && old <= MB_ALLOC_SMALL) {
    size_t k = mb_alloc_class(old);
    *(void **)ptr = c->free[k];
    c->free[k] = ptr;
    return 1;
  }
#else
  (void)c; (void)ptr; (void)old;
#endif
  return 0;
}

static inline void *mb_arena_alloc_fast(mb_acache *c, size_t nsize) {
#ifndef MB_ALLOC_PLAIN
  if (c && nsize <= MB_ALLOC_SMALL) {
    size_t k = mb_alloc_class(nsize);
    void *p = c->free[k];
    if (p) { c->free[k] = *(void **)p; return p; }
    /* an empty list (a growing heap, every fresh state): the newest chunk's rest */
    if ((size_t)(c->bump_end - c->bump) >= k << MB_ALLOC_GRAIN_SHIFT) { p = c->bump; c->bump += k << MB_ALLOC_GRAIN_SHIFT; }
    return p;
  }
#else
  (void)c; (void)nsize;
#endif
  return NULL;
}

/* Whether this thread's cache holds a freed small block of nsize's class. */
static inline int mb_arena_has_free(const mb_acache *c, size_t nsize) {
#ifndef MB_ALLOC_PLAIN
  return c && nsize && nsize <= MB_ALLOC_SMALL && c->free[mb_alloc_class(nsize)];
#else
  (void)c; (void)nsize;
  return 0;
#endif
}

/* The lua_Alloc of every process state (ud: its mb_proc): counts the state's bytes
 * in heap_bytes, refuses what would pass max_heap (heap plus queued messages), and
 * on any refusal marks the process out of memory and arms the hook, so it ends at
 * the next instruction where it can. Small blocks use the running scheduler's cache. */
void *mb_proc_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

#endif
