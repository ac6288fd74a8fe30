/* io: the node's I/O thread — one libuv loop that owns sockets, file watches and
 * signals. Other threads hand it work through a queue and a uv_async_t. */
#ifndef MB_IO_H
#define MB_IO_H

#include "node.h"

typedef void (*mb_io_fn)(mb_io *io, void *arg);

/* Start the loop thread. handle_signals: SIGINT/SIGTERM shut the node down. */
mb_io *mb_io_start(mb_node *n, int handle_signals);
/* Stop the loop and join its thread. */
void mb_io_stop(mb_io *io);
/* Run fn(io, arg) on the I/O thread. 0, or MB_ENOMEM / MB_ESTATE. */
int mb_io_call(mb_io *io, mb_io_fn fn, void *arg);
/* The loop (for code running on the I/O thread only). */
struct uv_loop_s *mb_io_loop(mb_io *io);

#endif
