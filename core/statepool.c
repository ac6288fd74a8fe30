/* statepool: bare Lua states made ahead of time (see statepool.h). A pooled state
 * allocates through the node's arena, on the cache of the thread that made it, and
 * counts nothing; taking it hands it the process's allocator and its byte count
 * (Lua's own, which is exactly what mb_proc_lua_alloc would have counted). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "statepool.h"
#include "alloc.h"
#include "node.h"
#include "proc.h"
#include "scheduler.h"
#include "spawn.h"

#define POOL_MAX 16
#define POOL_LOW 8     /* at or below: an idle scheduler is asked to fill it */

struct mb_statepool {
  pthread_mutex_t lock;
  lua_State *states[POOL_MAX];
  _Atomic int n;
};

mb_statepool *mb_statepool_new(void) {
  mb_statepool *sp = calloc(1, sizeof *sp);
  if (sp) pthread_mutex_init(&sp->lock, NULL);
  return sp;
}

void mb_statepool_free(mb_statepool *sp) {
  if (!sp) return;
  for (int i = 0; i < atomic_load(&sp->n); i++) lua_close(sp->states[i]);
  pthread_mutex_destroy(&sp->lock);
  free(sp);
}

/* The allocator of a state in the pool: the node's arena, no counting, no limit. */
static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  mb_node *n = ud;
  return mb_arena_realloc(&n->arena, mb_sched_acache(n), ptr, ptr ? osize : 0, nsize);
}

/* Whether this thread should make states for the pool. On a node with a state image
 * a spawn copies it unless closed states' blocks wait on its thread's lists, so a
 * pooled state is made only from such blocks on this thread's (a copy made here
 * would gain nothing over one the spawner makes, and an idle scheduler that watched
 * a pool it never fills would never sleep). */
static int fill_here(mb_node *n) {
  return !n->stateimage || mb_spawn_closed_state_here(n, mb_sched_acache(n));
}

/* seq_cst, as the store in take: a scheduler counts itself sleeping, then looks
 * here; a taker lowers the count, then looks for sleepers (mb_sched_want_idle) */
int mb_statepool_low(mb_node *n) {
  return n->statepool && atomic_load(&n->statepool->n) <= POOL_LOW && fill_here(n);
}

lua_State *mb_statepool_take(mb_node *n, mb_proc *p) {
  mb_statepool *sp = n->statepool;
  if (!sp || atomic_load_explicit(&sp->n, memory_order_relaxed) == 0) return NULL;
  pthread_mutex_lock(&sp->lock);
  int k = atomic_load_explicit(&sp->n, memory_order_relaxed);
  lua_State *L = k ? sp->states[k - 1] : NULL;
  if (k) atomic_store(&sp->n, k - 1);
  pthread_mutex_unlock(&sp->lock);
  if (!L) return NULL;
  int64_t bytes = (int64_t)lua_gc(L, LUA_GCCOUNT) * 1024 + lua_gc(L, LUA_GCCOUNTB);
  lua_setallocf(L, mb_proc_lua_alloc, p);
  *(mb_proc **)lua_getextraspace(L) = p;
  atomic_store_explicit(&p->heap_bytes, bytes, memory_order_relaxed);
  /* once, as it crosses the mark: a scheduler going to sleep or spinning looks
   * at the count itself, so later takes need not lock the sleepers again */
  if (k - 1 == POOL_LOW) mb_sched_want_idle(n);
  return L;
}

int mb_statepool_fill(mb_node *n, int (*stop)(void *), void *arg) {
  mb_statepool *sp = n->statepool;
  if (!sp) return 0;
  while (atomic_load_explicit(&sp->n, memory_order_relaxed) < POOL_MAX && !stop(arg) && fill_here(n)) {
    lua_State *L = lua_newstate(pool_alloc, n);
    if (!L) return -1;
    mb_spawn_prepare(L);
    /* a memory error closes the state, not the node */
    if (mb_spawn_open_ahead(L, n, 0) != LUA_OK) { lua_close(L); return -1; }
    pthread_mutex_lock(&sp->lock);
    int k = atomic_load_explicit(&sp->n, memory_order_relaxed);
    if (k < POOL_MAX) {
      sp->states[k] = L;
      atomic_store_explicit(&sp->n, k + 1, memory_order_relaxed);
      L = NULL;
    }
    pthread_mutex_unlock(&sp->lock);
    if (L) { lua_close(L); break; }
  }
  return 0;
}
