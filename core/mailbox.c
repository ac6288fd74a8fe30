/* mailbox: Vyukov's intrusive MPSC queue. Producers do one atomic exchange;
 * the consumer follows `next` links from the tail, recycling a stub node. */
#include "mailbox.h"

void mb_mpsc_init(mb_mpsc *q) {
  atomic_store_explicit(&q->stub.next, NULL, memory_order_relaxed);
  atomic_store_explicit(&q->head, &q->stub, memory_order_relaxed);
  q->tail = &q->stub;
}

void mb_mpsc_push(mb_mpsc *q, mb_qnode *n) {
  atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
  mb_qnode *prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
  atomic_store_explicit(&prev->next, n, memory_order_release);
}

mb_qnode *mb_mpsc_pop(mb_mpsc *q) {
  mb_qnode *tail = q->tail;
  mb_qnode *next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (tail == &q->stub) {
    if (!next) return NULL;
    q->tail = next;
    tail = next;
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
  }
  if (next) {
    q->tail = next;
    return tail;
  }
  mb_qnode *head = atomic_load_explicit(&q->head, memory_order_acquire);
  if (tail != head) return NULL; /* a producer is between its exchange and its link */
  mb_mpsc_push(q, &q->stub);
  next = atomic_load_explicit(&tail->next, memory_order_acquire);
  if (next) {
    q->tail = next;
    return tail;
  }
  return NULL;
}
