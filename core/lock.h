/* lock: a one-word mutex (a futex: 0 free, 1 held, 2 held with waiters), for data
 * every process struct carries: a pthread mutex is 40 bytes, near a tenth of the
 * 448-byte struct.
 * Uncontended, taking it is one compare-and-swap and letting go one exchange; a
 * thread that finds it held sleeps in the kernel, as a default pthread mutex does.
 * Not recursive, no owner check. A zeroed word is a free lock. */
#ifndef MB_LOCK_H
#define MB_LOCK_H

#include <stdatomic.h>
#include <stdint.h>

typedef _Atomic uint32_t mb_lock;

void mb_lock_wait(mb_lock *l, uint32_t seen);   /* the contended halves (lock.c) */
void mb_lock_wake(mb_lock *l);

static inline void mb_lock_take(mb_lock *l) {
  uint32_t c = 0;
  if (!atomic_compare_exchange_strong_explicit(l, &c, 1, memory_order_acquire, memory_order_relaxed))
    mb_lock_wait(l, c);
}

static inline void mb_lock_give(mb_lock *l) {
  if (atomic_exchange_explicit(l, 0, memory_order_release) == 2) mb_lock_wake(l);
}

#endif
