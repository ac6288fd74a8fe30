/* sigblock: a per-thread cache of small signal blocks. Most signals are small (a
 * lone scalar, a short table) and each is malloc'd by its sender and freed by its
 * receiver; the cache keeps freed ones of one fixed size for the next send on the
 * freeing thread. A cached block is an ordinary malloc'd block of MB_SIGBLOCK
 * bytes, so free() is always a valid way to let one go. */
#ifndef MB_SIGBLOCK_H
#define MB_SIGBLOCK_H

#include <stddef.h>

/* The size of every cached block: a signal header (64 bytes) and up to 96 bytes
 * of payload. None of the sizes test_faults makes malloc refuse (a header and 64
 * bytes: a fresh encoding buffer). */
#define MB_SIGBLOCK 160

/* A block of MB_SIGBLOCK bytes (this thread's cache, else malloc), or NULL. */
void *mb_sigblock_take(void);
/* Keep a block from mb_sigblock_take for this thread's next take, or free it. */
void mb_sigblock_give(void *p);
/* How many blocks this thread keeps now (at most 64; always 0 in the ASan build). */
int mb_sigblock_kept(void);

#endif
