/* native: processes whose body is C (supervisors, gen_server loops) — no Lua state.
 * A native process is linkable, monitorable, registrable and listed like any
 * other; its handler runs on a scheduler thread when signals reach its inbox.
 * Core-internal for now (not in moonbeam.h). */
#ifndef MB_NATIVE_H
#define MB_NATIVE_H

#include "proc.h"

typedef struct mb_native_ops {
  const char *name;   /* shown as its module by mb.info; NULL = "native" */
  /* [owner] Optional: the first run, before any signal is handled. */
  void (*init)(mb_proc *p, void *data);
  /* [owner] Messages (or, trapping, EXITs; or DOWNs) are in its inbox, or a wait
   * timer it armed is due: take them with mb_native_next. What it leaves stays there; it is called again when more
   * arrive. It should take a bounded number and return (no preemption in C). */
  void (*handle)(mb_proc *p, void *data);
  /* Exactly once, when the process ends (reason: its exit reason, valid during the
   * call), on the thread that ends it, BEFORE its links and monitors are told: who
   * sees it dead knows data is released. Also for a process that never ran (the
   * node freed while it waited). May be NULL. */
  void (*destroy)(void *data, const mb_sig *reason);
} mb_native_ops;

/* Spawn a native process running ops on data (ops must outlive it). link_to (may
 * be NULL) is the calling process, run on this thread: it is linked with the new
 * one. 0 and *out, or MB_ENOMEM / MB_ELIMIT / MB_ESTATE (node stopping): then
 * nothing of ops was called and data stays the caller's. Any thread. */
int mb_native_spawn(mb_node *n, const mb_native_ops *ops, void *data, mb_proc *link_to, mb_pid *out);
/* The same, its start being link_to's call `ref` (call.h): link_to monitors it
 * with that ref (a DOWN if it ends before it answers). */
int mb_native_spawn_call(mb_node *n, const mb_native_ops *ops, void *data, mb_proc *link_to, uint64_t ref,
                         mb_pid *out);

/* [owner] The calls below are for the native process p itself, from its handler. */
void mb_native_trap_exit(mb_proc *p, int on);
/* End with reason (an EXIT-shaped signal, taken: mb_sig_string(MB_SIG_EXIT, 0, 0,
 * "why"), mb_sig_static, or a writer's buffer through mb_sig_from_buf) once the
 * handler returns. Exit signals to others: mb_proc_exit_signal(p, to, reason);
 * links and monitors: mb_proc_link, mb_proc_monitor. */
void mb_native_exit(mb_proc *p, mb_sig *reason);
/* The next message of its inbox in arrival order (kind MB_SIG_MSG, MB_SIG_EXIT when
 * trapping, MB_SIG_DOWN), removed; the caller frees it (mb_sig_free). NULL when
 * none is left or the process must end. */
mb_sig *mb_native_next(mb_proc *p);
/* Send msg (taken; its payload an encoding, e.g. mb_sig_from_buf of a writer's
 * buffer made with MB_SIG_HDR reserved) to `to` as a message from p. 0 or MB_ENOPROC. */
int mb_native_send(mb_proc *p, mb_pid to, mb_sig *msg);

/* Hooks for the core. The scheduler runs a native process with mb_native_run: 1
 * if it lives on (park it), 0 if it ended (p may already be reused: touch it no
 * more). Node teardown releases one that never finished with mb_native_reap. */
int mb_native_run(mb_proc *p);
void mb_native_reap(mb_proc *p);

#endif
