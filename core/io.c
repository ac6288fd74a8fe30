/* io: the libuv thread. Requests are closures queued under a mutex and run when the
 * uv_async_t fires. It watches SIGINT/SIGTERM and runs the grace timer; the node
 * decides what a shutdown does: the supervision trees stop first, top-down
 * (mb_node_shutdown_trees, polled until none is left), then exit "shutdown" to
 * every process (mb_node_shutdown), then "kill" to what is left after 5 s. A
 * second signal kills at once. */
#include <signal.h>
#include <stdlib.h>
#include <uv.h>
#include "io.h"
#include "log.h"
#include "tcp.h"

#define KILL_AFTER_MS 5000
#define TREES_POLL_MS 10

typedef struct req { mb_io_fn fn; void *arg; struct req *next; } req;

struct mb_io {
  mb_node *node;
  uv_loop_t loop;
  uv_async_t async;
  uv_signal_t sigint, sigterm;
  uv_timer_t kill_timer;
  uv_timer_t trees_timer;   /* polls until the supervision trees have stopped */
  int trees_done;
  int handle_signals, shutting_down;
  pthread_mutex_t lock;
  req *head, *tail;
  int closing;
  uv_thread_t thread;
  void *tcp;                /* tcp.c's state on this loop (mb_io_tcp) */
};

uv_loop_t *mb_io_loop(mb_io *io) { return &io->loop; }
mb_node *mb_io_node(mb_io *io) { return io->node; }
void **mb_io_tcp(mb_io *io) { return &io->tcp; }

static void run_requests(uv_async_t *a) {
  mb_io *io = a->data;
  pthread_mutex_lock(&io->lock);
  req *r = io->head;
  io->head = io->tail = NULL;
  int closing = io->closing;
  pthread_mutex_unlock(&io->lock);
  while (r) {
    req *next = r->next;
    r->fn(io, r->arg);
    free(r);
    r = next;
  }
  if (closing) {
    mb_tcp_io_close_all(io);
    uv_close((uv_handle_t *)&io->async, NULL);
    if (io->handle_signals) {
      uv_close((uv_handle_t *)&io->sigint, NULL);
      uv_close((uv_handle_t *)&io->sigterm, NULL);
      uv_close((uv_handle_t *)&io->kill_timer, NULL);
      uv_close((uv_handle_t *)&io->trees_timer, NULL);
    }
  }
}

static void on_kill_timer(uv_timer_t *t) {
  mb_io *io = t->data;
  mb_node_shutdown(io->node, 1);
}

/* The rest of the processes, once the supervision trees have stopped. */
static void shutdown_rest(mb_io *io) {
  io->trees_done = 1;
  mb_node_shutdown(io->node, 0);
  uv_timer_start(&io->kill_timer, on_kill_timer, KILL_AFTER_MS, 0);
}

static void on_trees_timer(uv_timer_t *t) {
  mb_io *io = t->data;
  if (io->trees_done || mb_node_shutdown_trees(io->node, 0) > 0) return;
  uv_timer_stop(t);
  shutdown_rest(io);
}

/* The signals and the grace timer live here; what a shutdown does is the node's. */
static void on_signal(uv_signal_t *h, int signum) {
  mb_io *io = h->data;
  mb_log(io->node, MB_LOG_INFO, 0, "received %s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
  if (io->shutting_down) { mb_node_shutdown(io->node, 1); return; }
  io->shutting_down = 1;
  if (mb_node_shutdown_trees(io->node, 1) > 0) uv_timer_start(&io->trees_timer, on_trees_timer, TREES_POLL_MS, TREES_POLL_MS);
  else shutdown_rest(io);
}

static void loop_main(void *arg) {
  mb_io *io = arg;
  /* the preemption signals are aimed at scheduler threads only; block the rest here */
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  uv_run(&io->loop, UV_RUN_DEFAULT);
}

mb_io *mb_io_start(mb_node *n, int handle_signals) {
  mb_io *io = calloc(1, sizeof *io);
  if (!io) return NULL;
  io->node = n;
  io->handle_signals = handle_signals;
  pthread_mutex_init(&io->lock, NULL);
  if (uv_loop_init(&io->loop) != 0) { free(io); return NULL; }
  uv_async_init(&io->loop, &io->async, run_requests);
  io->async.data = io;
  if (handle_signals) {
    uv_signal_init(&io->loop, &io->sigint);
    uv_signal_init(&io->loop, &io->sigterm);
    uv_timer_init(&io->loop, &io->kill_timer);
    uv_timer_init(&io->loop, &io->trees_timer);
    io->sigint.data = io->sigterm.data = io->kill_timer.data = io->trees_timer.data = io;
    uv_signal_start(&io->sigint, on_signal, SIGINT);
    uv_signal_start(&io->sigterm, on_signal, SIGTERM);
  }
  if (uv_thread_create(&io->thread, loop_main, io) != 0) {
    uv_loop_close(&io->loop);
    free(io);
    return NULL;
  }
  return io;
}

int mb_io_call(mb_io *io, mb_io_fn fn, void *arg) {
  req *r = malloc(sizeof *r);
  if (!r) return MB_ENOMEM;
  r->fn = fn;
  r->arg = arg;
  r->next = NULL;
  pthread_mutex_lock(&io->lock);
  if (io->closing) { pthread_mutex_unlock(&io->lock); free(r); return MB_ESTATE; }
  if (io->tail) io->tail->next = r;
  else io->head = r;
  io->tail = r;
  pthread_mutex_unlock(&io->lock);
  uv_async_send(&io->async);
  return 0;
}

void mb_io_stop(mb_io *io) {
  pthread_mutex_lock(&io->lock);
  io->closing = 1;
  pthread_mutex_unlock(&io->lock);
  uv_async_send(&io->async);
  uv_thread_join(&io->thread);
  uv_loop_close(&io->loop);
  pthread_mutex_destroy(&io->lock);
  free(io->tcp);
  free(io);
}
