/* sigblock: the per-thread cache of small signal blocks (see sigblock.h). Blocks
 * are taken on the sending thread and given back on the receiving one: a thread
 * that only receives fills its cache to SIGBLOCK_KEEP and frees the rest, one that
 * only sends finds its cache empty and mallocs, so the cache never holds more than
 * SIGBLOCK_KEEP blocks a thread. A thread's blocks are freed when it ends (a key
 * destructor); the ASan build caches nothing, so every block stays visible to it. */
#include <pthread.h>
#include <stdlib.h>
#include "sigblock.h"

#define SIGBLOCK_KEEP 64

#if defined(__SANITIZE_ADDRESS__)
void *mb_sigblock_take(void) { return malloc(MB_SIGBLOCK); }
void mb_sigblock_give(void *p) { free(p); }
int mb_sigblock_kept(void) { return 0; }
#else
static __thread struct { void *head; int n, keyed; } cache;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static int key_ok;

static void drop_all(void *unused) {
  (void)unused;
  for (void *p = cache.head, *next; p; p = next) { next = *(void **)p; free(p); }
  cache.head = NULL;
  cache.n = 0;
}

static void key_make(void) { key_ok = pthread_key_create(&key, drop_all) == 0; }

void *mb_sigblock_take(void) {
  void *p = cache.head;
  if (!p) return malloc(MB_SIGBLOCK);
  cache.head = *(void **)p;
  cache.n--;
  return p;
}

int mb_sigblock_kept(void) { return cache.n; }

void mb_sigblock_give(void *p) {
  if (cache.n >= SIGBLOCK_KEEP) { free(p); return; }
  if (!cache.keyed) {   /* the first block this thread keeps: free them all when it ends */
    pthread_once(&key_once, key_make);
    if (!key_ok || pthread_setspecific(key, &cache) != 0) { free(p); return; }
    cache.keyed = 1;
  }
  *(void **)p = cache.head;
  cache.head = p;
  cache.n++;
}
#endif
