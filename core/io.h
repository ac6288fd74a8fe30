/* io: the node's I/O thread — one libuv loop; today it watches SIGINT/SIGTERM (the
 * node decides what a shutdown does) and runs requests other threads hand it
 * through a queue and a uv_async_t (sockets and file watches come next). */
#ifndef MB_IO_H
#define MB_IO_H

#include "node.h"

typedef void (*mb_io_fn)(mb_io *io, void *arg);

typedef struct uv_loop_s uv_loop_t;
/* [io] The loop, the node, and a slot for tcp.c's own state on this loop. */
uv_loop_t *mb_io_loop(mb_io *io);
mb_node *mb_io_node(mb_io *io);
void **mb_io_tcp(mb_io *io);

/* Start the loop thread. handle_signals: SIGINT/SIGTERM shut the node down. */
mb_io *mb_io_start(mb_node *n, int handle_signals);
/* Stop the loop and join its thread. */
void mb_io_stop(mb_io *io);
/* Run fn(io, arg) on the I/O thread. 0, or MB_ENOMEM / MB_ESTATE. */
int mb_io_call(mb_io *io, mb_io_fn fn, void *arg);

#endif
