/* test_timer: the deadline heap (order, removal) and the cancel map. */
#include <stdint.h>
#include "check.h"
#include "timer.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static mb_timer *mk(uint64_t deadline, uint64_t ref) {
  mb_timer *t = calloc(1, sizeof *t);
  t->deadline = deadline;
  t->ref = ref;
  return t;
}

TEST(heap_pops_in_deadline_order) {
  mb_heap h = { 0 };
  for (int i = 0; i < 5000; i++) CHECK(mb_heap_push(&h, mk(next_rand() % 100000, 0)) == 0);
  uint64_t last = 0;
  int n = 0;
  mb_timer *t;
  while ((t = mb_heap_pop(&h))) {
    CHECK(t->deadline >= last);
    last = t->deadline;
    free(t);
    n++;
  }
  CHECK_EQ_INT(n, 5000);
  mb_heap_free(&h);
}

TEST(heap_remove_keeps_order) {
  mb_heap h = { 0 };
  mb_timer *all[2000];
  for (int i = 0; i < 2000; i++) { all[i] = mk(next_rand() % 1000, 0); mb_heap_push(&h, all[i]); }
  for (int i = 0; i < 2000; i += 3) { mb_heap_remove(&h, all[i]); free(all[i]); all[i] = NULL; }
  mb_heap_remove(&h, all[1]);   /* twice is harmless */
  mb_heap_remove(&h, all[1]);
  free(all[1]);
  uint64_t last = 0;
  int n = 0;
  mb_timer *t;
  while ((t = mb_heap_pop(&h))) { CHECK(t->deadline >= last); last = t->deadline; free(t); n++; }
  CHECK_EQ_INT(n, 2000 - 667 - 1);
  mb_heap_free(&h);
}

TEST(cancel_reports_time_left_once) {
  mb_timers *m = mb_timers_new();
  mb_timer *t = mk(5000000000ull, 42);
  t->pid = 7;
  mb_timers_add(m, t);
  mb_pid target = 0;
  double left = mb_timers_cancel(m, 42, 2000000000ull, &target);
  CHECK(left > 2999.0 && left < 3001.0);
  CHECK_EQ_INT(target, 7);
  CHECK(mb_timers_cancel(m, 42, 2000000000ull, NULL) < 0);   /* already cancelled */
  CHECK(mb_timers_claim(m, t) == 0);                        /* the owner finds it cancelled */
  mb_timer_free(t);
  CHECK(mb_timers_cancel(m, 99, 0, NULL) < 0);               /* unknown */
  mb_timers_free(m);
}

TEST(claim_then_cancel_is_false) {
  mb_timers *m = mb_timers_new();
  mb_timer *t = mk(10, 5);
  mb_timers_add(m, t);
  CHECK(mb_timers_claim(m, t) == 1);
  CHECK(mb_timers_cancel(m, 5, 0, NULL) < 0);
  mb_timer_free(t);
  mb_timers_free(m);
}

TEST(cancel_frees_the_message_at_once) {
  mb_timers *m = mb_timers_new();
  mb_timer *t = mk(5000000000ull, 77);
  t->msg = mb_sig_string(MB_SIG_MSG, 1, 0, "a message that would otherwise wait for the deadline");
  CHECK(t->msg != NULL);
  mb_timers_add(m, t);
  CHECK(mb_timers_cancel(m, 77, 0, NULL) > 0);
  CHECK(t->msg == NULL);                   /* freed by the cancel */
  CHECK(mb_timers_claim(m, t) == 0);      /* the owner, at the deadline */
  mb_timer_free(t);                        /* no double free (ASan) */
  mb_timers_free(m);
}

TEST_MAIN(CHECK_CASE(heap_pops_in_deadline_order), CHECK_CASE(heap_remove_keeps_order),
          CHECK_CASE(cancel_reports_time_left_once), CHECK_CASE(claim_then_cancel_is_false),
          CHECK_CASE(cancel_frees_the_message_at_once))
