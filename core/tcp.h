/* tcp: sockets (listeners and connections) on the node's libuv thread, as handles
 * owned by processes (handle.h). No Lua here: bindings/tcp.c is the face.
 *
 * A socket is one mb_sock shared by the I/O thread (its uv_tcp_t, reading,
 * writing) and the processes using it (under its lock: the input buffer, the
 * waiters, the counters). Blocking calls never block a thread: a process
 * registers a waiter (its pid and a live call ref, receive.h), yields, and the
 * I/O thread wakes it with a REPLY carrying that ref; the process then looks
 * again. Requests go to the I/O thread through mb_io_call, each holding a
 * reference, so a socket is freed only when its owner has let it go, the I/O
 * thread has closed its uv handle, and no request or holder is left. */
#ifndef MB_TCP_H
#define MB_TCP_H

#include <stddef.h>
#include <stdint.h>
#include "proc.h"

/* Handle kinds (handle.h). */
enum { MB_HK_TCP_LISTENER = 1, MB_HK_TCP_CONN = 2 };

enum { MB_PACKET_RAW, MB_PACKET_LINE, MB_PACKET_4 };
enum { MB_ACTIVE_OFF, MB_ACTIVE_ON, MB_ACTIVE_ONCE };

#define MB_TCP_MAX_PACKET_DEFAULT (16u << 20)
#define MB_TCP_HIGH_WATER (1u << 20)        /* unsent bytes above which send waits */
#define MB_TCP_ACTIVE_LIMIT (1u << 20)      /* owner's queued bytes above which an active socket pauses */

typedef struct mb_tcp_opts {
  int packet;
  size_t max_packet;
  int backlog;
} mb_tcp_opts;

/* Errors are libuv's (negative errno) codes and these; never MB_E* (they overlap). */
#define MB_TCP_ECLOSED  (-200001)   /* "closed": closed here, or the peer closed */
#define MB_TCP_ETOOBIG  (-200002)   /* "packet too large" */
#define MB_TCP_EACTIVE  (-200003)   /* "active": recv on a socket in active mode */
#define MB_TCP_ENOTOWNER (-200004)  /* "not_owner" */
#define MB_TCP_ENOMEM   (-200005)   /* "enomem" */
#define MB_TCP_ETIMEOUT (-200006)   /* "timeout" */
#define MB_TCP_ENOPROC  (-200007)   /* "noproc": set_owner to a process that is not alive */

/* The stable name of an error: "closed", "timeout", "econnrefused", ... (libuv's
 * name in lower case). buf (32 bytes) may be used. */
const char *mb_tcp_strerror(int err, char *buf);

typedef struct mb_sock mb_sock;

/* ---- opening: the I/O thread answers with a REPLY(ref) ---- */

/* Ask the I/O thread to listen on (or connect to) host:port for `owner`, which
 * has made `ref` live (mb_call_ref_add) and waits for the REPLY. The new socket
 * is already on the owner's resource list and in the handle table when the
 * REPLY goes; if the owner has ended, it is closed. 0, or MB_ENOMEM / MB_ESTATE. */
int mb_tcp_open(mb_node *n, mb_pid owner, uint64_t ref, int listen, const char *host, int port,
                const mb_tcp_opts *o);
/* The answer in such a REPLY: 0 and *id, or an error. */
int mb_tcp_answer(const mb_sig *reply, uint64_t *id);

/* ---- using a socket ---- */

/* The socket of handle id if it is of `kind`, held (release it), or NULL
 * (closed, stale, another kind). */
mb_sock *mb_tcp_hold(mb_node *n, uint64_t id, int kind);
void mb_tcp_release(mb_sock *s);
mb_pid mb_tcp_owner(mb_sock *s);

/* The next frame for its owner `me`: 1 and *data and *len (*data is NULL for an
 * empty frame; with *owned the caller frees it, else it is this thread's
 * scratch, good until the next call); or, when none is ready, 0 after
 * registering (me, ref) to be woken (ref 0: register nothing); or an error
 * (closed or failed socket, MB_TCP_EACTIVE, MB_TCP_ENOTOWNER). */
int mb_tcp_recv(mb_node *n, mb_sock *s, mb_pid me, uint64_t ref, char **data, size_t *len, int *owned);
/* A connection accepted by listener l for `self`: 1 and *id (it is self's, on
 * its list); 0 after registering (self, ref) as a waiter; or an error. */
int mb_tcp_accept(mb_node *n, mb_sock *l, mb_proc *self, uint64_t ref, uint64_t *id);
/* Queue len bytes (with a 4-byte length first in packet 4 mode) for writing:
 * 1 (queued), 0 (queued, but the unsent bytes are over the high-water mark:
 * (me, ref) is registered, unless ref is 0, and will be woken when they
 * drain), or an error. */
int mb_tcp_send(mb_node *n, mb_sock *s, mb_pid me, uint64_t ref, const char *data, size_t len);
/* After a wake: 1 if the unsent bytes are below the mark, an error if the
 * socket closed or failed meanwhile, else 0 after registering (me, ref) again
 * (ref 0: registering nothing). */
int mb_tcp_send_drained(mb_sock *s, mb_pid me, uint64_t ref);
/* Forget (me, ref) as a waiter (a timeout, an ending process). */
void mb_tcp_unwait(mb_sock *s, mb_pid me, uint64_t ref);

/* [owner] */
int mb_tcp_set_active(mb_node *n, mb_sock *s, mb_pid me, int mode);
int mb_tcp_set_owner(mb_node *n, mb_sock *s, mb_proc *self, mb_pid to);
/* Close it (idempotent from the Lua side: the handle is gone afterwards).
 * Takes over the caller's hold. */
int mb_tcp_close(mb_node *n, mb_sock *s, mb_proc *self);

/* The addresses, fixed when the socket opened: "127.0.0.1" / "::1" and a port. */
void mb_tcp_peer(mb_sock *s, const char **host, int *port);
void mb_tcp_local(mb_sock *s, const char **host, int *port);

/* ---- the I/O thread (io.c) ---- */
typedef struct mb_io mb_io;
/* [io] Close every socket still open: the loop is stopping. */
void mb_tcp_io_close_all(mb_io *io);

#endif
