/* call: calls between processes — request, implied monitor, reply, deadlock
 * detection (see call.h). */
#include <stdio.h>
#include <string.h>
#include "call.h"
#include "node.h"
#include "log.h"

/* ---- deadlock detection ---- */

/* Hops walked before giving up: a chain this long that never comes back to the
 * caller is not reported (nor is a cycle it leads into that excludes the caller). */
#define WALK_MAX 1024
/* Pids named in the warning. */
#define CYCLE_SHOWN 16

/* The server process `pid` waits on in a call, or 0. */
static mb_pid waits_on(mb_node *n, mb_pid pid) {
  mb_proc *q = mb_proc_get(n, pid);
  if (!q) return 0;
  mb_pid to = atomic_load(&q->call_to);
  mb_proc_unref(q);
  return to;
}

/* "<0.5>" or "<0.5> (name)" appended at *len of buf (cap bytes). */
static void put_pid(mb_node *n, char *buf, size_t cap, size_t *len, mb_pid pid) {
  char name[64] = "";
  mb_proc *q = mb_proc_get(n, pid);
  if (q) {
    mb_lock_take(&q->meta);
    if (q->name) snprintf(name, sizeof name, " (%.*s)", (int)(q->name_len < 40 ? q->name_len : 40), q->name);
    mb_lock_give(&q->meta);
    mb_proc_unref(q);
  }
  if (*len < cap) {
    int k = snprintf(buf + *len, cap - *len, "%s<0.%llu>%s", *len ? " -> " : "", (unsigned long long)pid, name);
    if (k > 0) *len += (size_t)k;
  }
}

static void warn_cycle(mb_node *n, mb_pid me, const mb_pid *path, int hops) {
  char buf[1024];
  size_t len = 0;
  put_pid(n, buf, sizeof buf, &len, me);
  for (int i = 0; i < hops && i < CYCLE_SHOWN; i++) put_pid(n, buf, sizeof buf, &len, path[i]);
  if (hops > CYCLE_SHOWN && len < sizeof buf) len += (size_t)snprintf(buf + len, sizeof buf - len, " -> ...");
  put_pid(n, buf, sizeof buf, &len, me);
  if (len >= sizeof buf) len = sizeof buf - 1;
  mb_log(n, MB_LOG_WARNING, me, "deadlock: the call to <0.%llu> would close the cycle %.*s; it fails",
         (unsigned long long)path[0], (int)len, buf);
}

/* Does the chain of waits from server (referenced by the caller: its first hop
 * needs no lookup, the common call stops there) lead back to me? */
static int closes_cycle(mb_node *n, mb_pid me, mb_proc *s, mb_pid server) {
  mb_pid path[CYCLE_SHOWN];
  mb_pid cur = server;
  for (int hops = 0; hops < WALK_MAX; hops++) {
    if (hops < CYCLE_SHOWN) path[hops] = cur;
    mb_pid next = hops == 0 ? atomic_load(&s->call_to) : waits_on(n, cur);
    if (next == me) { warn_cycle(n, me, path, hops + 1); return 1; }
    if (next == 0 || next == server) return 0;
    cur = next;
  }
  return 0;
}

/* ---- the caller's side ---- */

int mb_call_begin(mb_proc *self, mb_pid server, mb_sig *req, mb_call *c) {
  mb_node *n = self->node;
  mb_pid me = atomic_load(&self->pid);
  if (server == me) { mb_sig_free(req); return MB_CALL_SELF; }
  mb_proc *s = mb_proc_get(n, server);
  if (!s || !mb_proc_alive(s)) {
    if (s) mb_proc_unref(s);
    mb_sig_free(req);
    return MB_CALL_NOPROC;
  }
  c->server = server;
  c->ref = mb_node_make_ref(n);
  c->mark = mb_recv_mark(self);   /* the reply and the DOWN come after it */
  if (mb_call_ref_add_server(self, c->ref, server) < 0) { mb_proc_unref(s); mb_sig_free(req); return MB_CALL_NOMEM; }
  atomic_store(&self->call_ref, c->ref);
  atomic_store(&self->call_to, server);   /* seq_cst, before the walk reads others' edges */
  if (closes_cycle(n, me, s, server)) {
    atomic_store(&self->call_to, 0);
    mb_call_ref_del(self, c->ref);
    mb_proc_unref(s);
    mb_sig_free(req);
    return MB_CALL_DEADLOCK;
  }
  req->kind = MB_SIG_CALL;
  req->from = me;
  req->ref = c->ref;
  mb_send_sig_to(s, req);
  mb_proc_unref(s);
  return MB_CALL_OK;
}

static int is_answer(const mb_sig *s, void *ud) {
  const mb_call *c = ud;
  return s->ref == c->ref && (s->kind == MB_SIG_REPLY || s->kind == MB_SIG_DOWN);
}

mb_sig *mb_call_poll(mb_proc *self, mb_call *c) {
  return mb_recv_select_after(self, c->mark, is_answer, c);
}

void mb_call_end(mb_proc *self, mb_call *c, const mb_sig *got) {
  atomic_store(&self->call_to, 0);
  /* A DOWN: the monitor ended with the server. A reply, taken now or drained
   * before (the ref is not live): the server dropped the monitor, or drain had
   * it dropped (proc.c). Else (a timeout) the server still monitors for us. */
  if (got || !mb_call_ref_del(self, c->ref)) return;
  mb_sig *d = mb_sig_new(MB_SIG_DEMONITOR, atomic_load(&self->pid), c->ref);
  if (d) mb_send_sig(self->node, c->server, d);
}

/* ---- the replier's side ---- */

/* The caller `to` no longer waits on us for call ref (if that is still its call). */
static void release_edge(mb_proc *caller, uint64_t ref) {
  if (atomic_load(&caller->call_ref) == ref) atomic_store(&caller->call_to, 0);
}

int mb_call_reply(mb_node *n, mb_proc *self, mb_pid to, uint64_t ref, mb_sig *reply) {
  reply->kind = MB_SIG_REPLY;
  reply->flags = 0;
  reply->ref = ref;
  reply->from = self ? atomic_load(&self->pid) : 0;
  /* the monitor goes only for the caller it is for: a `from` whose pid was
   * changed must not end another caller's */
  if (self && to && mb_monset_get(&self->monitored_by, ref) == to) {
    mb_lock_take(&self->meta);
    mb_monset_del(&self->monitored_by, ref, NULL);
    mb_lock_give(&self->meta);
    reply->flags = MB_SIGF_UNMONITORED;
  }
  mb_proc *c = mb_proc_get(n, to);
  if (!c) { mb_sig_free(reply); return MB_ENOPROC; }
  release_edge(c, ref);
  mb_send_sig_to(c, reply);
  mb_proc_unref(c);
  return 0;
}

/* The owner reads its own monitored_by without the lock: only it writes the set. */
static void on_ref(void *ud, uint64_t ref) {
  mb_proc *self = ud;
  mb_pid caller = mb_monset_get(&self->monitored_by, ref);
  mb_proc *c = caller ? mb_proc_get(self->node, caller) : NULL;
  if (!c) return;
  release_edge(c, ref);
  mb_proc_unref(c);
}

void mb_call_watch_refs(mb_proc *self, mb_buf *b) {
  if (!mb_call_watches_refs(self)) return;
  b->on_ref = on_ref;
  b->on_ref_ud = self;
}
