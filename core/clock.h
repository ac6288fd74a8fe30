/* clock: the core's one clock (monotonic nanoseconds) and the helpers that wait on it. */
#ifndef MB_CLOCK_H
#define MB_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Monotonic clock, in nanoseconds. */
uint64_t mb_now_ns(void);
/* A condition variable whose timed waits use the monotonic clock (mb_now_ns). */
void mb_cond_init_monotonic(pthread_cond_t *c);

/* A deadline in mb_now_ns terms as the timespec pthread_cond_timedwait wants. */
static inline struct timespec mb_timespec_at(uint64_t ns) {
  struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
  return ts;
}

#endif
