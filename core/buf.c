/* buf: the growable byte buffer every encoding is written into, and the
 * per-thread scratch buffer that send encodes into before copying the exact
 * length out. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"
#include "sigblock.h"

int mb_buf_init(mb_buf *b, size_t reserve, size_t limit) {
  size_t cap = reserve + 64;
  memset(b, 0, sizeof *b);
  if (cap < reserve || !(b->data = malloc(cap))) return -1;
  memset(b->data, 0, reserve);
  b->len = b->start = reserve;
  b->cap = cap;
  b->limit = limit;
  return 0;
}

/* One scratch buffer per thread; one bigger than SCRATCH_KEEP is let go after use.
 * A thread-specific key with `free` as destructor frees it when the thread ends
 * (schedulers, and any embedder's thread that sends); without the key, no thread
 * gets a scratch buffer. */
#define SCRATCH_INIT 1024
#define SCRATCH_KEEP (64 * 1024)
static __thread struct { char *data; size_t cap; int busy; } scratch;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;
static int scratch_keyed;

static void scratch_key_make(void) { scratch_keyed = pthread_key_create(&scratch_key, free) == 0; }

static void scratch_set(char *data, size_t cap) {
  if (data != scratch.data) pthread_setspecific(scratch_key, data);
  scratch.data = data;
  scratch.cap = cap;
}

int mb_buf_init_scratch(mb_buf *b, size_t reserve, size_t limit) {
  if (scratch.busy || reserve > SCRATCH_INIT / 2) return mb_buf_init(b, reserve, limit);
  if (!scratch.data) {   /* this thread's first: the key is made by then */
    pthread_once(&scratch_once, scratch_key_make);
    if (!scratch_keyed) return mb_buf_init(b, reserve, limit);
    char *d = malloc(SCRATCH_INIT);
    if (!d) return mb_buf_init(b, reserve, limit);
    scratch_set(d, SCRATCH_INIT);
  }
  memset(b, 0, sizeof *b);
  b->data = scratch.data;
  memset(b->data, 0, reserve);
  b->len = b->start = reserve;
  b->cap = scratch.cap;
  b->limit = limit;
  b->scratch = 1;
  scratch.busy = 1;
  return 0;
}

/* Take back the scratch buffer from b (it may have grown and moved). */
static void scratch_return(mb_buf *b) {
  if (b->cap > SCRATCH_KEEP) {
    free(b->data);
    pthread_setspecific(scratch_key, NULL);
    scratch.data = NULL;
    scratch.cap = 0;
  } else {
    scratch_set(b->data, b->cap);
  }
  scratch.busy = 0;
}

int mb_buf_detach(mb_buf *b) {
  if (!b->scratch) return 0;
  int block = mb_sigblock_class(b->len);   /* a small signal: a cached block */
  char *d = block ? mb_sigblock_take(block) : malloc(b->len ? b->len : 1);
  if (!d) return -1;
  memcpy(d, b->data, b->len);
  scratch_return(b);
  b->data = d;
  b->cap = block ? mb_sigblock_size(block) : b->len ? b->len : 1;
  b->scratch = 0;
  b->block = block;
  return 0;
}

void mb_buf_free(mb_buf *b) {
  if (b->scratch) scratch_return(b);
  else free(b->data);
  memset(b, 0, sizeof *b);
}
