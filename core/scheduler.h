/* scheduler: M:N scheduling. One thread per scheduler, each with a run queue, a `next`
 * slot for the process it just woke (so a message hop stays on one thread) and a timer
 * heap; a ticker thread that signals a scheduler whose slice has expired while other
 * work waits, so the handler arms a one-shot Lua hook on the running state. Idle
 * schedulers steal, spin briefly, then sleep on a condition variable. */
#ifndef MB_SCHED_H
#define MB_SCHED_H

#include "node.h"
#include "timer.h"

int mb_sched_start_all(mb_node *n);  /* create and start n->nsched threads */
void mb_sched_join_all(mb_node *n);
void mb_sched_free_all(mb_node *n);
void mb_sched_wake_all(mb_node *n);

/* Make a runnable process run. `woken`: it was woken by the process running on
 * this thread (a message, a reply; or it was spawned by one that now waits for
 * its start), so it takes the `next` slot of this thread's scheduler and runs as
 * soon as that one stops, on this thread. */
void mb_sched_ready(mb_node *n, mb_proc *p, int woken);

/* Something may now wait for a running process's thread (a signal for it):
 * make sure the preemption ticker looks. */
void mb_sched_poke(mb_node *n);

/* This thread's allocation cache if it is one of n's schedulers, else NULL. */
struct mb_acache *mb_sched_acache(mb_node *n);

/* Wake a sleeping scheduler, if one sleeps, for work it does when idle (the state
 * pool's filling). */
void mb_sched_want_idle(mb_node *n);

/* The scheduler running on this thread, or NULL (every wait asks: inline). */
extern _Thread_local mb_sched *mb_tls_sched;
static inline mb_sched *mb_sched_self(void) { return mb_tls_sched; }

/* [owner] Timers on the current scheduler. */
int mb_sched_arm_wait(mb_proc *p, uint64_t deadline);
void mb_sched_disarm_armed(mb_proc *p);
/* [owner] Cancel the current wait's timer, if one is armed (most waits have none:
 * the test is inline). */
static inline void mb_sched_disarm_wait(mb_proc *p) {
  if (p->wait_timer) mb_sched_disarm_armed(p);
}
/* send_after: t (ref, pid or name, message) into this thread's heap and the node's
 * map; one aimed at a pid that already ended is cancelled at once. On 0 the
 * timer belongs to the scheduler (the caller must not touch it); -1: not armed. */
int mb_sched_add_timer(mb_timer *t);
/* [any thread] cancel_timer: ms that were left, or -1 if it fired, was cancelled,
 * is unknown, or its target pid ended. */
double mb_sched_cancel_timer(mb_node *n, uint64_t ref);
/* [any thread] The process pid ended: cancel the timers aimed at it (SPEC 1). */
void mb_sched_drop_timers_to(mb_node *n, mb_pid pid);

/* The Lua hook the preemption signal arms; also armed to end a doomed process. */
void mb_sched_hook(lua_State *L, lua_Debug *ar);
/* Arm the hook on the running thread of p now (from p's own thread). */
void mb_sched_arm_hook(mb_proc *p);

#endif
