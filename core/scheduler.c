/* scheduler: the scheduler threads. Each owns a run queue (a list through the
 * processes, under its own lock: only the owner pushes, the owner and thieves pop), a
 * `next` slot only the owner touches, and a timer heap. A process woken by the running
 * one takes `next` and inherits the rest of the slice, so a message hop stays on one
 * thread; spawned, preempted and timer-woken processes go to the queue, which idle
 * schedulers steal from. Preemption (the ticker, the signal handler, the hook)
 * lives in preempt.c. */
#include <errno.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include "sched_internal.h"
#include "spawn.h"
#include "native.h"
#include "registry.h"
#include "log.h"
#include "statepool.h"

#define SPIN_ROUNDS 2000



_Thread_local mb_sched *mb_tls_sched;



/* ---- run queues ---- */

/* A run queue is a list through the processes themselves (rq_next): a process is
 * in at most one queue at a time (it is RUNNABLE there), so a push needs no memory
 * and cannot fail. */
static void rq_push(mb_sched *s, mb_proc *p) {
  p->rq_next = NULL;
  pthread_mutex_lock(&s->lock);
  if (s->rq_tail) s->rq_tail->rq_next = p;
  else s->rq_head = p;
  s->rq_tail = p;
  s->rq_n++;
  atomic_store(&s->rq_len, (int)s->rq_n);
  pthread_mutex_unlock(&s->lock);
}

/* Pop up to max from the front into out. */
static uint32_t rq_take(mb_sched *s, mb_proc **out, uint32_t max) {
  if (atomic_load(&s->rq_len) == 0) return 0;
  pthread_mutex_lock(&s->lock);
  uint32_t k = 0;
  while (k < max && s->rq_head) {
    out[k++] = s->rq_head;
    s->rq_head = s->rq_head->rq_next;
  }
  if (!s->rq_head) s->rq_tail = NULL;
  s->rq_n -= k;
  atomic_store(&s->rq_len, (int)s->rq_n);
  pthread_mutex_unlock(&s->lock);
  return k;
}

static void notify(mb_node *n, int force) {
  if (atomic_load(&n->nsleeping) == 0 || !n->sched) return;
  if (!force && atomic_load(&n->nspinning) > 0) return;
  for (int i = 0; i < n->nsched; i++) {
    mb_sched *s = n->sched[i];
    pthread_mutex_lock(&s->lock);
    if (s->sleeping && !s->wakeup) {
      s->wakeup = 1;
      pthread_cond_signal(&s->cond);
      pthread_mutex_unlock(&s->lock);
      return;
    }
    pthread_mutex_unlock(&s->lock);
  }
}

void mb_sched_want_idle(mb_node *n) { notify(n, 1); }

mb_acache *mb_sched_acache(mb_node *n) {
  mb_sched *s = mb_tls_sched;
  return s && s->node == n ? &s->acache : NULL;
}

void mb_sched_wake_all(mb_node *n) {
  mb_preempt_wake(n);
  for (int i = 0; i < n->nsched; i++) {
    mb_sched *s = n->sched[i];
    pthread_mutex_lock(&s->lock);
    s->wakeup = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
  }
}

/* Work from outside the schedulers (host thread, I/O thread): a list like a run
 * queue, through rq_next, that the next scheduler to look takes whole. */
static void inject(mb_node *n, mb_proc *p) {
  p->rq_next = NULL;
  pthread_mutex_lock(&n->inject_lock);
  if (n->inject_tail) n->inject_tail->rq_next = p;
  else n->inject_head = p;
  n->inject_tail = p;
  atomic_fetch_add(&n->inject_count, 1);
  pthread_mutex_unlock(&n->inject_lock);
  notify(n, 1);
  mb_preempt_wake(n);
}

/* Move work injected from outside onto the back of our queue. */
static void pull_injected(mb_sched *s) {
  mb_node *n = s->node;
  if (atomic_load(&n->inject_count) == 0) return;
  pthread_mutex_lock(&n->inject_lock);
  mb_proc *p = n->inject_head;
  n->inject_head = n->inject_tail = NULL;
  atomic_store(&n->inject_count, 0);
  pthread_mutex_unlock(&n->inject_lock);
  while (p) {
    mb_proc *next = p->rq_next;
    rq_push(s, p);
    p = next;
  }
}

void mb_sched_ready(mb_node *n, mb_proc *p, int woken) {
  mb_sched *s = mb_tls_sched;
  if (!s || s->node != n) { inject(n, p); return; }
  if (woken && s->running) {
    mb_proc *old = s->next;
    s->next = p;
    atomic_store(&s->has_next, 1);   /* seq_cst: pairs with the ticker's park (ticker_wake) */
    mb_preempt_wake(n);
    if (!old) return;
    p = old;
  }
  rq_push(s, p);
  notify(n, 0);
  mb_preempt_wake(n);
}

#define STEAL_MAX 64

static mb_proc *steal(mb_sched *s) {
  mb_node *n = s->node;
  mb_proc *got[STEAL_MAX];
  for (int k = 1; k < n->nsched; k++) {
    mb_sched *v = n->sched[(s->id + k) % n->nsched];
    int len = atomic_load(&v->rq_len);
    if (len == 0) continue;
    uint32_t want = (uint32_t)(len + 1) / 2;
    if (want > STEAL_MAX) want = STEAL_MAX;
    uint32_t got_n = rq_take(v, got, want);
    if (!got_n) continue;
    for (uint32_t i = 1; i < got_n; i++) rq_push(s, got[i]);
    return got[0];
  }
  return NULL;
}

static int work_visible(mb_sched *s) {
  mb_node *n = s->node;
  if (atomic_load(&n->inject_count) > 0 || atomic_load(&s->rq_len) > 0) return 1;
  /* timers cancelled elsewhere wait to be freed (hand_back) */
  if (atomic_load(&s->cancelq.head) != s->cancelq.tail) return 1;
  for (int k = 1; k < n->nsched; k++)
    if (atomic_load(&n->sched[(s->id + k) % n->nsched]->rq_len) > 0) return 1;
  return 0;
}

/* ---- timers ---- */

/* Publish the earliest deadline for the ticker. */
static void heap_changed(mb_sched *s) {
  mb_timer *t = mb_heap_top(&s->timers);
  atomic_store(&s->next_deadline, t ? t->deadline : UINT64_MAX);   /* seq_cst: see ticker_wake */
  mb_preempt_wake(s->node);
}

/* [any thread] Give a timer this thread won the cancel of back to its owner, which
 * frees it: on the owner's thread, out of the heap at once; from elsewhere, on the
 * owner's cancel queue, freed at its next loop turn. A sleeping owner is woken
 * for it (once per sleep: it drains before it sleeps again), so a cancelled
 * timer never waits for an idle owner's next deadline. */
static void hand_back(mb_timer *t) {
  mb_sched *s = t->owner;
  if (s == mb_tls_sched) {
    mb_heap_remove(&s->timers, t);
    heap_changed(s);
    mb_timers_release(s->node->timers, t);
    return;
  }
  mb_mpsc_push(&s->cancelq, &t->cq);   /* t may be freed from here on */
  /* idle() counts itself sleeping, then looks at the queue: one of us sees the other */
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load(&s->node->nsleeping) == 0) return;
  pthread_mutex_lock(&s->lock);
  if (s->sleeping && !s->wakeup) {
    s->wakeup = 1;
    pthread_cond_signal(&s->cond);
  }
  pthread_mutex_unlock(&s->lock);
}

int mb_sched_arm_wait(mb_proc *p, uint64_t deadline) {
  mb_sched *s = mb_tls_sched;
  mb_timer *t = calloc(1, sizeof *t);
  if (!t) return -1;
  uint32_t seq = atomic_fetch_add(&p->wait_seq, 1) + 1;
  t->deadline = deadline;
  t->pid = atomic_load(&p->pid);
  t->seq = seq;
  t->owner = s;
  if (mb_heap_push(&s->timers, t) != 0) { free(t); return -1; }
  heap_changed(s);
  p->wait_timer = t;
  p->wait_armed_seq = seq;
  return 0;
}

void mb_sched_disarm_armed(mb_proc *p) {
  mb_timer *t = p->wait_timer;
  p->wait_timer = NULL;
  uint32_t armed = p->wait_armed_seq;
  /* Whoever consumes the wait's sequence owns the timer: if it already fired,
   * its scheduler freed it; else it goes back to its scheduler. */
  if (!atomic_compare_exchange_strong(&p->wait_seq, &armed, armed + 1)) return;
  hand_back(t);
}

/* [owner] Free the timers other threads cancelled. */
static void drain_cancelled(mb_sched *s) {
  mb_qnode *q;
  int any = 0;
  while ((q = mb_mpsc_pop(&s->cancelq)) != NULL) {
    mb_timer *t = (mb_timer *)q;
    mb_heap_remove(&s->timers, t);   /* a no-op if it came due and left the heap */
    mb_timers_release(s->node->timers, t);
    any = 1;
  }
  if (any) heap_changed(s);
}

int mb_sched_add_timer(mb_timer *t) {
  mb_sched *s = mb_tls_sched;
  if (!s || mb_heap_push(&s->timers, t) != 0) return -1;
  t->owner = s;
  heap_changed(s);
  mb_node *n = s->node;
  mb_timers_add(n->timers, t);
  /* Aimed at a pid: from the add on, that pid's end finds it in the map; if the
   * pid ended before, it is seen dead here and the timer goes at once. */
  if (t->pid && !t->name) {
    mb_proc *p = mb_proc_get(n, t->pid);
    if (p) mb_proc_unref(p);
    else if ((t = mb_timers_cancel(n->timers, t->ref)) != NULL) hand_back(t);
  }
  return 0;
}

double mb_sched_cancel_timer(mb_node *n, uint64_t ref) {
  mb_timer *t = mb_timers_cancel(n->timers, ref);
  if (!t) return -1;
  uint64_t now = mb_now_ns();
  double left = t->deadline > now ? (double)(t->deadline - now) / 1e6 : 0;
  mb_pid to = t->name ? 0 : t->pid;
  hand_back(t);
  /* its target is ending and has not dropped its timers yet: it went with it */
  mb_proc *p = to ? mb_proc_get(n, to) : NULL;
  if (to && !p) return -1;
  if (p) mb_proc_unref(p);
  return left;
}

void mb_sched_drop_timers_to(mb_node *n, mb_pid pid) {
  for (mb_timer *t = mb_timers_cancel_to(n->timers, pid), *next; t; t = next) {
    next = t->map_next;
    hand_back(t);
  }
}

static void fire_timer(mb_sched *s, mb_timer *t) {
  mb_node *n = s->node;
  if (t->ref == 0) {
    /* A wait timer whose sequence was consumed (or whose process is gone, which
     * disarmed it on the way out) was cancelled from another thread: it is on
     * our cancel queue, which frees it. */
    mb_proc *p = mb_proc_get(n, t->pid);
    int fired = 0;
    if (p) {
      uint32_t seq = t->seq;
      if (atomic_compare_exchange_strong(&p->wait_seq, &seq, seq + 1)) {
        fired = 1;
        int st = MB_PS_WAITING;
        if (atomic_compare_exchange_strong(&p->state, &st, MB_PS_RUNNABLE)) rq_push(s, p);
      }
      mb_proc_unref(p);
    }
    if (!fired) return;
  } else if (!mb_timer_fire(n, t)) {
    return;   /* cancelled: its canceller hands it back through our cancel queue */
  }
  mb_timers_release(n->timers, t);
}

static void fire_due(mb_sched *s) {
  if (!mb_mpsc_empty(&s->cancelq)) drain_cancelled(s);   /* every loop turn: a test, not a pop */
  if (!s->timers.n) return;
  uint64_t now = mb_now_ns();
  mb_timer *t;
  while ((t = mb_heap_top(&s->timers)) && t->deadline <= now) {
    mb_heap_pop(&s->timers);
    fire_timer(s, t);
  }
  heap_changed(s);
}

/* ---- running a process ---- */

static void park(mb_sched *s, mb_proc *p) {
  /* read what we need of p before it is published as waiting: from then on
   * another scheduler may run it */
  int timed = p->wait_timer != NULL;
  uint32_t armed = p->wait_armed_seq;
  p->acache = NULL;
  /* sequentially consistent, as the loads below and the sender's count and claim
   * (proc.c, push and claim_waiting): one of us sees the other's store. No fence
   * besides: the store is a full barrier already (gcc: an exchange on x86) */
  atomic_store(&p->state, MB_PS_WAITING);
  int pending = atomic_load(&p->mq_count) > 0 ||
                (timed && atomic_load(&p->wait_seq) != armed);
  if (pending) {
    int st = MB_PS_WAITING;
    if (atomic_compare_exchange_strong(&p->state, &st, MB_PS_RUNNABLE)) rq_push(s, p);
  }
}

static void preempted(mb_sched *s, mb_proc *p) {
  p->acache = NULL;
  atomic_store(&p->state, MB_PS_RUNNABLE);
  if (s->next) { rq_push(s, s->next); s->next = NULL; atomic_store_explicit(&s->has_next, 0, memory_order_relaxed); }
  rq_push(s, p);
}

static void run_lua(mb_sched *s, mb_proc *p) {
  mb_proc_drain(p);
  if (!p->doom && !p->started) mb_spawn_start(p);
  if (p->doom) { mb_spawn_end(p, LUA_OK); return; }
  p->yield_reason = MB_Y_NONE;
  p->cur = p->L;
  s->hooked = NULL;
  atomic_store(&s->current, p);   /* seq_cst, then the ticker's `parked`: see ticker_wake */
  mb_preempt_wake(p->node);
  /* counted as it starts: a process reading its own reductions has run */
  mb_proc_reduce(p, 1);
  int nres = 0;
  int st = lua_resume(p->L, NULL, p->nargs, &nres);
  atomic_store_explicit(&s->current, NULL, memory_order_relaxed);
  lua_State *last = p->cur;
  p->cur = NULL;
  if (s->hooked && s->hooked == last) lua_sethook(last, NULL, 0, 0);
  p->nargs = 0;
  /* the ticker's 32-bit count, folded in long before it could wrap (half way:
   * ~12 days of ticks without a yield) */
  if (atomic_load_explicit(&p->ticks, memory_order_relaxed) >= UINT32_C(1) << 31)
    mb_proc_reduce(p, atomic_exchange_explicit(&p->ticks, 0, memory_order_relaxed));
  if (p->oom) mb_proc_doom(p, mb_sig_static("out of memory"));
  if (st == LUA_YIELD && !p->doom) {
    if (p->yield_reason == MB_Y_WAIT) { park(s, p); return; }
    if (p->yield_reason == MB_Y_PREEMPT) { preempted(s, p); return; }
    if (p->yield_reason == MB_Y_NONE) {
      /* nothing is pushed on the state here (unprotected): the reason is made in C */
      static const char msg[] = "attempt to yield from outside a coroutine";
      mb_log(p->node, MB_LOG_ERROR, atomic_load(&p->pid),
             "crash report: process <0.%llu> (module '%s') ended with reason: %s",
             (unsigned long long)atomic_load(&p->pid), p->module ? p->module : "function", msg);
      mb_sig *r = mb_sig_string(MB_SIG_EXIT, 0, 0, msg);
      p->doom = r ? r : mb_sig_static("error");
    }
  }
  mb_spawn_end(p, st == LUA_YIELD ? LUA_OK : st);
}

static void run(mb_sched *s, mb_proc *p) {
  atomic_store(&p->state, MB_PS_RUNNING);
  p->acache = &s->acache;   /* allocations while it runs use this thread's free lists */
  s->running = 1;           /* what it wakes runs next here (mb_sched_ready) */
  if (mb_kind_of(p)->run) {
    /* a native's: drains, runs the handler, or ends it (then p may be reused at once) */
    int waits = mb_kind_of(p)->run(p);
    s->running = 0;
    if (waits) park(s, p);
    return;
  }
  run_lua(s, p);
  s->running = 0;
}

static mb_proc *find_work(mb_sched *s, int *new_slice) {
  mb_proc *p = s->next;
  if (p) {
    s->next = NULL;
    atomic_store_explicit(&s->has_next, 0, memory_order_relaxed);
    *new_slice = 0;
    return p;
  }
  *new_slice = 1;
  pull_injected(s);   /* behind what is queued already, so nothing starves */
  if (rq_take(s, &p, 1)) return p;
  return steal(s);
}

static int node_done(mb_node *n) {
  return atomic_load(&n->halting) || atomic_load(&n->quit);
}

static int idle_stop(void *arg) {
  mb_sched *s = arg;
  return work_visible(s) || node_done(s->node);
}

static void idle(mb_sched *s) {
  mb_node *n = s->node;
  /* first the work an idle scheduler does for the busy ones: states for spawns */
  int pool = mb_statepool_fill(n, idle_stop, s) == 0;   /* watch the pool, unless it failed */
  atomic_fetch_add(&n->nspinning, 1);
  for (int i = 0; i < SPIN_ROUNDS; i++) {
    if (work_visible(s) || node_done(n)) { atomic_fetch_sub(&n->nspinning, 1); return; }
    if ((i & 63) == 63) {
      mb_timer *t = mb_heap_top(&s->timers);
      if ((t && t->deadline <= mb_now_ns()) || (pool && mb_statepool_low(n))) {
        atomic_fetch_sub(&n->nspinning, 1);
        return;
      }
    }
    __builtin_ia32_pause();
  }
  atomic_fetch_sub(&n->nspinning, 1);
  pthread_mutex_lock(&s->lock);
  s->sleeping = 1;
  atomic_fetch_add(&n->nsleeping, 1);
  if (!s->wakeup && !work_visible(s) && !node_done(n) && !(pool && mb_statepool_low(n))) {
    mb_timer *t = mb_heap_top(&s->timers);
    if (t) {
      struct timespec ts = mb_timespec_at(t->deadline);
      pthread_cond_timedwait(&s->cond, &s->lock, &ts);
    } else {
      pthread_cond_wait(&s->cond, &s->lock);
    }
  }
  s->sleeping = 0;
  s->wakeup = 0;
  atomic_fetch_sub(&n->nsleeping, 1);
  pthread_mutex_unlock(&s->lock);
}

static void *sched_main(void *arg) {
  mb_sched *s = arg;
  mb_node *n = s->node;
  mb_tls_sched = s;
  s->self = pthread_self();
  mb_preempt_unblock(n);
  while (!node_done(n)) {
    fire_due(s);
    int new_slice;
    mb_proc *p = find_work(s, &new_slice);
    if (!p) { idle(s); continue; }
    if (new_slice) atomic_fetch_add_explicit(&s->slice, 1, memory_order_relaxed);
    run(s, p);
  }
  pthread_mutex_lock(&s->lock);
  s->exited = 1;
  pthread_mutex_unlock(&s->lock);
  mb_tls_sched = NULL;
  return NULL;
}

/* ---- lifecycle ---- */

int mb_sched_start_all(mb_node *n) {
  n->sched = calloc((size_t)n->nsched, sizeof *n->sched);
  if (!n->sched) return MB_ENOMEM;
  for (int i = 0; i < n->nsched; i++) {
    mb_sched *s = calloc(1, sizeof *s);
    if (!s) return MB_ENOMEM;
    s->node = n;
    mb_mpsc_init(&s->cancelq);
    atomic_store(&s->next_deadline, UINT64_MAX);
    s->id = i;
    pthread_mutex_init(&s->lock, NULL);
    mb_cond_init_monotonic(&s->cond);
    n->sched[i] = s;
  }
  mb_preempt_start(n);
  for (int i = 0; i < n->nsched; i++) {
    if (pthread_create(&n->sched[i]->thread, NULL, sched_main, n->sched[i]) != 0) return MB_ESYS;
    n->sched[i]->started = 1;
  }
  return 0;
}

void mb_sched_join_all(mb_node *n) {
  if (!n->sched) return;
  mb_sched_wake_all(n);
  for (int i = 0; i < n->nsched; i++)
    if (n->sched[i] && n->sched[i]->started) {
      pthread_join(n->sched[i]->thread, NULL);
      n->sched[i]->started = 0;
    }
  mb_preempt_stop(n);   /* last: until now it may have to stop a scheduler running Lua */
}

void mb_sched_free_all(mb_node *n) {
  mb_preempt_free(n);   /* only now: other threads may poke it until the node is freed */
  if (!n->sched) return;
  for (int i = 0; i < n->nsched; i++) {
    mb_sched *s = n->sched[i];
    if (!s) continue;
    drain_cancelled(s);   /* first: those may still sit in the heap */
    mb_heap_free(&s->timers);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
  }
  free(n->sched);
  n->sched = NULL;
}
