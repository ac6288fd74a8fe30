/* timer: a binary min-heap of deadlines per scheduler, and the node-wide map from
 * timer ref to timer used by cancel_timer, with an index by target pid used when
 * a process ends. */
#include <pthread.h>
#include <stdlib.h>
#include "timer.h"
#include "registry.h"

static void heap_set(mb_heap *h, uint32_t i, mb_timer *t) { h->v[i] = t; t->idx = i; }

static void sift_up(mb_heap *h, uint32_t i) {
  mb_timer *t = h->v[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (h->v[parent]->deadline <= t->deadline) break;
    heap_set(h, i, h->v[parent]);
    i = parent;
  }
  heap_set(h, i, t);
}

static void sift_down(mb_heap *h, uint32_t i) {
  mb_timer *t = h->v[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && h->v[c + 1]->deadline < h->v[c]->deadline) c++;
    if (t->deadline <= h->v[c]->deadline) break;
    heap_set(h, i, h->v[c]);
    i = c;
  }
  heap_set(h, i, t);
}

int mb_heap_push(mb_heap *h, mb_timer *t) {
  if (h->n == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 64;
    mb_timer **v = realloc(h->v, sizeof *v * cap);
    if (!v) return -1;
    h->v = v;
    h->cap = cap;
  }
  heap_set(h, h->n++, t);
  sift_up(h, h->n - 1);
  return 0;
}

mb_timer *mb_heap_pop(mb_heap *h) {
  if (!h->n) return NULL;
  mb_timer *top = h->v[0];
  h->n--;
  if (h->n) { heap_set(h, 0, h->v[h->n]); sift_down(h, 0); }
  return top;
}

void mb_heap_remove(mb_heap *h, mb_timer *t) {
  uint32_t i = t->idx;
  if (i >= h->n || h->v[i] != t) return;
  h->n--;
  if (i == h->n) return;
  heap_set(h, i, h->v[h->n]);
  sift_down(h, i);
  sift_up(h, h->v[i]->idx);
}

void mb_timer_free(mb_timer *t) {
  if (!t) return;
  if (t->msg) mb_sig_free(t->msg);
  free(t->name);
  free(t);
}

void mb_heap_free(mb_heap *h) {
  for (uint32_t i = 0; i < h->n; i++) mb_timer_free(h->v[i]);
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
}

#define NBUCKETS 4096

struct mb_timers {
  pthread_mutex_t lock;
  _Atomic int64_t live;
  mb_timer *b[NBUCKETS];    /* by ref */
  mb_timer *to[NBUCKETS];   /* aimed at a pid, by that pid (doubly linked) */
};

mb_timers *mb_timers_new(void) {
  mb_timers *m = calloc(1, sizeof *m);
  if (m) pthread_mutex_init(&m->lock, NULL);
  return m;
}

void mb_timers_free(mb_timers *m) {
  if (!m) return;
  pthread_mutex_destroy(&m->lock);
  free(m);
}

static int aimed_at_pid(const mb_timer *t) { return t->pid && !t->name; }

void mb_timers_add(mb_timers *m, mb_timer *t) {
  atomic_fetch_add_explicit(&m->live, 1, memory_order_relaxed);
  pthread_mutex_lock(&m->lock);
  mb_timer **b = &m->b[t->ref % NBUCKETS];
  t->map_next = *b;
  *b = t;
  if (aimed_at_pid(t)) {
    mb_timer **h = &m->to[t->pid % NBUCKETS];
    t->to_prev = NULL;
    t->to_next = *h;
    if (*h) (*h)->to_prev = t;
    *h = t;
  }
  pthread_mutex_unlock(&m->lock);
}

/* [lock] t leaves both indexes. */
static void unmap(mb_timers *m, mb_timer *t) {
  for (mb_timer **pp = &m->b[t->ref % NBUCKETS]; *pp; pp = &(*pp)->map_next)
    if (*pp == t) { *pp = t->map_next; break; }
  if (!aimed_at_pid(t)) return;
  if (t->to_prev) t->to_prev->to_next = t->to_next;
  else m->to[t->pid % NBUCKETS] = t->to_next;
  if (t->to_next) t->to_next->to_prev = t->to_prev;
  t->to_next = t->to_prev = NULL;
}

/* [lock] 1 if this cancel wins t: then it is out of the map, its message freed. */
static int cancel_locked(mb_timers *m, mb_timer *t) {
  int pending = MB_T_PENDING;
  if (!atomic_compare_exchange_strong(&t->state, &pending, MB_T_CANCELLED)) return 0;
  unmap(m, t);
  if (t->msg) { mb_sig_free(t->msg); t->msg = NULL; }
  return 1;
}

mb_timer *mb_timers_cancel(mb_timers *m, uint64_t ref) {
  pthread_mutex_lock(&m->lock);
  mb_timer *t = m->b[ref % NBUCKETS];
  while (t && t->ref != ref) t = t->map_next;
  if (t && !cancel_locked(m, t)) t = NULL;
  pthread_mutex_unlock(&m->lock);
  return t;
}

mb_timer *mb_timers_cancel_to(mb_timers *m, mb_pid pid) {
  mb_timer *won = NULL;
  pthread_mutex_lock(&m->lock);
  for (mb_timer *t = m->to[pid % NBUCKETS], *next; t; t = next) {
    next = t->to_next;
    if (t->pid != pid || !cancel_locked(m, t)) continue;
    t->map_next = won;
    won = t;
  }
  pthread_mutex_unlock(&m->lock);
  return won;
}

int mb_timers_claim(mb_timers *m, mb_timer *t) {
  int pending = MB_T_PENDING;
  if (!atomic_compare_exchange_strong(&t->state, &pending, MB_T_FIRED)) return 0;
  if (t->ref) {
    pthread_mutex_lock(&m->lock);
    unmap(m, t);
    pthread_mutex_unlock(&m->lock);
  }
  return 1;
}

void mb_timers_release(mb_timers *m, mb_timer *t) {
  if (t->ref) atomic_fetch_sub_explicit(&m->live, 1, memory_order_relaxed);
  mb_timer_free(t);
}

int64_t mb_timers_live(mb_timers *m) { return atomic_load_explicit(&m->live, memory_order_relaxed); }

int mb_timer_fire(mb_node *n, mb_timer *t) {
  if (!mb_timers_claim(n->timers, t)) return 0;
  mb_pid to = t->name ? mb_registry_whereis(n->reg, t->name, t->name_len) : t->pid;
  if (to) mb_send_sig(n, to, t->msg);
  else mb_sig_free(t->msg);
  t->msg = NULL;
  return 1;
}
