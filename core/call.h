/* call: the core of gen_server.call for every kind of caller (a Lua process, the
 * host's thread, C): the request, the monitor it implies for its length, its
 * reply, and deadlock detection.
 *
 * Protocol. The caller sends a CALL signal (ref = a fresh ref, also made live with
 * mb_call_ref_add). Draining it makes the caller a monitor of the server (ref ->
 * caller in its monitored_by), so the caller gets a DOWN with that ref if the
 * server ends first, and a CALL that reaches a dead server bounces as that DOWN.
 * The replier sends a REPLY with the ref; the server itself drops the monitor as
 * it replies (MB_SIGF_UNMONITORED), and for a reply from anyone else the caller
 * sends the DEMONITOR as it drains the reply. A call that times out, or whose
 * caller ends while it waits, sends it too. Two signals per call, nothing to
 * clean up in the common case.
 *
 * Deadlocks. While it waits, a caller's call_to names its server. A call walks the
 * chain server -> its call_to -> ... and fails at once if the chain comes back to
 * the caller. Edges are published sequentially consistent before the walk, so of
 * the calls that close a cycle the last one sees every edge. A server lets go of a
 * caller's edge when it replies and when it sends the caller's ref in a message
 * (it handed `from` on): a delegated reply is never a false alarm. */
#ifndef MB_CALL_H
#define MB_CALL_H

#include "proc.h"
#include "receive.h"

typedef struct mb_call {
  mb_pid server;
  uint64_t ref;
  mb_recv_mark_t mark;
} mb_call;

enum { MB_CALL_OK, MB_CALL_NOPROC, MB_CALL_SELF, MB_CALL_DEADLOCK, MB_CALL_NOMEM };

/* [owner] Send req (the encoded request, taken) to server as a call from self. Flags
 * of req are kept (MB_SIGF_SYSTEM). MB_CALL_OK: under way, c filled: poll it, end
 * it. Otherwise the call failed and nothing is left to end. MB_CALL_DEADLOCK logs
 * one warning naming the cycle. */
int mb_call_begin(mb_proc *self, mb_pid server, mb_sig *req, mb_call *c);
/* [owner] The call's REPLY or DOWN, taken off the inbox (the caller frees it), or NULL. */
mb_sig *mb_call_poll(mb_proc *self, mb_call *c);
/* [owner] The call is over: got is what poll returned (not yet freed), or NULL
 * (timed out, or abandoned): a reply still on its way will be dropped. */
void mb_call_end(mb_proc *self, mb_call *c, const mb_sig *got);

/* Reply to the call `ref` of process `to` with reply (an encoded value, taken).
 * self is the process replying (NULL: none). 0 or MB_ENOPROC. Any thread; self's
 * own fields are touched only by its owner. */
int mb_call_reply(mb_node *n, mb_proc *self, mb_pid to, uint64_t ref, mb_sig *reply);

/* [owner] Encoding a message from self into b: any ref of a call self holds makes
 * that caller's edge go (see above). A no-op for a process holding no monitor. */
void mb_call_watch_refs(mb_proc *self, mb_buf *b);
/* [owner] Would mb_call_watch_refs watch anything (self is monitored by someone)? */
static inline int mb_call_watches_refs(const mb_proc *self) { return self && self->monitored_by.n != 0; }

#endif
