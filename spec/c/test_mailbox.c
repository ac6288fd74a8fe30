/* test_mailbox: the MPSC queue — order, emptiness, and a multi-producer hammer;
 * signal blocks across threads; the one-word lock (lock.h) a process's links,
 * monitors and name live under. */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "check.h"
#include "lock.h"
#include "mailbox.h"
#include "sigblock.h"

typedef struct { mb_qnode q; int producer; int seq; } item;

TEST(fifo_single_thread) {
  mb_mpsc q;
  mb_mpsc_init(&q);
  CHECK(mb_mpsc_pop(&q) == NULL);
  item it[100];
  for (int i = 0; i < 100; i++) { it[i].seq = i; mb_mpsc_push(&q, &it[i].q); }
  for (int i = 0; i < 100; i++) {
    item *x = (item *)mb_mpsc_pop(&q);
    CHECK(x != NULL);
    CHECK_EQ_INT(x->seq, i);
  }
  CHECK(mb_mpsc_pop(&q) == NULL);
}

TEST(interleaved_push_pop) {
  mb_mpsc q;
  mb_mpsc_init(&q);
  item it[10];
  for (int round = 0; round < 1000; round++) {
    int k = round % 10 + 1;
    for (int i = 0; i < k; i++) { it[i].seq = i; mb_mpsc_push(&q, &it[i].q); }
    for (int i = 0; i < k; i++) CHECK_EQ_INT(((item *)mb_mpsc_pop(&q))->seq, i);
    CHECK(mb_mpsc_pop(&q) == NULL);
  }
}

/* Empty means nothing a pop has not returned, a push that has swapped the head
 * and not yet linked included (its pop would say NULL). */
TEST(empty_counts_a_half_done_push) {
  mb_mpsc q;
  mb_mpsc_init(&q);
  CHECK(mb_mpsc_empty(&q));
  item a, b;
  mb_mpsc_push(&q, &a.q);
  CHECK(!mb_mpsc_empty(&q));
  CHECK(mb_mpsc_pop(&q) == &a.q);
  CHECK(mb_mpsc_empty(&q));   /* the stub went back in behind a */
  atomic_store(&b.q.next, NULL);
  mb_qnode *prev = atomic_exchange(&q.head, &b.q);   /* a producer's first half */
  CHECK(mb_mpsc_pop(&q) == NULL);
  CHECK(!mb_mpsc_empty(&q));
  atomic_store(&prev->next, &b.q);   /* and its second */
  CHECK(mb_mpsc_pop(&q) == &b.q);
  CHECK(mb_mpsc_empty(&q));
}

#define PRODUCERS 4
#define PER_PRODUCER 200000

static mb_mpsc hq;
static item *items;

static void *producer(void *arg) {
  int id = (int)(intptr_t)arg;
  for (int i = 0; i < PER_PRODUCER; i++) {
    item *x = &items[id * PER_PRODUCER + i];
    x->producer = id;
    x->seq = i;
    mb_mpsc_push(&hq, &x->q);
  }
  return NULL;
}

/* Every item arrives exactly once, and each producer's items in its order. */
TEST(hammer_many_producers) {
  mb_mpsc_init(&hq);
  items = calloc(PRODUCERS * PER_PRODUCER, sizeof *items);
  CHECK(items);
  pthread_t t[PRODUCERS];
  for (int i = 0; i < PRODUCERS; i++) pthread_create(&t[i], NULL, producer, (void *)(intptr_t)i);
  int next[PRODUCERS] = { 0 };
  long got = 0;
  while (got < PRODUCERS * PER_PRODUCER) {
    item *x = (item *)mb_mpsc_pop(&hq);
    if (!x) continue;
    CHECK(x->producer >= 0 && x->producer < PRODUCERS);
    CHECK_EQ_INT(x->seq, next[x->producer]);
    next[x->producer]++;
    got++;
  }
  for (int i = 0; i < PRODUCERS; i++) pthread_join(t[i], NULL);
  CHECK(mb_mpsc_pop(&hq) == NULL);
  for (int i = 0; i < PRODUCERS; i++) CHECK_EQ_INT(next[i], PER_PRODUCER);
  free(items);
}

/* Signal blocks (sigblock.h): taken on one thread and given back on another, as a
 * sender's and a receiver's; each thread keeps at most 64 of each class, frees the
 * rest, and frees what it keeps when it ends. Every block is the whole size of its
 * class; the classes are taken in turn and kept apart. */
#define BLOCKS 1000
static void *blocks[BLOCKS];

static int class_at(int i) { return 1 + i % MB_SIGBLOCK_CLASSES; }

static void *take_blocks(void *arg) {
  (void)arg;
  for (int i = 0; i < BLOCKS; i++) {
    blocks[i] = mb_sigblock_take(class_at(i));
    CHECK(blocks[i] != NULL);
    memset(blocks[i], i & 0xff, mb_sigblock_size(class_at(i)));   /* all of it is ours */
  }
  return NULL;
}

static void *give_blocks(void *arg) {
  (void)arg;
  for (int c = 1; c <= MB_SIGBLOCK_CLASSES; c++) CHECK_EQ_INT(mb_sigblock_kept(c), 0);
  for (int i = 0; i < BLOCKS; i++) {
    unsigned char *b = blocks[i];
    CHECK(b[0] == (i & 0xff) && b[mb_sigblock_size(class_at(i)) - 1] == (i & 0xff));
    mb_sigblock_give(b, class_at(i));
  }
  int kept = mb_sigblock_kept(2);
  CHECK(kept == 64 || kept == 0);   /* 0: the ASan build keeps none */
  for (int c = 1; c <= MB_SIGBLOCK_CLASSES; c++) CHECK_EQ_INT(mb_sigblock_kept(c), kept);
  /* taken back on this thread: from what it keeps of that class, until that runs out */
  for (int i = 0; i < 10; i++) blocks[i] = mb_sigblock_take(2);
  CHECK_EQ_INT(mb_sigblock_kept(2), kept ? kept - 10 : 0);
  CHECK_EQ_INT(mb_sigblock_kept(1), kept);
  CHECK_EQ_INT(mb_sigblock_kept(3), kept);
  for (int i = 0; i < 10; i++) mb_sigblock_give(blocks[i], 2);
  return NULL;   /* what it keeps is freed as it ends */
}

TEST(signal_blocks_cross_threads_and_stay_bounded) {
  for (int round = 0; round < 4; round++) {
    pthread_t a, b;
    CHECK(pthread_create(&a, NULL, take_blocks, NULL) == 0);
    CHECK(pthread_join(a, NULL) == 0);
    CHECK(pthread_create(&b, NULL, give_blocks, NULL) == 0);
    CHECK(pthread_join(b, NULL) == 0);
  }
}

/* The lock: threads that hammer it never find another inside, and no increment made
 * under it is lost (plain ints: the thread sanitizer build also sees any race). */
#define LOCKERS 4
#define LOCK_ROUNDS 200000
static mb_lock hl;
static int inside;
static long counted;

static void *locker(void *arg) {
  (void)arg;
  for (int i = 0; i < LOCK_ROUNDS; i++) {
    mb_lock_take(&hl);
    CHECK(inside == 0);
    inside = 1;
    counted++;
    if (i % 1000 == 0) sched_yield();   /* held while off the core: the others sleep on it */
    inside = 0;
    mb_lock_give(&hl);
  }
  return NULL;
}

TEST(lock_excludes_under_a_hammer) {
  pthread_t t[LOCKERS];
  for (int i = 0; i < LOCKERS; i++) CHECK(pthread_create(&t[i], NULL, locker, NULL) == 0);
  for (int i = 0; i < LOCKERS; i++) CHECK(pthread_join(t[i], NULL) == 0);
  CHECK_EQ_INT(counted, (long)LOCKERS * LOCK_ROUNDS);
  CHECK_EQ_INT(atomic_load(&hl), 0);   /* free, and no waiter mark left behind */
}

static _Atomic int waiter_in;

static void *late_taker(void *arg) {
  (void)arg;
  mb_lock_take(&hl);
  atomic_store(&waiter_in, 1);
  mb_lock_give(&hl);
  return NULL;
}

/* A thread that finds the lock held marks it (2) and sleeps; letting go wakes it. */
TEST(lock_wakes_a_sleeping_waiter) {
  mb_lock_take(&hl);
  CHECK_EQ_INT(atomic_load(&hl), 1);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, late_taker, NULL) == 0);
  struct timespec ms = { 0, 1000000 };
  for (int i = 0; i < 10000 && atomic_load(&hl) != 2; i++) nanosleep(&ms, NULL);   /* bounded: 10 s */
  CHECK_EQ_INT(atomic_load(&hl), 2);
  CHECK_EQ_INT(atomic_load(&waiter_in), 0);
  mb_lock_give(&hl);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK_EQ_INT(atomic_load(&waiter_in), 1);
  CHECK_EQ_INT(atomic_load(&hl), 0);
}

TEST_MAIN(CHECK_CASE(fifo_single_thread), CHECK_CASE(interleaved_push_pop), CHECK_CASE(empty_counts_a_half_done_push),
          CHECK_CASE(hammer_many_producers), CHECK_CASE(signal_blocks_cross_threads_and_stay_bounded),
          CHECK_CASE(lock_excludes_under_a_hammer), CHECK_CASE(lock_wakes_a_sleeping_waiter))
