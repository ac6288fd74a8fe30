/* info: a process's figures copied out under its meta lock (see info.h). */
#include <string.h>
#include "info.h"

const char *mb_status_name(int status) {
  switch (status) {
  case MB_PS_RUNNING: return "running";
  case MB_PS_WAITING: return "waiting";
  default: return "runnable";
  }
}

long mb_snapshot_take(mb_node *n, mb_pid pid, mb_snapshot *s, size_t room) {
  mb_proc *q = mb_proc_get(n, pid);
  if (q && !mb_proc_alive(q)) { mb_proc_unref(q); q = NULL; }
  if (!q) return -1;
  mb_lock_take(&q->meta);
  size_t nlen = q->name ? q->name_len : 0, mlen = q->module ? strlen(q->module) : 0;
  size_t need = sizeof(mb_pid) * (size_t)(q->links.n + q->monitors.n) + nlen + mlen;
  if (need > room) {
    mb_lock_give(&q->meta);
    mb_proc_unref(q);
    return (long)need;
  }
  mb_pid *pids = (mb_pid *)s->bytes;
  s->nlinks = mb_pidset_copy(&q->links, pids);
  s->nmonitors = mb_monset_pids(&q->monitors, pids + s->nlinks);
  char *text = (char *)(pids + s->nlinks + s->nmonitors);
  s->name_len = q->name ? nlen : (size_t)-1;
  if (q->name) memcpy(text, q->name, nlen);
  s->module_len = q->module ? mlen : (size_t)-1;
  if (q->module) memcpy(text + nlen, q->module, mlen);
  s->trap = q->trap_exit;
  mb_lock_give(&q->meta);
  s->status = atomic_load(&q->state);
  s->memory = atomic_load(&q->heap_bytes) + atomic_load(&q->queue_bytes) + (int64_t)sizeof(mb_proc);
  int64_t qlen = atomic_load(&q->mq_count) - atomic_load(&q->mq_ctrl) + atomic_load(&q->inbox_len);
  s->queue_len = qlen < 0 ? 0 : qlen;
  s->reductions = atomic_load(&q->reductions) + atomic_load(&q->ticks);
  mb_proc_unref(q);
  return 0;
}
