/* test_sets: the link and monitor sets (core/sets.c) against a reference model
 * under random churn, iteration, shrinking, and allocation failures (calloc is
 * wrapped: see spec/CMakeLists.txt). */
#include <stdint.h>
#include "check.h"
#include "sets.h"

/* ---- calloc, wrapped: fails while `fail_calloc` is set ---- */

void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
static int fail_calloc, callocs;
void *__wrap_calloc(size_t n, size_t size) {
  callocs++;
  return fail_calloc ? NULL : __real_calloc(n, size);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

/* ---- the model: K candidate keys, each in or out ---- */

#define K 6000
static uint64_t keys[K];      /* distinct, non-zero */
static uint64_t vals[K];      /* monset: the pid stored with keys[i] */
static char in[K], seen[K];
static int model_n;
static struct { uint64_t key; int idx; } sorted[K];   /* key -> index, by binary search */

static int by_key(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Candidates like real pids and refs: slot + generation * 65536, a counter, and
 * random 64-bit values. */
static void make_keys(void) {
  for (int i = 0; i < K; i++) {
    switch (i % 3) {
    case 0: keys[i] = (uint64_t)(i / 3 + 1) + (uint64_t)(i % 7) * 65536; break;
    case 1: keys[i] = 1000000 + (uint64_t)i; break;
    default: keys[i] = next_rand() | 1;
    }
    vals[i] = next_rand() | 1;
  }
  for (int i = 0; i < K; i++) { sorted[i].key = keys[i]; sorted[i].idx = i; }
  qsort(sorted, K, sizeof sorted[0], by_key);
  for (int i = 1; i < K; i++) CHECK(sorted[i].key != sorted[i - 1].key);   /* distinct */
  memset(in, 0, sizeof in);
  model_n = 0;
}

static int key_index(uint64_t key) {
  int lo = 0, hi = K - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (sorted[mid].key == key) return sorted[mid].idx;
    if (sorted[mid].key < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/* The table's size stays proportional to its contents. */
static void check_shape(int n, int cap) {
  CHECK(n >= 0 && n <= cap);
  if (cap > 8) CHECK(n * 4 <= cap * 3 && cap <= 8 * (n + 8));
}

/* An iteration yields each key of the model once: mark(key) for every key
 * met, then marked() == the model's count. */
static int marks;
static void unmark(int n, int cap) {
  CHECK_EQ_INT(n, model_n);
  check_shape(n, cap);
  memset(seen, 0, sizeof seen);
  marks = 0;
}
static int mark(uint64_t key) {
  int k = key_index(key);
  CHECK(k >= 0 && in[k] && !seen[k]);
  seen[k] = 1;
  marks++;
  return k;
}

static void check_pidset(const mb_pidset *s) {
  unmark(s->n, s->cap);
  for (int i = mb_pidset_next(s, -1); i >= 0; i = mb_pidset_next(s, i)) mark(s->v[i]);
  CHECK_EQ_INT(marks, model_n);
  mb_pid out[K];
  CHECK_EQ_INT(mb_pidset_copy(s, out), model_n);
  unmark(s->n, s->cap);
  for (int i = 0; i < model_n; i++) mark(out[i]);
}

static void check_monset(const mb_monset *s) {
  unmark(s->n, s->cap);
  for (int i = mb_monset_next(s, -1); i >= 0; i = mb_monset_next(s, i))
    CHECK(mb_monset_pid(s, i) == vals[mark(mb_monset_ref(s, i))]);
  CHECK_EQ_INT(marks, model_n);
  mb_pid out[K];
  CHECK_EQ_INT(mb_monset_pids(s, out), model_n);
}

/* Percent of operations that add, per phase: grow, churn at a high load,
 * delete-heavy, churn at a low load, and back; each phase 25,000 operations
 * over a subset of the candidates. */
static const int add_pct[] = { 90, 50, 10, 50, 80, 20, 50, 5, 95, 15, 50, 10 };
#define PHASES (int)(sizeof add_pct / sizeof add_pct[0])
#define PHASE_OPS 25000

TEST(pidset_matches_a_model_under_churn) {
  make_keys();
  mb_pidset s = { 0 };
  for (int ph = 0; ph < PHASES; ph++) {
    int range = ph % 4 == 3 ? 40 : K;   /* some phases stay around the small/hashed border */
    for (int op = 0; op < PHASE_OPS; op++) {
      int k = (int)(next_rand() % (uint64_t)range);
      int r = (int)(next_rand() % 100);
      if (r < add_pct[ph]) {
        CHECK_EQ_INT(mb_pidset_add(&s, keys[k]), !in[k]);
        if (!in[k]) { in[k] = 1; model_n++; }
      } else if (r < 97) {
        CHECK_EQ_INT(mb_pidset_del(&s, keys[k]), in[k]);
        if (in[k]) { in[k] = 0; model_n--; }
      } else {
        CHECK_EQ_INT(mb_pidset_has(&s, keys[k]), in[k]);
      }
      if (op % 2500 == 0) check_pidset(&s);
    }
    check_pidset(&s);
    for (int k = 0; k < K; k++) CHECK_EQ_INT(mb_pidset_has(&s, keys[k]), in[k]);
  }
  for (int k = 0; k < K; k++) if (in[k]) { CHECK_EQ_INT(mb_pidset_del(&s, keys[k]), 1); in[k] = 0; model_n--; }
  check_pidset(&s);
  CHECK(s.cap <= 8);   /* shrunk back to a packed array */
  mb_pidset_free(&s);
  CHECK(s.v == NULL && s.n == 0 && s.cap == 0);
}

TEST(monset_matches_a_model_under_churn) {
  make_keys();
  mb_monset s = { 0 };
  for (int ph = 0; ph < PHASES; ph++) {
    int range = ph % 4 == 3 ? 40 : K;
    for (int op = 0; op < PHASE_OPS; op++) {
      int k = (int)(next_rand() % (uint64_t)range);
      int r = (int)(next_rand() % 100);
      if (r < add_pct[ph]) {
        CHECK_EQ_INT(mb_monset_add(&s, keys[k], vals[k]), !in[k]);
        if (!in[k]) { in[k] = 1; model_n++; }
      } else if (r < 97) {
        mb_pid pid = 0;
        CHECK_EQ_INT(mb_monset_del(&s, keys[k], r % 2 ? &pid : NULL), in[k]);
        if (in[k] && r % 2) CHECK(pid == vals[k]);
        if (in[k]) { in[k] = 0; model_n--; }
      } else {
        CHECK_EQ_INT(mb_monset_has(&s, keys[k]), in[k]);
      }
      if (op % 2500 == 0) check_monset(&s);
    }
    check_monset(&s);
  }
  mb_monset_free(&s);
}

/* A window sliding over fresh keys: every add is a new key, every delete the
 * oldest. Open addressing with tombstones degrades here; the set must keep
 * finding every key and stay the window's size. */
TEST(sliding_window_of_fresh_keys) {
  mb_pidset s = { 0 };
  mb_monset m = { 0 };
  const int window = 1000, total = 200000;
  uint64_t ref0 = 1u << 20;
  for (int i = 1; i <= total; i++) {
    CHECK_EQ_INT(mb_pidset_add(&s, (uint64_t)i * 65536 + 3), 1);
    CHECK_EQ_INT(mb_monset_add(&m, ref0 + (uint64_t)i, (uint64_t)i), 1);
    if (i > window) {
      uint64_t old = (uint64_t)(i - window);
      CHECK_EQ_INT(mb_pidset_del(&s, old * 65536 + 3), 1);
      mb_pid pid = 0;
      CHECK_EQ_INT(mb_monset_del(&m, ref0 + old, &pid), 1);
      CHECK(pid == old);
      CHECK(!mb_pidset_has(&s, old * 65536 + 3) && !mb_monset_has(&m, ref0 + old));
    }
    if (i % 10000 == 0) {
      CHECK_EQ_INT(s.n, i < window ? i : window);
      check_shape(s.n, s.cap);
      check_shape(m.n, m.cap);
      for (int j = i > window ? i - window + 1 : 1; j <= i; j++) {
        CHECK(mb_pidset_has(&s, (uint64_t)j * 65536 + 3));
        CHECK(mb_monset_has(&m, ref0 + (uint64_t)j));
      }
    }
  }
  mb_pidset_free(&s);
  mb_monset_free(&m);
}

TEST(an_empty_set_holds_no_memory_and_a_small_one_little) {
  mb_pidset s = { 0 };
  CHECK(!mb_pidset_has(&s, 5));
  CHECK_EQ_INT(mb_pidset_del(&s, 5), 0);
  CHECK_EQ_INT(mb_pidset_next(&s, -1), -1);
  CHECK_EQ_INT(mb_pidset_add(&s, 0), 0);   /* pid 0 is never a member */
  CHECK(s.v == NULL && callocs == 0);
  CHECK_EQ_INT(mb_pidset_add(&s, 5), 1);
  CHECK_EQ_INT(mb_pidset_add(&s, 5), 0);
  CHECK_EQ_INT(s.cap, 4);
  for (uint64_t p = 6; p < 13; p++) CHECK_EQ_INT(mb_pidset_add(&s, p), 1);
  CHECK_EQ_INT(s.cap, 8);   /* eight: still a packed array */
  CHECK_EQ_INT(mb_pidset_add(&s, 13), 1);
  CHECK_EQ_INT(s.cap, 16);
  mb_pidset_free(&s);
}

/* Every add that needs a new table fails; the set is as it was and still works. */
TEST(an_add_without_memory_leaves_the_set_unchanged) {
  mb_pidset s = { 0 };
  mb_monset m = { 0 };
  fail_calloc = 1;
  CHECK_EQ_INT(mb_pidset_add(&s, 7), -1);
  CHECK_EQ_INT(mb_monset_add(&m, 7, 70), -1);
  CHECK(s.v == NULL && s.n == 0 && m.v == NULL && m.n == 0);
  fail_calloc = 0;
  uint64_t next = 1;
  for (int size = 1; size <= 200; size++) {   /* through packed 4 and 8, hashed 16, 32, … */
    fail_calloc = 1;
    int rs = mb_pidset_add(&s, next), rm = mb_monset_add(&m, next, next * 10);
    fail_calloc = 0;
    if (rs < 0) {
      CHECK_EQ_INT(s.n, (int)next - 1);
      CHECK(!mb_pidset_has(&s, next));
      CHECK_EQ_INT(mb_pidset_add(&s, next), 1);
    }
    if (rm < 0) {
      CHECK_EQ_INT(m.n, (int)next - 1);
      CHECK(!mb_monset_has(&m, next));
      CHECK_EQ_INT(mb_monset_add(&m, next, next * 10), 1);
    }
    for (uint64_t k = 1; k <= next; k++) CHECK(mb_pidset_has(&s, k) && mb_monset_has(&m, k));
    next++;
  }
  /* deleting never fails: with no memory to shrink, the big table stays */
  fail_calloc = 1;
  int cap = s.cap;
  for (uint64_t k = 1; k < next; k++) {
    CHECK_EQ_INT(mb_pidset_del(&s, k), 1);
    mb_pid pid = 0;
    CHECK_EQ_INT(mb_monset_del(&m, k, &pid), 1);
    CHECK(pid == k * 10);
    for (uint64_t j = k + 1; j < next; j++) CHECK(mb_pidset_has(&s, j) && mb_monset_has(&m, j));
  }
  CHECK_EQ_INT(s.cap, cap);
  CHECK_EQ_INT(mb_pidset_next(&s, -1), -1);
  CHECK_EQ_INT(mb_monset_next(&m, -1), -1);
  fail_calloc = 0;
  mb_pidset_free(&s);
  mb_monset_free(&m);
}

TEST_MAIN(CHECK_CASE(pidset_matches_a_model_under_churn),
          CHECK_CASE(monset_matches_a_model_under_churn),
          CHECK_CASE(sliding_window_of_fresh_keys),
          CHECK_CASE(an_empty_set_holds_no_memory_and_a_small_one_little),
          CHECK_CASE(an_add_without_memory_leaves_the_set_unchanged))
