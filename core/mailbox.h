/* mailbox: an intrusive lock-free multi-producer single-consumer queue (Vyukov's).
 * Any thread may push; only the owning process's scheduler pops. */
#ifndef MB_MAILBOX_H
#define MB_MAILBOX_H

#include <stdatomic.h>
#include <stddef.h>

typedef struct mb_qnode {
  _Atomic(struct mb_qnode *) next;
} mb_qnode;

typedef struct mb_mpsc {
  _Atomic(mb_qnode *) head;   /* producers swap themselves in here */
  mb_qnode *tail;             /* consumer side */
  mb_qnode stub;
} mb_mpsc;

void mb_mpsc_init(mb_mpsc *q);
/* Any thread. */
void mb_mpsc_push(mb_mpsc *q, mb_qnode *n);
/* Consumer only. NULL when empty, or while a push is half done (that producer
 * completes it and then wakes the consumer, so NULL is safe to wait on). */
mb_qnode *mb_mpsc_pop(mb_mpsc *q);
/* Consumer only (or whoever holds the consumer's side for it). Nothing is queued
 * that a pop has not returned, counting a push between its exchange and its link:
 * the consumer's tail is the stub, and no producer has swapped the head since. */
static inline int mb_mpsc_empty(mb_mpsc *q) {
  return q->tail == &q->stub && atomic_load_explicit(&q->head, memory_order_acquire) == &q->stub;
}

#endif
