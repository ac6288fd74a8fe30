/* test_io: the I/O thread runs requests handed to it through its queue, in order,
 * on its own thread, and stop joins it after what it was given has run. */
#include <pthread.h>
#include <stdatomic.h>
#include "check.h"
#include "moonbeam.h"
#include "node.h"
#include "io.h"

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int seen[100], n;
  pthread_t thread;
} record;

static void note(mb_io *io, void *arg) {
  (void)io;
  record *r = arg;
  pthread_mutex_lock(&r->lock);
  r->thread = pthread_self();
  r->seen[r->n] = r->n;
  r->n++;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
}

TEST(requests_run_in_order_on_the_io_thread) {
  mb_node *n = mb_node_new(NULL);
  CHECK(n);
  n->keep_alive = 1;
  CHECK_EQ_INT(mb_node_start(n), 0);
  record r = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
  for (int i = 0; i < 100; i++) CHECK_EQ_INT(mb_io_call(n->io, note, &r), 0);
  pthread_mutex_lock(&r.lock);
  while (r.n < 100) pthread_cond_wait(&r.cond, &r.lock);
  pthread_mutex_unlock(&r.lock);
  for (int i = 0; i < 100; i++) CHECK_EQ_INT(r.seen[i], i);
  CHECK(!pthread_equal(r.thread, pthread_self()));
  mb_node_stop(n);
  mb_node_free(n);
}

TEST(stop_joins_after_running_queued_requests) {
  mb_node *n = mb_node_new(NULL);
  mb_io *io = mb_io_start(n, 0);
  CHECK(io);
  record r = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
  CHECK_EQ_INT(mb_io_call(io, note, &r), 0);
  pthread_mutex_lock(&r.lock);
  while (r.n < 1) pthread_cond_wait(&r.cond, &r.lock);
  pthread_mutex_unlock(&r.lock);
  mb_io_stop(io);
  mb_node_free(n);
}

TEST_MAIN(CHECK_CASE(requests_run_in_order_on_the_io_thread),
          CHECK_CASE(stop_joins_after_running_queued_requests))
