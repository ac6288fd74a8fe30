/* sigblock: the per-thread cache of small signal blocks (see sigblock.h). Blocks
 * are taken on the sending thread and given back on the receiving one: a thread
 * that only receives fills its cache to SIGBLOCK_KEEP a class and frees the rest,
 * one that only sends finds its cache empty and mallocs, so the cache never holds
 * more than SIGBLOCK_KEEP blocks of each class a thread. A thread's blocks are freed when it ends (a key
 * destructor); the ASan build caches nothing, so every block stays visible to it. */
#include <pthread.h>
#include <stdlib.h>
#include "sigblock.h"

#define SIGBLOCK_KEEP 64

#if defined(__SANITIZE_ADDRESS__)
void *mb_sigblock_take(int cls) { return malloc(mb_sigblock_size(cls)); }
void mb_sigblock_give(void *p, int cls) { (void)cls; free(p); }
int mb_sigblock_kept(int cls) { (void)cls; return 0; }
#else
/* per class (index 1 to MB_SIGBLOCK_CLASSES) a list and its length */
static __thread struct { void *head[MB_SIGBLOCK_CLASSES + 1]; int n[MB_SIGBLOCK_CLASSES + 1], keyed; } cache;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static int key_ok;

static void drop_all(void *unused) {
  (void)unused;
  for (int c = 1; c <= MB_SIGBLOCK_CLASSES; c++) {
    for (void *p = cache.head[c], *next; p; p = next) { next = *(void **)p; free(p); }
    cache.head[c] = NULL;
    cache.n[c] = 0;
  }
}

static void key_make(void) { key_ok = pthread_key_create(&key, drop_all) == 0; }

void *mb_sigblock_take(int cls) {
  void *p = cache.head[cls];
  if (!p) return malloc(mb_sigblock_size(cls));
  cache.head[cls] = *(void **)p;
  cache.n[cls]--;
  return p;
}

int mb_sigblock_kept(int cls) { return cache.n[cls]; }

void mb_sigblock_give(void *p, int cls) {
  if (cache.n[cls] >= SIGBLOCK_KEEP) { free(p); return; }
  if (!cache.keyed) {   /* the first block this thread keeps: free them all when it ends */
    pthread_once(&key_once, key_make);
    if (!key_ok || pthread_setspecific(key, &cache) != 0) { free(p); return; }
    cache.keyed = 1;
  }
  *(void **)p = cache.head[cls];
  cache.head[cls] = p;
  cache.n[cls]++;
}
#endif
