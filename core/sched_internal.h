/* sched_internal: the scheduler struct, shared by scheduler.c (the threads, run
 * queues, timers) and preempt.c (the ticker, signal handler and hook) only. */
#ifndef MB_SCHED_INTERNAL_H
#define MB_SCHED_INTERNAL_H

#include "scheduler.h"

struct mb_sched {
  mb_node *node;
  int id;
  pthread_t thread;
  int started;
  int exited;                    /* under lock: sched_main returned; no more signals to it */
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int sleeping, wakeup;          /* under lock */
  mb_proc *rq_head, *rq_tail;    /* the run queue (through rq_next), under lock */
  uint32_t rq_n;
  _Atomic int rq_len;
  mb_proc *next;
  int running;                   /* [owner] a process (Lua or native) is running here */
  mb_heap timers;
  _Atomic uint64_t slice;        /* bumped when a process starts a fresh time slice */
  _Atomic uint64_t kick_slice;   /* the slice the ticker asked to end */
  uint64_t ticker_seen;          /* [ticker] the slice seen at its last tick */
  pthread_t self;                /* set by the thread itself; read after `current` */
  _Atomic(mb_proc *) current;    /* the process running here, or NULL */
  _Atomic int has_next;
  _Atomic uint64_t next_deadline; /* earliest timer here, UINT64_MAX if none */
  lua_State *volatile hooked;
  mb_acache acache;
  mb_mpsc cancelq;               /* timers of this heap cancelled on other threads */
};

/* mb_tls_sched (scheduler.h), the scheduler running on this thread, is also read
 * by the signal handler. */

/* preempt.c, for scheduler.c */
void mb_preempt_start(mb_node *n);     /* the ticker thread, if preemption is on */
void mb_preempt_stop(mb_node *n);      /* ends the ticker thread (after every scheduler joined) */
void mb_preempt_free(mb_node *n);      /* frees the ticker (when the node is freed) */
void mb_preempt_unpark(struct mb_ticker *t);   /* wake the parked ticker: see preempt.c */
/* Wake the ticker if parked (every wake-up and run asks: the test is inline). Its
 * struct starts with `parked`. */
static inline void mb_preempt_wake(mb_node *n) {
  struct mb_ticker *t = n->ticker;
  if (t && atomic_load((_Atomic int *)(void *)t)) mb_preempt_unpark(t);
}
void mb_preempt_unblock(mb_node *n);   /* unblock the preemption signal in this thread */

#endif
