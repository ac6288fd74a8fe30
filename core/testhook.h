/* testhook: a pause a C test can put at a named point of a past race, to widen its
 * window and show the race stays closed. NULL in every real run (one load). */
#ifndef MB_TESTHOOK_H
#define MB_TESTHOOK_H

#include <stdatomic.h>

typedef void (*mb_test_pause_fn)(const char *where);
extern _Atomic(mb_test_pause_fn) mb_test_pause;

static inline void mb_test_point(const char *where) {
  mb_test_pause_fn f = atomic_load_explicit(&mb_test_pause, memory_order_acquire);
  if (f) f(where);
}

#endif
