/* sigblock: a per-thread cache of small signal blocks. Most signals are small (a
 * lone scalar, a short table) and each is malloc'd by its sender and freed by its
 * receiver; the cache keeps freed ones of one fixed size for the next send on the
 * freeing thread. A cached block is an ordinary malloc'd block of its class's
 * size, so free() is always a valid way to let one go. */
#ifndef MB_SIGBLOCK_H
#define MB_SIGBLOCK_H

#include <stddef.h>

/* The three sizes of cached blocks: a signal header (64 bytes) and up to 8 bytes of
 * payload (an integer, a short word: malloc's chunk for it is 80 bytes), up to 40
 * (a short string or tuple: a 112-byte chunk), or up to 96 (176). None of the sizes
 * test_faults makes malloc refuse (a header and 64 bytes: a fresh encoding buffer). */
#define MB_SIGBLOCK_TINY 72
#define MB_SIGBLOCK_SMALL 104
#define MB_SIGBLOCK 160
#define MB_SIGBLOCK_CLASSES 3

/* The class of a block for n bytes: 1 (tiny), 2 (small), 3 (large), 0 (none: malloc it). */
static inline int mb_sigblock_class(size_t n) {
  return n <= MB_SIGBLOCK_TINY ? 1 : n <= MB_SIGBLOCK_SMALL ? 2 : n <= MB_SIGBLOCK ? 3 : 0;
}
static inline size_t mb_sigblock_size(int cls) {
  return cls == 1 ? MB_SIGBLOCK_TINY : cls == 2 ? MB_SIGBLOCK_SMALL : MB_SIGBLOCK;
}

/* A block of class cls (1 to 3): this thread's cache, else malloc; or NULL. */
void *mb_sigblock_take(int cls);
/* Keep a block from mb_sigblock_take(cls) for this thread's next take, or free it. */
void mb_sigblock_give(void *p, int cls);
/* How many blocks of class cls this thread keeps now (at most 64; always 0 in the ASan build). */
int mb_sigblock_kept(int cls);

#endif
