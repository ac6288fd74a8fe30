/* handle: the node's handle table and the per-process resource lists.
 *
 * Table: id = generation * MB_HANDLE_CAP + slot, as pids are (ptab.c). A closed
 * slot goes to the back of a FIFO and comes back with its last id plus the cap,
 * so printed ids are never reused and a stale id never matches a reused slot.
 * Slots live in chunks allocated on first use and kept until the table is freed,
 * so a lookup finds its entry without the table lock (an acquire load of the
 * chunk) and reads the fields under one of NSTRIPES short per-slot-group locks.
 * The table lock orders slot allocation and the FIFO; lock order: table, stripe.
 *
 * Resource lists: a doubly linked list on the process under its meta lock, so a
 * new owner's list can be written from the old owner's thread (set_owner). The
 * `resources_closed` flag, set under the same lock when the process ends, makes
 * a hand-off to an ending process fail instead of leaving a resource nobody
 * closes. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "handle.h"
#include "node.h"
#include "proc.h"

#define CHUNK    1024u
#define NCHUNKS  (MB_HANDLE_CAP / CHUNK)
#define NSTRIPES 64u

_Static_assert(MB_HANDLE_CAP % CHUNK == 0, "whole chunks");

typedef struct entry {
  uint64_t id;          /* [stripe] the open or last id of this slot; 0 = never used */
  mb_resource *res;     /* [stripe] */
  mb_pid owner;         /* [stripe] */
  uint8_t kind, open;   /* [stripe] */
  uint32_t next_free;   /* [table lock] the FIFO of closed slots */
} entry;

struct mb_htab {
  _Atomic(entry *) chunks[NCHUNKS];
  pthread_mutex_t lock;
  uint32_t fresh;                 /* slots [fresh, cap) never used; slot 0 never is */
  uint32_t fq_head, fq_tail, fq_len;
  pthread_mutex_t stripe[NSTRIPES];
};

/* ---- resources ---- */

int mb_proc_add_resource(mb_proc *p, mb_resource *r) {
  mb_lock_take(&p->meta);
  if (p->resources_closed) {
    mb_lock_give(&p->meta);
    return MB_ENOPROC;
  }
  r->prev = NULL;
  r->next = p->resources;
  if (r->next) r->next->prev = r;
  p->resources = r;
  r->proc = p;
  mb_lock_give(&p->meta);
  return 0;
}

void mb_proc_remove_resource(mb_proc *p, mb_resource *r) {
  mb_lock_take(&p->meta);
  if (r->proc == p) {
    if (r->prev) r->prev->next = r->next;
    else p->resources = r->next;
    if (r->next) r->next->prev = r->prev;
    r->next = r->prev = NULL;
    r->proc = NULL;
  }
  mb_lock_give(&p->meta);
}

void mb_resources_close_all(mb_proc *p) {
  mb_lock_take(&p->meta);
  mb_resource *r = p->resources;
  p->resources = NULL;
  p->resources_closed = 1;
  mb_lock_give(&p->meta);
  /* nothing else reaches these now: off the list, and the list refuses adds */
  while (r) {
    mb_resource *next = r->next;
    r->next = r->prev = NULL;
    r->proc = NULL;
    r->close(r);   /* may free r */
    r = next;
  }
}

/* ---- the table ---- */

mb_htab *mb_htab_new(void) {
  mb_htab *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->fresh = 1;
  pthread_mutex_init(&t->lock, NULL);
  for (unsigned i = 0; i < NSTRIPES; i++) pthread_mutex_init(&t->stripe[i], NULL);
  return t;
}

void mb_htab_free(mb_htab *t) {
  if (!t) return;
  for (unsigned i = 0; i < NCHUNKS; i++) free(atomic_load_explicit(&t->chunks[i], memory_order_relaxed));
  pthread_mutex_destroy(&t->lock);
  for (unsigned i = 0; i < NSTRIPES; i++) pthread_mutex_destroy(&t->stripe[i]);
  free(t);
}

/* The slot's entry, or NULL if its chunk was never made. */
static entry *slot_entry(mb_htab *t, uint32_t slot) {
  entry *c = atomic_load_explicit(&t->chunks[slot / CHUNK], memory_order_acquire);
  return c ? &c[slot % CHUNK] : NULL;
}

static pthread_mutex_t *stripe_of(mb_htab *t, uint32_t slot) { return &t->stripe[slot % NSTRIPES]; }

/* A slot to use (under the table lock): the oldest closed one, else a fresh one. */
static int take_slot(mb_htab *t, uint32_t *out) {
  if (t->fq_len) {
    *out = t->fq_head;
    t->fq_head = slot_entry(t, *out)->next_free;
    t->fq_len--;
    return 0;
  }
  if (t->fresh >= MB_HANDLE_CAP) return MB_ELIMIT;
  uint32_t slot = t->fresh, ci = slot / CHUNK;
  if (!atomic_load_explicit(&t->chunks[ci], memory_order_relaxed)) {
    entry *c = calloc(CHUNK, sizeof *c);
    if (!c) return MB_ENOMEM;
    atomic_store_explicit(&t->chunks[ci], c, memory_order_release);
  }
  t->fresh++;
  *out = slot;
  return 0;
}

int mb_handle_new(mb_node *n, int kind, mb_resource *r, mb_pid owner, uint64_t *id) {
  mb_htab *t = n->handles;
  if (kind <= 0 || kind >= MB_HANDLE_KINDS) return MB_EINVAL;
  pthread_mutex_lock(&t->lock);
  uint32_t slot;
  int rc = take_slot(t, &slot);
  if (rc == 0) {
    entry *e = slot_entry(t, slot);
    pthread_mutex_lock(stripe_of(t, slot));
    e->id = e->id ? e->id + MB_HANDLE_CAP : slot;
    e->res = r;
    e->owner = owner;
    e->kind = (uint8_t)kind;
    e->open = 1;
    *id = e->id;
    pthread_mutex_unlock(stripe_of(t, slot));
  }
  pthread_mutex_unlock(&t->lock);
  return rc;
}

/* The entry id would live in (open or not), or NULL. */
static entry *lookup(mb_htab *t, uint64_t id, uint32_t *slot) {
  *slot = (uint32_t)(id % MB_HANDLE_CAP);
  return id ? slot_entry(t, *slot) : NULL;
}

static int get(mb_node *n, uint64_t id, mb_handle_info *out, int hold) {
  mb_htab *t = n->handles;
  uint32_t slot;
  entry *e = lookup(t, id, &slot);
  if (!e) return MB_ENOTFOUND;
  pthread_mutex_lock(stripe_of(t, slot));
  int ok = e->open && e->id == id;
  if (ok) {
    out->id = id;
    out->kind = e->kind;
    out->owner = e->owner;
    out->res = e->res;
    if (hold && e->res && e->res->hold) e->res->hold(e->res);
  }
  pthread_mutex_unlock(stripe_of(t, slot));
  return ok ? 0 : MB_ENOTFOUND;
}

int mb_handle_get(mb_node *n, uint64_t id, mb_handle_info *out) { return get(n, id, out, 0); }
int mb_handle_hold(mb_node *n, uint64_t id, mb_handle_info *out) { return get(n, id, out, 1); }

int mb_handle_set_owner(mb_node *n, uint64_t id, mb_proc *self, mb_pid to) {
  mb_htab *t = n->handles;
  mb_pid me = atomic_load(&self->pid);
  mb_handle_info h;
  if (mb_handle_get(n, id, &h) != 0) return MB_ENOTFOUND;
  if (h.owner != me) return MB_EINVAL;
  if (to == me) return 0;
  mb_proc *tp = mb_proc_get(n, to);
  if (!tp) return MB_ENOPROC;
  /* Only self (this thread) changes this entry's owner or closes it, so h is
   * still current. The list moves first: from the moment r is on tp's list, tp's
   * end closes it (and may free it: r is not touched after the add). */
  mb_resource *r = h.res;
  int listed = 0;
  if (r) {
    mb_lock_take(&self->meta);
    listed = r->proc == self;
    mb_lock_give(&self->meta);
  }
  if (listed) {
    mb_proc_remove_resource(self, r);
    if (mb_proc_add_resource(tp, r) != 0) {   /* tp is ending: self keeps it */
      mb_proc_add_resource(self, r);
      mb_proc_unref(tp);
      return MB_ENOPROC;
    }
  }
  mb_proc_unref(tp);
  uint32_t slot;
  entry *e = lookup(t, id, &slot);
  pthread_mutex_lock(stripe_of(t, slot));
  if (e->open && e->id == id) e->owner = to;   /* tp may have ended and closed it already */
  pthread_mutex_unlock(stripe_of(t, slot));
  return 0;
}

int mb_handle_close(mb_node *n, uint64_t id) {
  mb_htab *t = n->handles;
  uint32_t slot;
  entry *e = lookup(t, id, &slot);
  if (!e) return 0;
  pthread_mutex_lock(stripe_of(t, slot));
  int was = e->open && e->id == id;
  if (was) {
    e->open = 0;
    e->res = NULL;
    e->owner = 0;
  }
  pthread_mutex_unlock(stripe_of(t, slot));
  if (!was) return 0;
  /* to the back of the FIFO: reused (under a new id) after the older ones */
  pthread_mutex_lock(&t->lock);
  if (t->fq_len) slot_entry(t, t->fq_tail)->next_free = slot;
  else t->fq_head = slot;
  t->fq_tail = slot;
  t->fq_len++;
  pthread_mutex_unlock(&t->lock);
  return 1;
}
