/* lock: the contended halves of mb_lock (lock.h). A waiter marks the word 2 (held,
 * with waiters) and sleeps while it stays 2; whoever lets go of a 2 wakes one
 * sleeper, which marks it 2 again as it takes it (it cannot know whether others
 * sleep), so no waiter is ever left asleep on a free lock. */
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "lock.h"

void mb_lock_wait(mb_lock *l, uint32_t seen) {
  if (seen != 2) seen = atomic_exchange_explicit(l, 2, memory_order_acquire);
  while (seen != 0) {
    syscall(SYS_futex, (uint32_t *)l, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
    seen = atomic_exchange_explicit(l, 2, memory_order_acquire);
  }
}

void mb_lock_wake(mb_lock *l) {
  syscall(SYS_futex, (uint32_t *)l, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
