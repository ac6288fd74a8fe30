/* timer: timers live in the heap of the scheduler that armed them, checked by its
 * loop (no thread hop). Timers with a ref (send_after) are also in the node-wide
 * map so cancel_timer works from any thread; wait timers (receive timeouts, sleep)
 * are validated by the process's wait sequence when they fire.
 *
 * Ownership: a timer belongs to its heap's scheduler, which frees it after it fired
 * or was found cancelled. The map only lends pointers under its lock. A wait timer
 * cancelled on another thread is pushed on its owner's cancel queue, and freed
 * when the owner takes it from there (never by the firing path). */
#ifndef MB_TIMER_H
#define MB_TIMER_H

#include <stdatomic.h>
#include <stdint.h>
#include "proc.h"
#include "mailbox.h"

enum { MB_T_PENDING, MB_T_FIRED, MB_T_CANCELLED };

typedef struct mb_timer {
  mb_qnode cq;           /* a wait timer cancelled from another thread: its owner's cancel queue */
  uint64_t deadline;     /* monotonic ns */
  uint64_t ref;          /* send_after: its ref; wait timers: 0 */
  mb_pid pid;            /* wait: the process; send_after: the destination pid (or 0) */
  uint32_t seq;          /* wait: the wait sequence it belongs to */
  char *name;            /* send_after to a registered name (name_len bytes) */
  size_t name_len;
  mb_sig *msg;           /* send_after: the message */
  _Atomic int state;
  uint32_t idx;          /* position in its heap */
  struct mb_timer *map_next;
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
/* Cancel by ref: ms left (>= 0) if it was pending, -1 if fired, cancelled or unknown.
 * A cancelled timer's message is freed at once. */
double mb_timers_cancel(mb_timers *m, uint64_t ref, uint64_t now, mb_pid *target);
/* The owner fires t: 1 if it was still pending (then it is out of the map), else 0. */
int mb_timers_claim(mb_timers *m, mb_timer *t);
void mb_timer_free(mb_timer *t);

#endif
