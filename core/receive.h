/* receive: receiving in C, for the core's own blocking calls (gen_server.call):
 * selects over a process's inbox with a C predicate, receive marks, and the live
 * call refs that let the core drop a reply that comes too late.
 *
 * Every function here is [owner]: only the thread running p may call it (it pops
 * p's mailbox). Not while a Lua selective receive walks the inbox (p->selecting):
 * a binding raises first, as receive does. */
#ifndef MB_RECEIVE_H
#define MB_RECEIVE_H

#include "proc.h"

/* Accept (1) or skip (0) a signal in the inbox: a MSG, DOWN, EXIT or REPLY. It
 * must not receive, drain or free anything. */
typedef int (*mb_recv_pred)(const mb_sig *s, void *ud);

/* A position in the inbox: the messages drained after it was taken. */
typedef uint32_t mb_recv_mark_t;

/* Drain p's mailbox, then unlink and return the first inbox signal pred accepts
 * (the caller owns it: mb_sig_free), or NULL. Nothing is decoded; the others stay
 * in order. Draining may doom p: check p->doom as after any drain. */
mb_sig *mb_recv_select(mb_proc *p, mb_recv_pred pred, void *ud);

/* Drain, then return a mark: a select after it sees only what is drained later.
 * A call takes it first, then monitors, adds its ref and sends, so that its
 * reply and DOWN come after the mark and the older backlog is never scanned. The
 * latest mark starts its select in O(1) (mb_proc_take keeps its place valid);
 * an older one is found by walking the stamps. A mark is for one wait: it is
 * correct while fewer than 2^31 messages arrive between it and its select. */
mb_recv_mark_t mb_recv_mark(mb_proc *p);
mb_sig *mb_recv_select_after(mb_proc *p, mb_recv_mark_t mark, mb_recv_pred pred, void *ud);

/* Live call refs. A REPLY (mb_sig ref = the call's ref) reaches the inbox only if
 * its ref is live when p drains it, and then the ref stops being live: one reply
 * per call. Any other REPLY is freed at drain, never queued nor counted.
 * add: 1, 0 (already live, or ref 0) or -1 (no memory: the call must fail).
 * del, when the call ends without its reply (DOWN, timeout): 1 if the ref was
 * live (a reply still on its way will be dropped), else 0 (and a reply already
 * queued for it is freed). After taking the reply there is nothing to delete. */
int mb_call_ref_add(mb_proc *p, uint64_t ref);
/* add for a call whose server p monitors meanwhile (call.c): drain drops that
 * monitor with a DEMONITOR when a reply the server did not send ends the call,
 * and p's end drops the monitors of its live calls. */
int mb_call_ref_add_server(mb_proc *p, uint64_t ref, mb_pid server);
int mb_call_ref_del(mb_proc *p, uint64_t ref);

/* An external process's thread (the host, an embedder) blocks until a signal is
 * pushed to it, or until the deadline (mb_now_ns; 0 = none). 0, or MB_ETIMEOUT. */
int mb_recv_wait_external(mb_proc *p, uint64_t deadline);

#endif
