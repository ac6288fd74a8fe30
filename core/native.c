/* native: processes with a C body (see native.h) — creation, their runs on a
 * scheduler, their inbox from C, and their end (destroy, then links and monitors). */
#include <stdlib.h>
#include <string.h>
#include "native.h"
#include "node.h"
#include "scheduler.h"

int mb_native_spawn(mb_node *n, const mb_native_ops *ops, void *data, mb_proc *link_to, mb_pid *out) {
  return mb_native_spawn_call(n, ops, data, link_to, 0, out);
}

int mb_native_spawn_call(mb_node *n, const mb_native_ops *ops, void *data, mb_proc *link_to, uint64_t ref,
                         mb_pid *out) {
  *out = 0;
  if (atomic_load(&n->state) >= MB_NODE_STOPPING) return MB_ESTATE;
  mb_proc *p = mb_proc_new(n, MB_PK_NATIVE);
  if (!p) return MB_ENOMEM;
  /* everything another thread may read is set before the pid is published */
  p->module = strdup(ops->name ? ops->name : "native");
  if (!p->module) { mb_proc_discard(p); return MB_ENOMEM; }
  p->native_ops = ops;
  p->native_data = data;
  if (mb_proc_publish(p) != 0) return MB_ELIMIT;   /* it is gone, nothing called */
  mb_pid pid = atomic_load(&p->pid);
  /* it has not run: the LINK is the first signal it drains */
  if (link_to) mb_proc_link(link_to, pid);
  if (ref && link_to) {   /* its start is link_to's call (call.h): link_to monitors it */
    mb_lock_take(&p->meta);
    mb_monset_add(&p->monitored_by, ref, atomic_load(&link_to->pid));
    mb_lock_give(&p->meta);
  }
  /* a stop that listed the processes before this one existed must still end it */
  if (atomic_load(&n->state) >= MB_NODE_STOPPING) p->doom = mb_sig_static("killed");
  *out = pid;
  mb_sched_ready(n, p, ref != 0);   /* a call's start: link_to waits for it */
  return 0;
}

void mb_native_trap_exit(mb_proc *p, int on) {
  mb_lock_take(&p->meta);   /* where exit signals decide whether they are fatal */
  p->trap_exit = on != 0;
  mb_lock_give(&p->meta);
}

void mb_native_exit(mb_proc *p, mb_sig *reason) {
  if (!(reason->flags & MB_SIGF_STATIC)) reason->kind = MB_SIG_EXIT;   /* statics are shared, and EXITs */
  if (p->doom) mb_sig_free(reason);   /* the first reason wins, as in drain */
  else p->doom = reason;
}

mb_sig *mb_native_next(mb_proc *p) {
  if (!p->inbox && !p->doom) mb_proc_drain(p);
  if (p->doom || !p->inbox) return NULL;
  mb_sig *m = p->inbox;
  mb_proc_take(p, NULL, m);
  m->next = NULL;
  return m;
}

int mb_native_send(mb_proc *p, mb_pid to, mb_sig *msg) {
  msg->kind = MB_SIG_MSG;
  msg->flags = 0;
  msg->from = atomic_load(&p->pid);
  return mb_send_sig(p->node, to, msg);
}

/* Release the data exactly once. */
static void destroy(mb_proc *p, const mb_sig *reason) {
  const mb_native_ops *ops = p->native_ops;
  p->native_ops = NULL;
  if (ops && ops->destroy) ops->destroy(p->native_data, reason);
  p->native_data = NULL;
}

int mb_native_run(mb_proc *p) {
  const mb_native_ops *ops = p->native_ops;
  mb_proc_reduce(p, 1);
  mb_proc_drain(p);
  if (!p->doom && !p->started) {
    p->started = 1;
    if (ops->init) ops->init(p, p->native_data);
  }
  /* a wake-up: signals came, or a wait timer it armed (mb_sched_arm_wait) is due */
  if (!p->doom && (p->inbox || p->wait_timer) && ops->handle) ops->handle(p, p->native_data);
  if (!p->doom) return 1;
  mb_sig *reason = p->doom;
  destroy(p, reason);
  mb_proc_finish(p, reason);
  return 0;
}

void mb_native_reap(mb_proc *p) {
  destroy(p, mb_sig_static("killed"));
}
