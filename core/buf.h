/* buf: a growable byte buffer with room reserved in front (a message header),
 * and a per-thread scratch buffer to encode into without growing (see buf.c). */
#ifndef MB_BUF_H
#define MB_BUF_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer. `data` is malloc'd and owned by whoever holds the buffer;
 * `start` bytes at the front are reserved for the caller (a message header), the
 * encoding follows them. `limit` bounds len - start (0 = no bound). */
typedef struct mb_buf {
  char *data;
  size_t len, cap;
  size_t start;
  size_t limit;
  int scratch;   /* data is this thread's scratch buffer, lent until detach or free */
  int block;     /* data is a block of sigblock.h's cache, of this class (detach made it so) */
  /* Optional: the encoder calls on_ref(on_ref_ud, ref) for each ref it writes (a
   * server handing a call's `from` on, core/call.c). Zeroed by the inits. */
  void (*on_ref)(void *ud, uint64_t ref);
  void *on_ref_ud;
} mb_buf;

/* Initialise with `reserve` header bytes (zeroed) in front; returns 0 or -1 (no memory). */
int mb_buf_init(mb_buf *b, size_t reserve, size_t limit);
/* The same, writing into this thread's scratch buffer when it is free (no
 * allocation and no growth for most messages); mb_buf_detach then moves the
 * bytes into a block of their own. */
int mb_buf_init_scratch(mb_buf *b, size_t reserve, size_t limit);
/* Give b a malloc'd block of exactly its length, returning a lent scratch buffer.
 * 0, or -1 (no memory; b unchanged). A no-op for a buffer that owns its data. */
int mb_buf_detach(mb_buf *b);
void mb_buf_free(mb_buf *b);

#endif
