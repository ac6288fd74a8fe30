/* testhook: a pause a C test can put at a named point of a past race, to widen its
 * window and show the race stays closed. NULL in every real run (one load). */
#ifndef MB_TESTHOOK_H
#define MB_TESTHOOK_H

extern void (*volatile mb_test_pause)(const char *where);

static inline void mb_test_point(const char *where) {
  void (*f)(const char *) = mb_test_pause;
  if (f) f(where);
}

#endif
