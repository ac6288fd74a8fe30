/* preempt: preemption. A ticker thread per node wakes every tick while some
 * scheduler is busy and, when a slice has run a whole tick while something else
 * waits for that thread (queued processes, a woken `next`, a due timer, a signal
 * for the running process, a stopping node), sends that scheduler thread the
 * preemption signal. The handler, on that thread, arms a one-shot count hook on
 * the running Lua thread (the way lua.c handles Ctrl-C); the hook yields where it
 * can. A lone busy process is never interrupted, and an idle node parks the
 * ticker, which must never miss a wake-up (mb_preempt_wake). */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sched_internal.h"
#include "testhook.h"

#define TICK_NS 500000   /* preemption tick: a contended slice ends after 0.5 to 1 ms */
#define QUIET_NS 10000000 /* the longest the ticker sleeps while nothing is contended */

typedef struct mb_ticker {
  _Atomic int parked;   /* first: mb_preempt_wake reads it inline (sched_internal.h) */
  pthread_t thread;
  int started, signo;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  _Atomic int quit;   /* set once every scheduler thread has been joined */
} mb_ticker;

/* ---- the hook and the signal handler (on the scheduler's thread) ---- */

void mb_sched_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  mb_proc *p = mb_proc_of(L);
  if (p && mb_proc_can_yield(L, p)) {
    lua_sethook(L, NULL, 0, 0);
    p->yield_reason = (p->doom || p->oom) ? MB_Y_DOOM : MB_Y_PREEMPT;
    lua_yield(L, 0);
    return;
  }
  /* Not yieldable here (a callback from C): look again soon. */
  lua_sethook(L, mb_sched_hook, LUA_MASKCOUNT, 1000);
}

void mb_sched_arm_hook(mb_proc *p) {
  lua_State *L = p->cur;
  if (L) lua_sethook(L, mb_sched_hook, LUA_MASKCOUNT, 1);
}

static void on_kick(int sig, siginfo_t *si, void *uc) {
  (void)sig; (void)si; (void)uc;
  int saved = errno;
  mb_sched *s = mb_tls_sched;
  if (s && atomic_load_explicit(&s->slice, memory_order_relaxed) ==
           atomic_load_explicit(&s->kick_slice, memory_order_relaxed)) {
    mb_proc *p = atomic_load_explicit(&s->current, memory_order_relaxed);
    lua_State *L = p ? p->cur : NULL;
    if (L) { s->hooked = L; lua_sethook(L, mb_sched_hook, LUA_MASKCOUNT, 1); }
  }
  errno = saved;
}

static int install_handler(int signo) {
  static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
  static int installed[128];
  if (signo <= 0 || signo >= 128) return -1;
  pthread_mutex_lock(&once);
  if (!installed[signo]) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_kick;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signo, &sa, NULL) == 0) installed[signo] = 1;
  }
  int ok = installed[signo];
  pthread_mutex_unlock(&once);
  return ok ? 0 : -1;
}

/* Does anything wait for scheduler s's thread? Sequentially consistent loads: the
 * ticker's re-check before parking pairs with the stores of those who wake it. */
static int contended(mb_node *n, mb_sched *s, uint64_t now) {
  if (atomic_load(&s->rq_len) > 0 || atomic_load(&s->has_next) ||
      atomic_load(&n->inject_count) > 0 || atomic_load(&s->next_deadline) <= now ||
      atomic_load(&n->halting) || atomic_load(&n->quit) ||
      atomic_load(&n->state) >= MB_NODE_STOPPING)
    return 1;
  /* process structs are pooled, never freed: a stale pointer is still readable */
  mb_proc *p = atomic_load(&s->current);
  return p && atomic_load(&p->mq_count) > 0;
}

/* Wake the ticker if it is parked. The lost wake-up is ruled out by a store-load
 * pairing, all sequentially consistent: a waker stores what makes the ticker
 * needed (a process running, a queue length, a timer, a signal count) and then
 * loads `parked`; the ticker stores `parked` and then re-reads those (ticker_park).
 * One of the two sees the other's store. */
_Static_assert(offsetof(mb_ticker, parked) == 0 && _Generic(&((mb_ticker *)0)->parked, _Atomic int *: 1, default: 0),
               "mb_preempt_wake reads `parked`, an _Atomic int, at the struct's start");

void mb_preempt_unpark(struct mb_ticker *t) {
  pthread_mutex_lock(&t->lock);
  atomic_store(&t->parked, 0);
  pthread_cond_signal(&t->cond);
  pthread_mutex_unlock(&t->lock);
}

/* Would the ticker have work now? `idle`: it was about to park because no
 * scheduler runs anything; otherwise because nothing running is contended. */
static int ticker_needed(mb_node *n, int idle) {
  uint64_t now = mb_now_ns();
  for (int i = 0; i < n->nsched; i++) {
    mb_sched *s = n->sched[i];
    if (!atomic_load(&s->current)) continue;
    if (idle || contended(n, s, now)) return 1;
  }
  return 0;
}

/* Wait until woken, until deadline (monotonic ns; 0 = none) or until told to quit. */
static void ticker_park(mb_node *n, mb_ticker *t, uint64_t deadline, int idle) {
  mb_test_point(idle ? "ticker_idle_park" : "ticker_quiet_park");   /* decided, not yet parked */
  pthread_mutex_lock(&t->lock);
  atomic_store(&t->parked, 1);
  if (ticker_needed(n, idle)) atomic_store(&t->parked, 0);
  while (atomic_load(&t->parked) && !atomic_load(&t->quit)) {
    if (!deadline) { pthread_cond_wait(&t->cond, &t->lock); continue; }
    struct timespec ts = mb_timespec_at(deadline);
    if (pthread_cond_timedwait(&t->cond, &t->lock, &ts) == ETIMEDOUT) break;
  }
  atomic_store(&t->parked, 0);
  pthread_mutex_unlock(&t->lock);
}

/* Send the preemption signal to s's thread unless it has left (a joined thread's
 * id must not be signalled). */
static void kick(mb_sched *s, int signo) {
  pthread_mutex_lock(&s->lock);
  if (!s->exited) pthread_kill(s->self, signo);
  pthread_mutex_unlock(&s->lock);
}

static void *ticker_main(void *arg) {
  mb_node *n = arg;
  mb_ticker *t = n->ticker;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  int idle_ticks = 0;
  uint64_t quiet_until = 0;   /* nothing was contended: park until this, or a poke */
  /* it runs until every scheduler has left: while the node stops, a scheduler
   * still running Lua is signalled like any contended one */
  while (!atomic_load(&t->quit)) {
    /* after a park, still sleep a tick: a poke then costs one wake-up per tick
     * at most, however often contention comes and goes */
    if (quiet_until) ticker_park(n, t, quiet_until, 0);
    struct timespec ts = { 0, TICK_NS };
    nanosleep(&ts, NULL);
    uint64_t now = mb_now_ns(), earliest = UINT64_MAX;
    int busy = 0, any = 0;
    for (int i = 0; i < n->nsched; i++) {
      mb_sched *s = n->sched[i];
      mb_proc *cur = atomic_load_explicit(&s->current, memory_order_acquire);
      if (!cur) continue;
      busy++;
      /* reductions grow while a process runs, even one never preempted: the
       * ticker's own count (the owner writes `reductions` with plain stores) */
      atomic_fetch_add_explicit(&cur->ticks, 1, memory_order_relaxed);
      uint64_t d = atomic_load_explicit(&s->next_deadline, memory_order_relaxed);
      if (d < earliest) earliest = d;
      if (!contended(n, s, now)) {
        s->ticker_seen = atomic_load_explicit(&s->slice, memory_order_relaxed);
        continue;
      }
      any = 1;
      uint64_t slice = atomic_load_explicit(&s->slice, memory_order_relaxed);
      if (slice != s->ticker_seen) { s->ticker_seen = slice; continue; }
      atomic_store_explicit(&s->kick_slice, slice, memory_order_relaxed);
      kick(s, t->signo);
    }
    quiet_until = 0;
    if (!busy) {
      if (++idle_ticks >= 8) { ticker_park(n, t, 0, 1); idle_ticks = 0; }
      continue;
    }
    idle_ticks = 0;
    /* Busy but uncontended: a lone process is not interrupted, and the ticker
     * sleeps until something pokes it (a wake-up, injected work, a signal for a
     * running process, a new timer) or the earliest timer, at most QUIET_NS. */
    if (!any) quiet_until = earliest < now + QUIET_NS ? earliest : now + QUIET_NS;
  }
  return NULL;
}

void mb_sched_poke(mb_node *n) { mb_preempt_wake(n); }

void mb_preempt_start(mb_node *n) {
  int signo = n->opts.preempt_signal;
  if (signo < 0) return;
  if (signo == 0) signo = SIGRTMIN + 3;
  if (install_handler(signo) != 0) return;
  mb_ticker *t = calloc(1, sizeof *t);
  if (!t) return;
  t->signo = signo;
  pthread_mutex_init(&t->lock, NULL);
  mb_cond_init_monotonic(&t->cond);
  n->ticker = t;
  if (pthread_create(&t->thread, NULL, ticker_main, n) == 0) t->started = 1;
}

/* End the ticker thread; its struct stays until the node is freed, since any
 * thread may still poke it (mb_preempt_free). */
void mb_preempt_stop(mb_node *n) {
  mb_ticker *t = n->ticker;
  if (!t || !t->started) return;
  pthread_mutex_lock(&t->lock);
  atomic_store(&t->quit, 1);
  atomic_store(&t->parked, 0);
  pthread_cond_signal(&t->cond);
  pthread_mutex_unlock(&t->lock);
  pthread_join(t->thread, NULL);
  t->started = 0;
}

void mb_preempt_free(mb_node *n) {
  mb_ticker *t = n->ticker;
  if (!t) return;
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->cond);
  free(t);
  n->ticker = NULL;
}

void mb_preempt_unblock(mb_node *n) {
  if (!n->ticker) return;
  /* an embedder may block the signal in the thread that starts the node; the
   * scheduler threads inherit that mask and must not */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, n->ticker->signo);
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}
