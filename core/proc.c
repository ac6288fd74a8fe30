/* proc: process lifecycle and the signal protocol between processes.
 *
 * Every interaction between two processes is a signal pushed on the target's
 * mailbox, so signals from one sender arrive in the order sent. The target acts
 * on control signals when it drains its mailbox (mb_proc_drain), on its own
 * thread: links, monitors and exit signals change only the owner's sets. A signal
 * to a process that is gone is answered by the protocol: a LINK with an exit
 * "noproc", a MONITOR with a DOWN "noproc". */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lauxlib.h>
#include "sigblock.h"
#include "spawn.h"
#include "proc.h"
#include "node.h"
#include "ptab.h"
#include "registry.h"
#include "scheduler.h"
#include "code.h"
#include "log.h"
#include "native.h"
#include "testhook.h"
#include "handle.h"

/* A test's pause at the points of past races (testhook.h); NULL otherwise. */
_Atomic(mb_test_pause_fn) mb_test_pause;

/* ---- kinds ---- */

const mb_kind mb_kinds[] = {
  [MB_PK_LUA] = { .counted = 1 },
  [MB_PK_NATIVE] = { .counted = 1, .run = mb_native_run, .reap = mb_native_reap },
  [MB_PK_EXTERNAL] = { .traps_all = 1, .waits_off_scheduler = 1 },   /* the host's own pid */
};

/* ---- signals ---- */

static void sig_init(mb_sig *s, int kind, mb_pid from, uint64_t ref) {
  memset(s, 0, MB_SIG_HDR);
  s->kind = (uint8_t)kind;
  s->from = from;
  s->ref = ref;
  s->lref = LUA_NOREF;
  atomic_store_explicit(&s->refs, 1, memory_order_relaxed);
}

mb_sig *mb_sig_new(int kind, mb_pid from, uint64_t ref) {
  mb_sig *s = malloc(MB_SIG_HDR);
  if (!s) return NULL;
  sig_init(s, kind, from, ref);
  return s;
}

mb_sig *mb_sig_raw(int kind, mb_pid from, uint64_t ref, const void *p, size_t len) {
  int block = mb_sigblock_class(MB_SIG_HDR + len);
  mb_sig *s = block ? mb_sigblock_take(block) : malloc(MB_SIG_HDR + len);
  if (!s) return NULL;
  sig_init(s, kind, from, ref);
  s->block = (uint8_t)block;
  memcpy(s->data, p, len);
  s->len = len;
  return s;
}

mb_sig *mb_sig_from_buf(mb_buf *b, int kind, mb_pid from, uint64_t ref) {
  mb_sig *s = (mb_sig *)b->data;
  sig_init(s, kind, from, ref);
  s->block = (uint8_t)b->block;
  b->block = 0;
  s->len = b->len - MB_SIG_HDR;
  b->data = NULL;
  b->len = b->cap = 0;
  return s;
}

mb_sig *mb_sig_string(int kind, mb_pid from, uint64_t ref, const char *str) {
  mb_buf b;
  if (mb_buf_init(&b, MB_SIG_HDR, 0) != 0) return NULL;
  if (mb_encode_string(&b, str, strlen(str)) != 0) { mb_buf_free(&b); return NULL; }
  return mb_sig_from_buf(&b, kind, from, ref);
}

mb_sig *mb_sig_copy(const mb_sig *src, int kind, mb_pid from, uint64_t ref) {
  mb_sig *s = malloc(MB_SIG_HDR + src->len);
  if (!s) return NULL;
  sig_init(s, kind, from, ref);
  s->len = src->len;
  memcpy(s->data, mb_sig_payload(src), src->len);
  return s;
}

mb_sig *mb_sig_share(mb_sig *src, int kind, mb_pid from, uint64_t ref) {
  mb_sig *root = src->share ? src->share : src;
  mb_sig *s = malloc(MB_SIG_HDR);
  if (!s) return NULL;
  sig_init(s, kind, from, ref);
  s->share = root;
  s->len = root->len;
  if (!(root->flags & MB_SIGF_STATIC)) atomic_fetch_add_explicit(&root->refs, 1, memory_order_relaxed);
  return s;
}

static void sig_release(mb_sig *s) {
  if (s->flags & MB_SIGF_STATIC) return;
  /* the sole holder (every message) frees without an atomic write */
  if (atomic_load_explicit(&s->refs, memory_order_acquire) != 1 &&
      atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
    return;
  mb_sig *root = s->share;
  if (s->block) mb_sigblock_give(s, s->block);
  else free(s);
  if (root) sig_release(root);
}

void mb_sig_free(mb_sig *s) { sig_release(s); }

/* The constant reasons: built once per program, flagged static (never freed). */
static const char *const static_names[] = { "normal", "killed", "out of memory", "error", "noproc", NULL };
static mb_sig *statics[sizeof static_names / sizeof static_names[0]];
static pthread_once_t statics_once = PTHREAD_ONCE_INIT;
static int statics_ok;

static void statics_make(void) {
  for (int i = 0; static_names[i]; i++) {
    statics[i] = mb_sig_string(MB_SIG_EXIT, 0, 0, static_names[i]);
    if (!statics[i]) return;
    statics[i]->flags = MB_SIGF_STATIC;
  }
  statics_ok = 1;
}

int mb_sig_statics_init(void) {
  pthread_once(&statics_once, statics_make);
  return statics_ok ? 0 : -1;
}

mb_sig *mb_sig_static(const char *reason) {
  for (int i = 0; static_names[i]; i++)
    if (strcmp(static_names[i], reason) == 0) return statics[i];
  return NULL;
}

/* A header for a signal the protocol must not lose (an EXIT or DOWN at a process's
 * end). Headers are small; if even one cannot be had, try again for a while. */
static mb_sig *share_or_wait(mb_sig *src, int kind, mb_pid from, uint64_t ref) {
  for (int i = 0; i < 1000; i++) {
    mb_sig *s = mb_sig_share(src, kind, from, ref);
    if (s) return s;
    struct timespec ts = { 0, 1000000 };
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static int counts_as_message(int kind) {
  return kind == MB_SIG_MSG || kind == MB_SIG_DOWN || kind == MB_SIG_EXIT ||
         kind == MB_SIG_CALL || kind == MB_SIG_CAST;
}

/* ---- lookup and references ---- */

mb_proc *mb_proc_get(mb_node *n, mb_pid pid) {
  mb_proc *p = mb_ptab_peek(n->ptab, pid);
  if (!p) return NULL;
  int r = atomic_load(&p->refs);
  do {
    if (r <= 0) return NULL;
  } while (!atomic_compare_exchange_weak(&p->refs, &r, r + 1));
  if (atomic_load(&p->pid) != pid || atomic_load(&p->state) == MB_PS_DEAD) {
    mb_proc_unref(p);
    return NULL;
  }
  return p;
}

int mb_proc_alive(mb_proc *p) {
  return atomic_load(&p->state) != MB_PS_DEAD && !atomic_load(&p->dying);
}

static void bounce(mb_node *n, mb_pid dead, mb_sig *s, mb_sig *reason);

static void proc_recycle(mb_proc *p) {
  mb_node *n = p->node;
  mb_pid pid = atomic_load(&p->pid);
  mb_qnode *q;
  /* signals pushed by those who found it alive just before its end */
  while ((q = mb_mpsc_pop(&p->mq)) != NULL) bounce(n, pid, (mb_sig *)q, p->exit_reason);
  if (p->exit_reason) mb_sig_free(p->exit_reason);
  mb_pidset_free(&p->links);
  mb_monset_free(&p->monitors);
  mb_monset_free(&p->monitored_by);
  mb_monset_free(&p->calls);
  free(p->name);
  free(p->module);
  free(p->fn_code);
  if (p->args) mb_sig_free(p->args);
  if (p->doom) mb_sig_free(p->doom);
  if (p->code) mb_code_unref(p->code);
  if (p->code_next) mb_code_unref(p->code_next);
  for (mb_sig *m = p->taken, *next; m; m = next) { next = m->next; mb_sig_free(m); }
  /* what is never cleared (ext) stays last: a field added after it would survive
   * recycling. The meta lock is cleared with the rest: nobody holds it now, as
   * nobody holds a reference. */
  _Static_assert(offsetof(mb_proc, ext) + sizeof(struct mb_extwait *) == sizeof(mb_proc),
                 "mb_proc: the never-cleared field must come last");
  memset((char *)p + offsetof(mb_proc, state), 0, offsetof(mb_proc, ext) - offsetof(mb_proc, state));
  atomic_store(&p->pid, 0);
  mb_ptab_pool_put(n->ptab, p);
}

void mb_proc_discard(mb_proc *p) { proc_recycle(p); }

void mb_proc_unref(mb_proc *p) {
  if (atomic_fetch_sub(&p->refs, 1) == 1) proc_recycle(p);
}

/* A struct comes from the node's arena (no malloc header: 448 bytes take 448), at a
 * cache line's start (its hot fields are grouped by line), and goes back to it only
 * when the node is freed. Its lock is a word (zero is free); the external kind's wait
 * is made once, by ext_make, and lives as long as it. */
static mb_proc *proc_construct(mb_node *n) {
  _Static_assert(sizeof(mb_proc) % 64 == 0 && sizeof(mb_proc) <= MB_ALLOC_SMALL,
                 "mb_proc: whole cache lines, from the arena");
  mb_proc *p = mb_arena_alloc_lines(&n->arena, mb_sched_acache(n), sizeof *p);
  if (!p) return NULL;
  memset(p, 0, sizeof *p);
  return p;
}

void mb_proc_destroy(mb_node *n, mb_proc *p) {
  if (p->ext) {
    pthread_mutex_destroy(&p->ext->lock);
    pthread_cond_destroy(&p->ext->cond);
    free(p->ext);
  }
  mb_arena_realloc(&n->arena, NULL, p, sizeof *p, 0);   /* the schedulers' caches are gone */
}

/* A lock and a condition only the external kind uses: made once, kept with the
 * struct (a pooled struct may be any kind next). */
static int ext_make(mb_proc *p) {
  if (p->ext) return 0;
  mb_extwait *w = malloc(sizeof *w);
  if (!w) return -1;
  pthread_mutex_init(&w->lock, NULL);
  mb_cond_init_monotonic(&w->cond);
  p->ext = w;
  return 0;
}

mb_proc *mb_proc_new(mb_node *n, int kind) {
  mb_proc *p = mb_ptab_pool_get(n->ptab);
  if (!p) p = proc_construct(n);
  if (!p) return NULL;
  if (mb_kinds[kind].waits_off_scheduler && ext_make(p) != 0) {
    mb_ptab_pool_put(n->ptab, p);   /* a stale reader may still look at a pooled struct */
    return NULL;
  }
  p->node = n;
  p->kind = kind;
  p->rq_next = NULL;   /* it linked the pool */
  mb_mpsc_init(&p->mq);
  atomic_store(&p->state, MB_PS_RUNNABLE);
  return p;
}

int mb_proc_publish(mb_proc *p) {
  mb_node *n = p->node;
  /* the table's reference, taken before the pid is published so that a lookup
   * never finds a live pid it cannot reference; the pid was 0 until now, so a
   * stale reader of a recycled struct does not match it */
  atomic_store(&p->refs, 1);
  if (mb_ptab_insert(n->ptab, p) != 0) {
    /* a stale reader may hold a reference for a moment: the last one recycles */
    mb_proc_unref(p);
    return MB_ELIMIT;
  }
  if (mb_kind_of(p)->counted) atomic_fetch_add(&n->live, 1);
  return 0;
}

mb_proc *mb_proc_alloc(mb_node *n, int kind) {
  mb_proc *p = mb_proc_new(n, kind);
  if (!p || mb_proc_publish(p) != 0) return NULL;
  return p;
}

/* ---- delivery ---- */

/* Move a waiting process to RUNNABLE; 1 if this caller did it (and must now queue
 * it or signal its thread), 0 if it was not waiting or another caller did. */
static inline int claim_waiting(mb_proc *p) {
  int st = MB_PS_WAITING;
  return atomic_load(&p->state) == MB_PS_WAITING &&
         atomic_compare_exchange_strong(&p->state, &st, MB_PS_RUNNABLE);
}

void mb_proc_wake(mb_proc *p) {
  if (!claim_waiting(p)) return;
  if (mb_kind_of(p)->waits_off_scheduler) {
    pthread_mutex_lock(&p->ext->lock);
    pthread_cond_signal(&p->ext->cond);
    pthread_mutex_unlock(&p->ext->lock);
  } else {
    mb_sched_ready(p->node, p, 1);
  }
}

/* Push s on p's mailbox. The count is raised after the push: a process about to
 * wait stores its state, then reads the count; the sender raises the count, then
 * reads the state (both sequentially consistent), so one of them sees the other.
 * A message that would take a process's queued bytes past its max_heap marks it
 * to end ("out of memory") and is dropped, like every message after it. */
static void push(mb_proc *p, mb_sig *s) {
  if (counts_as_message(s->kind)) {
    if (p->max_heap) {
      if (s->kind == MB_SIG_MSG && atomic_load_explicit(&p->over_heap, memory_order_relaxed)) {
        mb_sig_free(s);   /* it is ending: the crossing message is queued, so it wakes */
        return;
      }
      int64_t used = atomic_load_explicit(&p->queue_bytes, memory_order_relaxed) +
                     atomic_load_explicit(&p->heap_bytes, memory_order_relaxed) + (int64_t)s->len;
      if (used > (int64_t)p->max_heap) atomic_store(&p->over_heap, 1);
    }
    atomic_fetch_add_explicit(&p->queue_bytes, (int64_t)s->len, memory_order_relaxed);
  } else {
    atomic_fetch_add_explicit(&p->mq_ctrl, 1, memory_order_relaxed);   /* rare: messages pay nothing */
  }
  mb_mpsc_push(&p->mq, &s->q);
  atomic_fetch_add(&p->mq_count, 1);
}

static void inbox_append(mb_proc *p, mb_sig *s);

/* A message (or a gen_server's cast: a drain only appends either) to a Lua process
 * that waits goes straight into its inbox, without the mailbox's push, count and
 * drain. Whoever moves a process from WAITING to RUNNABLE owns it until it queues
 * it (park publishes WAITING only once it has read all it needs of the struct, and
 * a Lua process runs only when a scheduler takes it off a queue), so the sender
 * may write the owner's inbox, and look at the mailbox's consumer side, itself.
 * Only with the mailbox empty: a signal still there, this sender's own earlier one
 * included, must come out first, so the message is pushed behind it. The count
 * cannot tell: a process in park's window (WAITING stored, its count not yet read)
 * has not drained what it counts, and a drain stops when the count says nothing is
 * left, which leaves a signal queued behind another sender's that is pushed and
 * not yet counted. A process with a max_heap goes the usual way, which checks the
 * bound. 1 delivered; 0 not taken (nothing changed). */
static int hand_over(mb_proc *p, mb_sig *s) {
  if (p->kind != MB_PK_LUA || p->max_heap || !claim_waiting(p)) return 0;
  if (!mb_mpsc_empty(&p->mq)) {
    push(p, s);
  } else {
    atomic_fetch_add_explicit(&p->queue_bytes, (int64_t)s->len, memory_order_relaxed);
    inbox_append(p, s);
  }
  mb_sched_ready(p->node, p, 1);
  return 1;
}

int mb_send_sig_to(mb_proc *to, mb_sig *s) {
  if ((s->kind == MB_SIG_MSG || s->kind == MB_SIG_CAST) && hand_over(to, s)) return 0;
  push(to, s);
  if (atomic_load(&to->state) == MB_PS_RUNNING)
    mb_sched_poke(to->node);   /* it may be a loop only preemption can stop */
  else
    mb_proc_wake(to);
  return 0;
}

int mb_send_sig(mb_node *n, mb_pid to, mb_sig *s) {
  mb_proc *p = mb_proc_get(n, to);
  if (!p) { mb_sig_free(s); return MB_ENOPROC; }
  mb_send_sig_to(p, s);
  mb_proc_unref(p);
  return 0;
}

/* The answer of a process `dead` that ended with `reason` (NULL: unknown, "noproc")
 * to a signal that reached it too late: a link or a monitor made while it was
 * alive learns the reason it ended with. */
static void bounce(mb_node *n, mb_pid dead, mb_sig *s, mb_sig *reason) {
  if (!reason) reason = mb_sig_static("noproc");
  mb_pid from = s->from;
  if (s->kind == MB_SIG_LINK) {
    mb_sig *e = share_or_wait(reason, MB_SIG_EXIT, dead, 0);
    if (e) { e->flags = MB_SIGF_LINK; mb_send_sig(n, from, e); }
  } else if (s->kind == MB_SIG_MONITOR || s->kind == MB_SIG_CALL) {   /* a call monitors */
    mb_sig *d = share_or_wait(reason, MB_SIG_DOWN, dead, s->ref);
    if (d) mb_send_sig(n, from, d);
  }
  mb_sig_free(s);
}

/* ---- operations on other processes ---- */

static void self_push(mb_proc *self, mb_sig *s) {
  if (s) push(self, s);
}

void mb_proc_link(mb_proc *self, mb_pid other) {
  mb_pid me = atomic_load(&self->pid);
  if (other == me) return;
  mb_lock_take(&self->meta);
  int added = mb_pidset_add(&self->links, other);
  mb_lock_give(&self->meta);
  if (added <= 0) return;   /* already linked (or no memory) */
  mb_sig *s = mb_sig_new(MB_SIG_LINK, me, 0);
  if (s && mb_send_sig(self->node, other, s) == 0) return;
  mb_sig *e = mb_sig_share(mb_sig_static("noproc"), MB_SIG_EXIT, other, 0);
  if (e) e->flags = MB_SIGF_LINK;
  self_push(self, e);
}

void mb_proc_unlink(mb_proc *self, mb_pid other) {
  mb_lock_take(&self->meta);
  int had = mb_pidset_del(&self->links, other);
  mb_lock_give(&self->meta);
  if (!had) return;
  mb_sig *s = mb_sig_new(MB_SIG_UNLINK, atomic_load(&self->pid), 0);
  if (s) mb_send_sig(self->node, other, s);
}

void mb_proc_monitor(mb_proc *self, mb_pid other, uint64_t ref) {
  mb_lock_take(&self->meta);
  mb_monset_add(&self->monitors, ref, other);
  mb_lock_give(&self->meta);
  mb_sig *s = mb_sig_new(MB_SIG_MONITOR, atomic_load(&self->pid), ref);
  if (s && mb_send_sig(self->node, other, s) == 0) return;
  self_push(self, mb_sig_share(mb_sig_static("noproc"), MB_SIG_DOWN, other, ref));
}

int mb_proc_demonitor(mb_proc *self, uint64_t ref) {
  mb_pid target;
  mb_lock_take(&self->meta);
  int had = mb_monset_del(&self->monitors, ref, &target);
  mb_lock_give(&self->meta);
  if (had) {
    mb_sig *s = mb_sig_new(MB_SIG_DEMONITOR, atomic_load(&self->pid), ref);
    if (s) mb_send_sig(self->node, target, s);
  }
  /* Flush: a DOWN still in the mailbox is dropped by drain (its ref is gone);
   * one already in the inbox is removed here. */
  mb_proc_drain(self);
  mb_sig *prev = NULL;
  for (mb_sig *m = self->inbox; m; ) {
    mb_sig *next = m->next;
    if (m->kind == MB_SIG_DOWN && m->ref == ref) {
      if (self->L && m->lref != LUA_NOREF) luaL_unref(self->L, LUA_REGISTRYINDEX, m->lref);
      mb_proc_take(self, prev, m);
      mb_sig_free(m);
    } else {
      prev = m;
    }
    m = next;
  }
  return had;
}

/* exit/2. The sender decides, under the target's lock (where trap_exit changes),
 * whether the signal will end the target: "kill", or any reason but "normal" to a
 * process that does not trap exits. Then the target is dying at once: is_alive
 * and info reflect the signal, as SPEC 1 asks, and it ends on draining it. */
int mb_proc_exit_signal(mb_proc *self, mb_pid to, mb_sig *reason) {
  reason->kind = MB_SIG_EXIT;
  reason->flags = 0;
  reason->from = atomic_load(&self->pid);
  if (to == reason->from) { self_push(self, reason); mb_proc_drain(self); return 0; }
  mb_proc *t = mb_proc_get(self->node, to);
  if (!t) { mb_sig_free(reason); return MB_ENOPROC; }
  if (!mb_kind_of(t)->traps_all) {
    int kill = mb_encoded_is_string(reason->data, reason->len, "kill");
    mb_lock_take(&t->meta);
    if (kill || (!t->trap_exit && !mb_encoded_is_string(reason->data, reason->len, "normal"))) {
      reason->flags |= MB_SIGF_FATAL;
      atomic_store(&t->dying, 1);
    }
    mb_lock_give(&t->meta);
  }
  mb_send_sig_to(t, reason);
  mb_proc_unref(t);
  return 0;
}

/* ---- the owner's side ---- */

static void inbox_append(mb_proc *p, mb_sig *s) {
  s->next = NULL;
  s->seq = ++p->inbox_seq;   /* receive.c: receive marks compare stamps */
  if (p->inbox_tail) p->inbox_tail->next = s;
  else p->inbox = s;
  p->inbox_tail = s;
  atomic_store_explicit(&p->inbox_len, atomic_load_explicit(&p->inbox_len, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

void mb_proc_take(mb_proc *p, mb_sig *prev, mb_sig *m) {
  if (prev) prev->next = m->next;
  else p->inbox = m->next;
  if (p->inbox_tail == m) p->inbox_tail = prev;
  /* receive.c: the mark's position stays valid; replies are counted */
  if (p->mark_pos == m) p->mark_pos = prev;
  if (m->kind == MB_SIG_REPLY) p->inbox_replies--;
  atomic_store_explicit(&p->inbox_len, atomic_load_explicit(&p->inbox_len, memory_order_relaxed) - 1,
                        memory_order_relaxed);
  atomic_fetch_sub_explicit(&p->queue_bytes, (int64_t)m->len, memory_order_relaxed);
}

/* s, taken off the mailbox, is no longer queued. */
static void unqueue(mb_proc *p, mb_sig *s) {
  if (counts_as_message(s->kind))
    atomic_fetch_sub_explicit(&p->queue_bytes, (int64_t)s->len, memory_order_relaxed);
}

static void drop(mb_proc *p, mb_sig *s) {
  unqueue(p, s);
  mb_sig_free(s);
}

void mb_proc_doom(mb_proc *p, mb_sig *s) {
  if (p->doom) { mb_sig_free(s); return; }
  p->doom = s;
}

static void on_exit_signal(mb_proc *p, mb_sig *s) {
  mb_pid me = atomic_load(&p->pid);
  int from_link = s->flags & MB_SIGF_LINK;
  const char *r = mb_sig_payload(s);
  if (from_link) {
    mb_lock_take(&p->meta);
    int had = mb_pidset_del(&p->links, s->from);
    mb_lock_give(&p->meta);
    if (!had) { drop(p, s); return; }
  }
  int traps_all = mb_kind_of(p)->traps_all;
  if (!from_link && mb_encoded_is_string(r, s->len, "kill") && !traps_all) {
    drop(p, s);
    mb_proc_doom(p, mb_sig_static("killed"));   /* a constant: a kill is never lost to memory */
    return;
  }
  if (!(s->flags & MB_SIGF_FATAL)) {   /* FATAL: decided when it was sent */
    if (p->trap_exit || traps_all) { inbox_append(p, s); return; }
    if (mb_reason_is_normal(r, s->len) &&
        (from_link || (mb_encoded_is_string(r, s->len, "normal") && s->from != me))) {
      drop(p, s);
      return;
    }
  }
  unqueue(p, s);
  mb_proc_doom(p, s);
}

void mb_proc_drain_counted(mb_proc *p) {
  mb_qnode *q;
  /* Called when something is counted (mb_proc_drain looked; most drains find
   * nothing). A signal pushed and not yet counted is taken by the next drain: its sender
   * counts it, then looks whether we wait (mb_send_sig), as park looks at the
   * count after it says we do. While a sender is between its push and its count,
   * the count may say nothing is left with another sender's signal queued: that
   * one waits for the next drain too, as any signal queued behind a sender that
   * is between its exchange and its link waits for it (mailbox.c). */
  if (atomic_load_explicit(&p->over_heap, memory_order_relaxed)) mb_proc_doom(p, mb_sig_static("out of memory"));
  int64_t left = 1;   /* what the count said was left after the last pop */
  while (left > 0 && !p->doom && (q = mb_mpsc_pop(&p->mq)) != NULL) {
    mb_sig *s = (mb_sig *)q;
    /* none counted after this one: stop without another pop (one pushed and not yet
     * counted is the next drain's, as above) */
    left = atomic_fetch_sub_explicit(&p->mq_count, 1, memory_order_relaxed) - 1;
    if (!counts_as_message(s->kind)) atomic_fetch_sub_explicit(&p->mq_ctrl, 1, memory_order_relaxed);
    switch (s->kind) {
    case MB_SIG_MSG:
      inbox_append(p, s);
      break;
    case MB_SIG_DOWN:
      if (mb_monset_has(&p->monitors, s->ref)) {
        mb_lock_take(&p->meta);
        mb_monset_del(&p->monitors, s->ref, NULL);
        mb_lock_give(&p->meta);
        inbox_append(p, s);
      } else if (mb_monset_del(&p->calls, s->ref, NULL)) {
        inbox_append(p, s);   /* a call's server ended: no reply is taken after this */
      } else {
        drop(p, s);
      }
      break;
    case MB_SIG_CALL:
      /* the caller monitors us for the call's length (call.c): a DOWN if we end
       * before replying; the reply drops it */
      mb_lock_take(&p->meta);
      mb_monset_add(&p->monitored_by, s->ref, s->from);
      mb_lock_give(&p->meta);
      inbox_append(p, s);
      break;
    case MB_SIG_CAST:
      inbox_append(p, s);
      break;
    case MB_SIG_EXIT:
      on_exit_signal(p, s);
      break;
    case MB_SIG_REPLY: {
      /* receive.c: only a live call's reply is queued (and counted), once: taking
       * its ref out makes any later reply to that call late, dropped here */
      mb_pid server = 0;
      if (mb_monset_del(&p->calls, s->ref, &server)) {
        if (server && !(s->flags & MB_SIGF_UNMONITORED)) {
          /* a delegate's reply: the call is over, so is its monitor of the server
           * (now, not when the caller takes the reply: it may end first) */
          mb_sig *d = mb_sig_new(MB_SIG_DEMONITOR, atomic_load(&p->pid), s->ref);
          if (d) mb_send_sig(p->node, server, d);
          s->flags |= MB_SIGF_UNMONITORED;
        }
        atomic_fetch_add_explicit(&p->queue_bytes, (int64_t)s->len, memory_order_relaxed);
        p->inbox_replies++;
        inbox_append(p, s);
      } else {
        mb_sig_free(s);
      }
      break;
    }
    case MB_SIG_LINK:
      mb_lock_take(&p->meta);
      mb_pidset_add(&p->links, s->from);
      mb_lock_give(&p->meta);
      mb_sig_free(s);
      break;
    case MB_SIG_UNLINK:
      mb_lock_take(&p->meta);
      mb_pidset_del(&p->links, s->from);
      mb_lock_give(&p->meta);
      mb_sig_free(s);
      break;
    case MB_SIG_MONITOR:
      mb_lock_take(&p->meta);
      mb_monset_add(&p->monitored_by, s->ref, s->from);
      mb_lock_give(&p->meta);
      mb_sig_free(s);
      break;
    case MB_SIG_DEMONITOR:
      mb_lock_take(&p->meta);
      mb_monset_del(&p->monitored_by, s->ref, NULL);
      mb_lock_give(&p->meta);
      mb_sig_free(s);
      break;
    case MB_SIG_WAKE:
      if (s->ref && s->ref == p->io_wait) p->io_woken = 1;
      mb_sig_free(s);
      break;
    default:
      mb_sig_free(s);
    }
  }
}

void mb_proc_finish(mb_proc *p, mb_sig *reason) {
  mb_node *n = p->node;
  mb_pid me = atomic_load(&p->pid);
  int abnormal = !mb_reason_is_normal(mb_sig_payload(reason), reason->len);

  /* Its name goes and it turns DEAD in one step under the registry's lock: whereis
   * never answers with a dead pid, and the name is free again before any EXIT or
   * DOWN goes out (a supervisor restarting it re-registers at once). */
  mb_registry_end(n, p);
  mb_ptab_remove(n->ptab, p);

  mb_sched_disarm_wait(p);
  mb_sched_drop_timers_to(n, me);   /* after DEAD: a timer set at it now sees it dead */
  mb_resources_close_all(p);        /* its sockets close before any EXIT or DOWN goes out */
  if (p->L) { mb_spawn_close(p->L); p->L = NULL; p->cur = NULL; }

  /* The sets no longer change: nothing else runs as this process. Every EXIT and
   * DOWN shares the reason's payload (a header each, nothing copied). */
  for (int i = mb_pidset_next(&p->links, -1); i >= 0; i = mb_pidset_next(&p->links, i)) {
    mb_sig *e = share_or_wait(reason, MB_SIG_EXIT, me, 0);
    if (e) { e->flags = MB_SIGF_LINK; mb_send_sig(n, p->links.v[i], e); }
  }
  for (int i = mb_monset_next(&p->monitored_by, -1); i >= 0; i = mb_monset_next(&p->monitored_by, i)) {
    mb_sig *d = share_or_wait(reason, MB_SIG_DOWN, me, mb_monset_ref(&p->monitored_by, i));
    if (d) mb_send_sig(n, mb_monset_pid(&p->monitored_by, i), d);
  }
  for (int i = mb_monset_next(&p->monitors, -1); i >= 0; i = mb_monset_next(&p->monitors, i)) {
    mb_sig *d = mb_sig_new(MB_SIG_DEMONITOR, me, mb_monset_ref(&p->monitors, i));
    if (d) mb_send_sig(n, mb_monset_pid(&p->monitors, i), d);
  }
  /* the calls it waited in: their servers stop monitoring for it (call.c) */
  for (int i = mb_monset_next(&p->calls, -1); i >= 0; i = mb_monset_next(&p->calls, i)) {
    mb_sig *d = mb_monset_pid(&p->calls, i) ? mb_sig_new(MB_SIG_DEMONITOR, me, mb_monset_ref(&p->calls, i)) : NULL;
    if (d) mb_send_sig(n, mb_monset_pid(&p->calls, i), d);
  }
  mb_lock_take(&p->meta);
  mb_pidset_free(&p->links);
  mb_monset_free(&p->monitors);
  mb_monset_free(&p->monitored_by);
  mb_lock_give(&p->meta);

  for (mb_sig *m = p->inbox, *next; m; m = next) { next = m->next; mb_sig_free(m); }
  p->inbox = p->inbox_tail = p->mark_pos = NULL;
  mb_monset_free(&p->calls);
  /* a link or monitor that reached its mailbox while it lived, but was not
   * drained (it was busy), learns the real reason too */
  mb_qnode *q;
  while ((q = mb_mpsc_pop(&p->mq)) != NULL) bounce(n, me, (mb_sig *)q, reason);
  atomic_store(&p->mq_count, 0);
  atomic_store(&p->mq_ctrl, 0);
  atomic_store(&p->inbox_len, 0);
  atomic_store(&p->queue_bytes, 0);
  if (p->doom == reason) p->doom = NULL;
  p->exit_reason = reason;   /* for what still arrives; freed with the struct */

  mb_node_proc_ended(n, p, abnormal);
  mb_proc_unref(p);
}
