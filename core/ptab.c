/* ptab: pid = generation * cap + slot. A slot is reused only after every fresh slot
 * was used once, and its next pid is its last one plus cap, so printed IDs are
 * never reused. Lookups are lock-free: an atomic slot pointer, then the caller takes
 * a reference and checks the pid (see mb_proc_get). Insert/remove take a mutex. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "ptab.h"
#include "node.h"

struct mb_ptab {
  uint32_t cap;
  _Atomic(mb_proc *) *slots;
  uint64_t *last_pid;       /* per slot, under lock */
  pthread_mutex_t lock;
  uint32_t fresh;           /* slots [fresh, cap) never used */
  uint32_t *freeq;          /* FIFO of released slots */
  uint32_t fq_head, fq_len;
  pthread_mutex_t pool_lock;
  mb_proc *pool;
};

mb_ptab *mb_ptab_new(uint32_t cap) {
  mb_ptab *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->cap = cap;
  t->slots = calloc(cap, sizeof *t->slots);
  t->last_pid = calloc(cap, sizeof *t->last_pid);
  t->freeq = malloc(sizeof *t->freeq * cap);
  if (!t->slots || !t->last_pid || !t->freeq) { mb_ptab_free(t, NULL); return NULL; }
  t->fresh = 1; /* slot 0 is never used: pid 0 means "no process" */
  pthread_mutex_init(&t->lock, NULL);
  pthread_mutex_init(&t->pool_lock, NULL);
  return t;
}

void mb_ptab_free(mb_ptab *t, mb_node *n) {
  if (!t) return;
  while (t->pool) {
    mb_proc *p = t->pool;
    t->pool = p->rq_next;
    mb_proc_destroy(n, p);
  }
  free(t->slots);
  free(t->last_pid);
  free(t->freeq);
  free(t);
}

int mb_ptab_insert(mb_ptab *t, mb_proc *p) {
  pthread_mutex_lock(&t->lock);
  uint32_t slot;
  if (t->fresh < t->cap) slot = t->fresh++;
  else if (t->fq_len) {
    slot = t->freeq[t->fq_head];
    t->fq_head = (t->fq_head + 1) % t->cap;
    t->fq_len--;
  } else {
    pthread_mutex_unlock(&t->lock);
    return MB_ELIMIT;
  }
  uint64_t pid = t->last_pid[slot] ? t->last_pid[slot] + t->cap : slot;
  t->last_pid[slot] = pid;
  atomic_store_explicit(&p->pid, pid, memory_order_relaxed);
  atomic_store_explicit(&t->slots[slot], p, memory_order_release);
  pthread_mutex_unlock(&t->lock);
  return 0;
}

void mb_ptab_remove(mb_ptab *t, mb_proc *p) {
  uint64_t pid = atomic_load_explicit(&p->pid, memory_order_relaxed);
  uint32_t slot = (uint32_t)(pid % t->cap);
  pthread_mutex_lock(&t->lock);
  if (atomic_load_explicit(&t->slots[slot], memory_order_relaxed) == p) {
    atomic_store_explicit(&t->slots[slot], NULL, memory_order_release);
    t->freeq[(t->fq_head + t->fq_len) % t->cap] = slot;
    t->fq_len++;
  }
  pthread_mutex_unlock(&t->lock);
}

mb_proc *mb_ptab_peek(mb_ptab *t, mb_pid pid) {
  if (pid == 0) return NULL;
  return atomic_load_explicit(&t->slots[pid % t->cap], memory_order_acquire);
}

size_t mb_ptab_list(mb_ptab *t, mb_pid *out, size_t max) {
  size_t n = 0;
  pthread_mutex_lock(&t->lock);
  for (uint32_t i = 1; i < t->fresh; i++) {
    mb_proc *p = atomic_load_explicit(&t->slots[i], memory_order_relaxed);
    if (!p || !mb_kind_of(p)->counted) continue;
    if (n < max) out[n] = t->last_pid[i];
    n++;
  }
  pthread_mutex_unlock(&t->lock);
  return n;
}

mb_proc *mb_ptab_pool_get(mb_ptab *t) {
  pthread_mutex_lock(&t->pool_lock);
  mb_proc *p = t->pool;
  if (p) t->pool = p->rq_next;
  pthread_mutex_unlock(&t->pool_lock);
  return p;
}

void mb_ptab_pool_put(mb_ptab *t, mb_proc *p) {
  pthread_mutex_lock(&t->pool_lock);
  p->rq_next = t->pool;
  t->pool = p;
  pthread_mutex_unlock(&t->pool_lock);
}

size_t mb_ptab_snapshot(mb_ptab *t, mb_pid *(*room)(void *ud, size_t cap), void *ud, mb_pid **out) {
  size_t cap = 1024;
  for (;;) {
    mb_pid *v = room(ud, cap);
    if (!v) { *out = NULL; return 0; }
    size_t k = mb_ptab_list(t, v, cap);
    if (k <= cap) { *out = v; return k; }
    cap = k + 1024;
  }
}
