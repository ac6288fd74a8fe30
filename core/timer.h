/* timer: timers live in the heap of the scheduler that armed them, checked by its
 * loop (no thread hop). Timers with a ref (send_after) are also in the node-wide
 * map, by ref so cancel_timer works from any thread, and those aimed at a pid also
 * by that pid so its end cancels them; wait timers (receive timeouts, sleep) are
 * validated by the process's wait sequence when they fire.
 *
 * Ownership: a timer belongs to its owner, the scheduler whose heap holds it, and
 * only the owner frees it, exactly once. Whoever wins its state (PENDING -> FIRED
 * by the owner, PENDING -> CANCELLED by a cancel; for wait timers, the wait
 * sequence) decides: the owner frees what it fired; a cancel hands what it won
 * back to the owner (at once on the owner's thread, else through the owner's
 * cancel queue). The map only lends pointers under its lock. */
#ifndef MB_TIMER_H
#define MB_TIMER_H

#include <stdatomic.h>
#include <stdint.h>
#include "proc.h"
#include "mailbox.h"

enum { MB_T_PENDING, MB_T_FIRED, MB_T_CANCELLED };

typedef struct mb_timer {
  mb_qnode cq;           /* cancelled on another thread: its owner's cancel queue */
  uint64_t deadline;     /* monotonic ns */
  uint64_t ref;          /* send_after: its ref; wait timers: 0 */
  mb_pid pid;            /* wait: the process; send_after: the destination pid (or 0) */
  uint32_t seq;          /* wait: the wait sequence it belongs to */
  char *name;            /* send_after to a registered name (name_len bytes) */
  size_t name_len;
  mb_sig *msg;           /* send_after: the message */
  mb_sched *owner;       /* the scheduler whose heap holds it */
  _Atomic int state;
  uint32_t idx;          /* position in its heap */
  struct mb_timer *map_next;            /* [map] by ref; once cancelled: its canceller's batch */
  struct mb_timer *to_next, *to_prev;   /* [map] aimed at a pid: by that pid */
} mb_timer;

typedef struct mb_heap { mb_timer **v; uint32_t n, cap; } mb_heap;
typedef struct mb_timers mb_timers;

int mb_heap_push(mb_heap *h, mb_timer *t);
static inline mb_timer *mb_heap_top(mb_heap *h) { return h->n ? h->v[0] : NULL; }
mb_timer *mb_heap_pop(mb_heap *h);
void mb_heap_remove(mb_heap *h, mb_timer *t);
void mb_heap_free(mb_heap *h);  /* frees the remaining timers too */

mb_timers *mb_timers_new(void);
void mb_timers_free(mb_timers *m);
void mb_timers_add(mb_timers *m, mb_timer *t);
/* Cancel by ref: the timer if this call won it (PENDING -> CANCELLED; out of the map,
 * its message freed), to be handed back to its owner; NULL if it fired, was
 * cancelled or is unknown. */
mb_timer *mb_timers_cancel(mb_timers *m, uint64_t ref);
/* Cancel every pending timer aimed at pid (not those aimed at a name): the ones won,
 * chained on map_next, each to be handed back to its owner. */
mb_timer *mb_timers_cancel_to(mb_timers *m, mb_pid pid);
/* The owner fires t: 1 if it was still pending (then it is out of the map), else 0
 * (cancelled: its canceller hands it back). */
int mb_timers_claim(mb_timers *m, mb_timer *t);
void mb_timer_free(mb_timer *t);
/* The owner frees t; a send_after timer leaves the count below. */
void mb_timers_release(mb_timers *m, mb_timer *t);
/* send_after timers added and not yet freed (pending, or cancelled and still held
 * by their scheduler): an internal stat for tests. */
int64_t mb_timers_live(mb_timers *m);

/* The owner fires send_after timer t: its message goes to its pid, or to the
 * holder of its name now. 0 if a cancel won it (the canceller hands it back). */
int mb_timer_fire(mb_node *n, mb_timer *t);

#endif
