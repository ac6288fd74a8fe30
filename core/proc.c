/* proc: process lifecycle and the signal protocol between processes.
 *
 * Every interaction between two processes is a signal pushed on the target's
 * mailbox, so signals from one sender arrive in the order sent. The target acts
 * on control signals when it drains its mailbox (mb_proc_drain), on its own
 * thread: links, monitors and exit signals change only the owner's sets. A signal
 * to a process that is gone is answered by the protocol: a LINK with an exit
 * "noproc", a MONITOR with a DOWN "noproc". */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <lauxlib.h>
#include "proc.h"
#include "node.h"
#include "ptab.h"
#include "registry.h"
#include "scheduler.h"
#include "code.h"
#include "log.h"

/* ---- sets ---- */

int mb_pidset_has(const mb_pidset *s, mb_pid pid) {
  for (int i = 0; i < s->n; i++) if (s->v[i] == pid) return 1;
  return 0;
}

int mb_pidset_add(mb_pidset *s, mb_pid pid) {
  if (mb_pidset_has(s, pid)) return 0;
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 4;
    mb_pid *v = realloc(s->v, sizeof *v * cap);
    if (!v) return -1;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = pid;
  return 1;
}

int mb_pidset_del(mb_pidset *s, mb_pid pid) {
  for (int i = 0; i < s->n; i++)
    if (s->v[i] == pid) { s->v[i] = s->v[--s->n]; return 1; }
  return 0;
}

int mb_monset_add(mb_monset *s, uint64_t ref, mb_pid pid) {
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 4;
    uint64_t *r = realloc(s->ref, sizeof *r * cap);
    if (!r) return -1;
    s->ref = r;
    mb_pid *p = realloc(s->pid, sizeof *p * cap);
    if (!p) return -1;
    s->pid = p;
    s->cap = cap;
  }
  s->ref[s->n] = ref;
  s->pid[s->n++] = pid;
  return 1;
}

int mb_monset_del(mb_monset *s, uint64_t ref, mb_pid *pid) {
  for (int i = 0; i < s->n; i++)
    if (s->ref[i] == ref) {
      if (pid) *pid = s->pid[i];
      s->n--;
      s->ref[i] = s->ref[s->n];
      s->pid[i] = s->pid[s->n];
      return 1;
    }
  return 0;
}

static int monset_has(const mb_monset *s, uint64_t ref) {
  for (int i = 0; i < s->n; i++) if (s->ref[i] == ref) return 1;
  return 0;
}

/* ---- signals ---- */

mb_sig *mb_sig_new(int kind, mb_pid from, uint64_t ref) {
  mb_sig *s = malloc(MB_SIG_HDR);
  if (!s) return NULL;
  memset(s, 0, MB_SIG_HDR);
  s->kind = (uint8_t)kind;
  s->from = from;
  s->ref = ref;
  s->lref = LUA_NOREF;
  return s;
}

mb_sig *mb_sig_from_buf(mb_buf *b, int kind, mb_pid from, uint64_t ref) {
  mb_sig *s = (mb_sig *)b->data;
  memset(s, 0, MB_SIG_HDR);
  s->kind = (uint8_t)kind;
  s->from = from;
  s->ref = ref;
  s->lref = LUA_NOREF;
  s->len = b->len - MB_SIG_HDR;
  b->data = NULL;
  b->len = b->cap = 0;
  return s;
}

mb_sig *mb_sig_string(int kind, mb_pid from, uint64_t ref, const char *str) {
  mb_buf b;
  if (mb_buf_init(&b, MB_SIG_HDR, 0) != 0) return NULL;
  if (mb_encode_string(&b, str, strlen(str)) != 0) { mb_buf_free(&b); return NULL; }
  return mb_sig_from_buf(&b, kind, from, ref);
}

mb_sig *mb_sig_copy(const mb_sig *src, int kind, mb_pid from, uint64_t ref) {
  mb_sig *s = malloc(MB_SIG_HDR + src->len);
  if (!s) return NULL;
  memset(s, 0, MB_SIG_HDR);
  s->kind = (uint8_t)kind;
  s->from = from;
  s->ref = ref;
  s->lref = LUA_NOREF;
  s->len = src->len;
  memcpy(s->data, src->data, src->len);
  return s;
}

void mb_sig_free(mb_sig *s) { free(s); }

static int counts_as_message(int kind) {
  return kind == MB_SIG_MSG || kind == MB_SIG_DOWN || kind == MB_SIG_EXIT;
}

/* ---- lookup and references ---- */

mb_proc *mb_proc_get(mb_node *n, mb_pid pid) {
  mb_proc *p = mb_ptab_peek(n->ptab, pid);
  if (!p) return NULL;
  int r = atomic_load(&p->refs);
  do {
    if (r <= 0) return NULL;
  } while (!atomic_compare_exchange_weak(&p->refs, &r, r + 1));
  if (atomic_load(&p->pid) != pid || atomic_load(&p->state) == MB_PS_DEAD) {
    mb_proc_unref(p);
    return NULL;
  }
  return p;
}

static void bounce(mb_node *n, mb_pid dead, mb_sig *s);

static void proc_recycle(mb_proc *p) {
  mb_node *n = p->node;
  mb_pid pid = atomic_load(&p->pid);
  mb_qnode *q;
  while ((q = mb_mpsc_pop(&p->mq)) != NULL) bounce(n, pid, (mb_sig *)q);
  free(p->links.v);
  free(p->monitors.ref); free(p->monitors.pid);
  free(p->monitored_by.ref); free(p->monitored_by.pid);
  free(p->name);
  free(p->module);
  free(p->fn_code);
  if (p->args) mb_sig_free(p->args);
  if (p->doom) mb_sig_free(p->doom);
  if (p->code) mb_code_unref(p->code);
  for (mb_sig *m = p->taken, *next; m; m = next) { next = m->next; mb_sig_free(m); }
  pthread_mutex_t meta = p->meta, el = p->ext_lock;
  pthread_cond_t ec = p->ext_cond;
  memset((char *)p + offsetof(mb_proc, state), 0, sizeof *p - offsetof(mb_proc, state));
  atomic_store(&p->pid, 0);
  p->meta = meta; p->ext_lock = el; p->ext_cond = ec;
  mb_ptab_pool_put(n->ptab, p);
}

void mb_proc_unref(mb_proc *p) {
  if (atomic_fetch_sub(&p->refs, 1) == 1) proc_recycle(p);
}

mb_proc *mb_proc_alloc(mb_node *n, int kind) {
  mb_proc *p = mb_ptab_pool_get(n->ptab);
  if (!p) return NULL;
  p->node = n;
  p->kind = kind;
  mb_mpsc_init(&p->mq);
  atomic_store(&p->state, MB_PS_RUNNABLE);
  /* the table's reference, taken before the pid is published so that a lookup
   * never finds a live pid it cannot reference; the pid was 0 until now, so a
   * stale reader of a recycled struct does not match it */
  atomic_store(&p->refs, 1);
  if (mb_ptab_insert(n->ptab, p) != 0) {
    atomic_store(&p->refs, 0);
    mb_ptab_pool_put(n->ptab, p);
    return NULL;
  }
  if (kind != MB_PK_EXTERNAL) atomic_fetch_add(&n->live, 1);
  return p;
}

/* ---- delivery ---- */

void mb_proc_wake(mb_proc *p) {
  int st = MB_PS_WAITING;
  if (atomic_load(&p->state) != MB_PS_WAITING ||
      !atomic_compare_exchange_strong(&p->state, &st, MB_PS_RUNNABLE))
    return;
  if (p->kind == MB_PK_EXTERNAL) {
    pthread_mutex_lock(&p->ext_lock);
    pthread_cond_signal(&p->ext_cond);
    pthread_mutex_unlock(&p->ext_lock);
  } else {
    mb_sched_ready(p->node, p, 1);
  }
}

/* Push s on p's mailbox. The count is raised after the push: a process about to
 * wait stores its state, then reads the count; the sender raises the count, then
 * reads the state (both sequentially consistent), so one of them sees the other. */
static void push(mb_proc *p, mb_sig *s) {
  if (counts_as_message(s->kind))
    atomic_fetch_add_explicit(&p->queue_bytes, (int64_t)s->len, memory_order_relaxed);
  mb_mpsc_push(&p->mq, &s->q);
  atomic_fetch_add(&p->mq_count, 1);
}

int mb_send_sig_to(mb_proc *to, mb_sig *s) {
  push(to, s);
  if (atomic_load_explicit(&to->state, memory_order_relaxed) == MB_PS_RUNNING)
    mb_sched_poke(to->node);   /* it may be a loop only preemption can stop */
  else
    mb_proc_wake(to);
  return 0;
}

int mb_send_sig(mb_node *n, mb_pid to, mb_sig *s) {
  mb_proc *p = mb_proc_get(n, to);
  if (!p) { mb_sig_free(s); return MB_ENOPROC; }
  mb_send_sig_to(p, s);
  mb_proc_unref(p);
  return 0;
}

/* The answer of a dead process `dead` to a signal that reached it too late. */
static void bounce(mb_node *n, mb_pid dead, mb_sig *s) {
  mb_pid from = s->from;
  if (s->kind == MB_SIG_LINK) {
    mb_sig *e = mb_sig_string(MB_SIG_EXIT, dead, 0, "noproc");
    if (e) { e->flags = MB_SIGF_LINK; mb_send_sig(n, from, e); }
  } else if (s->kind == MB_SIG_MONITOR) {
    mb_sig *d = mb_sig_string(MB_SIG_DOWN, dead, s->ref, "noproc");
    if (d) mb_send_sig(n, from, d);
  }
  mb_sig_free(s);
}

/* ---- operations on other processes ---- */

static void self_push(mb_proc *self, mb_sig *s) {
  if (s) push(self, s);
}

void mb_proc_link(mb_proc *self, mb_pid other) {
  mb_pid me = atomic_load(&self->pid);
  if (other == me) return;
  pthread_mutex_lock(&self->meta);
  int added = mb_pidset_add(&self->links, other);
  pthread_mutex_unlock(&self->meta);
  if (added <= 0) return;   /* already linked (or no memory) */
  mb_sig *s = mb_sig_new(MB_SIG_LINK, me, 0);
  if (s && mb_send_sig(self->node, other, s) == 0) return;
  mb_sig *e = mb_sig_string(MB_SIG_EXIT, other, 0, "noproc");
  if (e) e->flags = MB_SIGF_LINK;
  self_push(self, e);
}

void mb_proc_unlink(mb_proc *self, mb_pid other) {
  pthread_mutex_lock(&self->meta);
  int had = mb_pidset_del(&self->links, other);
  pthread_mutex_unlock(&self->meta);
  if (!had) return;
  mb_sig *s = mb_sig_new(MB_SIG_UNLINK, atomic_load(&self->pid), 0);
  if (s) mb_send_sig(self->node, other, s);
}

void mb_proc_monitor(mb_proc *self, mb_pid other, uint64_t ref) {
  pthread_mutex_lock(&self->meta);
  mb_monset_add(&self->monitors, ref, other);
  pthread_mutex_unlock(&self->meta);
  mb_sig *s = mb_sig_new(MB_SIG_MONITOR, atomic_load(&self->pid), ref);
  if (s && mb_send_sig(self->node, other, s) == 0) return;
  self_push(self, mb_sig_string(MB_SIG_DOWN, other, ref, "noproc"));
}

int mb_proc_demonitor(mb_proc *self, uint64_t ref) {
  mb_pid target;
  pthread_mutex_lock(&self->meta);
  int had = mb_monset_del(&self->monitors, ref, &target);
  pthread_mutex_unlock(&self->meta);
  if (had) {
    mb_sig *s = mb_sig_new(MB_SIG_DEMONITOR, atomic_load(&self->pid), ref);
    if (s) mb_send_sig(self->node, target, s);
  }
  /* Flush: a DOWN still in the mailbox is dropped by drain (its ref is gone);
   * one already in the inbox is removed here. */
  mb_proc_drain(self);
  mb_sig *prev = NULL;
  for (mb_sig *m = self->inbox; m; ) {
    mb_sig *next = m->next;
    if (m->kind == MB_SIG_DOWN && m->ref == ref) {
      if (self->L && m->lref != LUA_NOREF) luaL_unref(self->L, LUA_REGISTRYINDEX, m->lref);
      mb_proc_take(self, prev, m);
      mb_sig_free(m);
    } else {
      prev = m;
    }
    m = next;
  }
  return had;
}

int mb_proc_exit_signal(mb_proc *self, mb_pid to, mb_sig *reason) {
  reason->kind = MB_SIG_EXIT;
  reason->flags = 0;
  reason->from = atomic_load(&self->pid);
  if (to == reason->from) { self_push(self, reason); mb_proc_drain(self); return 0; }
  return mb_send_sig(self->node, to, reason);
}

/* ---- the owner's side ---- */

static void inbox_append(mb_proc *p, mb_sig *s) {
  s->next = NULL;
  if (p->inbox_tail) p->inbox_tail->next = s;
  else p->inbox = s;
  p->inbox_tail = s;
  atomic_store_explicit(&p->inbox_len, atomic_load_explicit(&p->inbox_len, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

void mb_proc_take(mb_proc *p, mb_sig *prev, mb_sig *m) {
  if (prev) prev->next = m->next;
  else p->inbox = m->next;
  if (p->inbox_tail == m) p->inbox_tail = prev;
  atomic_store_explicit(&p->inbox_len, atomic_load_explicit(&p->inbox_len, memory_order_relaxed) - 1,
                        memory_order_relaxed);
  atomic_fetch_sub_explicit(&p->queue_bytes, (int64_t)m->len, memory_order_relaxed);
}

static void drop(mb_proc *p, mb_sig *s) {
  if (counts_as_message(s->kind))
    atomic_fetch_sub_explicit(&p->queue_bytes, (int64_t)s->len, memory_order_relaxed);
  mb_sig_free(s);
}

/* The process must end with reason s (an EXIT-shaped signal, no longer queued). */
static void doom(mb_proc *p, mb_sig *s) {
  if (counts_as_message(s->kind))
    atomic_fetch_sub_explicit(&p->queue_bytes, (int64_t)s->len, memory_order_relaxed);
  if (p->doom) { mb_sig_free(s); return; }
  p->doom = s;
}

static void on_exit_signal(mb_proc *p, mb_sig *s) {
  mb_pid me = atomic_load(&p->pid);
  int from_link = s->flags & MB_SIGF_LINK;
  if (from_link) {
    pthread_mutex_lock(&p->meta);
    int had = mb_pidset_del(&p->links, s->from);
    pthread_mutex_unlock(&p->meta);
    if (!had) { drop(p, s); return; }
  }
  if (!from_link && mb_encoded_is_string(s->data, s->len, "kill") && p->kind != MB_PK_EXTERNAL) {
    mb_sig *k = mb_sig_string(MB_SIG_EXIT, s->from, 0, "killed");
    drop(p, s);
    if (k) { if (p->doom) mb_sig_free(k); else p->doom = k; }
    return;
  }
  if (p->trap_exit || p->kind == MB_PK_EXTERNAL) { inbox_append(p, s); return; }
  if (mb_reason_is_normal(s->data, s->len) && mb_encoded_is_string(s->data, s->len, "normal")) {
    if (!from_link && s->from == me) doom(p, s);
    else drop(p, s);
    return;
  }
  if (mb_reason_is_normal(s->data, s->len) && from_link) { drop(p, s); return; }
  doom(p, s);
}

void mb_proc_drain(mb_proc *p) {
  mb_qnode *q;
  while (!p->doom && (q = mb_mpsc_pop(&p->mq)) != NULL) {
    mb_sig *s = (mb_sig *)q;
    atomic_fetch_sub_explicit(&p->mq_count, 1, memory_order_relaxed);
    switch (s->kind) {
    case MB_SIG_MSG:
      inbox_append(p, s);
      break;
    case MB_SIG_DOWN:
      if (monset_has(&p->monitors, s->ref)) {
        pthread_mutex_lock(&p->meta);
        mb_monset_del(&p->monitors, s->ref, NULL);
        pthread_mutex_unlock(&p->meta);
        inbox_append(p, s);
      } else {
        drop(p, s);
      }
      break;
    case MB_SIG_EXIT:
      on_exit_signal(p, s);
      break;
    case MB_SIG_LINK:
      pthread_mutex_lock(&p->meta);
      mb_pidset_add(&p->links, s->from);
      pthread_mutex_unlock(&p->meta);
      mb_sig_free(s);
      break;
    case MB_SIG_UNLINK:
      pthread_mutex_lock(&p->meta);
      mb_pidset_del(&p->links, s->from);
      pthread_mutex_unlock(&p->meta);
      mb_sig_free(s);
      break;
    case MB_SIG_MONITOR:
      pthread_mutex_lock(&p->meta);
      mb_monset_add(&p->monitored_by, s->ref, s->from);
      pthread_mutex_unlock(&p->meta);
      mb_sig_free(s);
      break;
    case MB_SIG_DEMONITOR:
      pthread_mutex_lock(&p->meta);
      mb_monset_del(&p->monitored_by, s->ref, NULL);
      pthread_mutex_unlock(&p->meta);
      mb_sig_free(s);
      break;
    default:
      mb_sig_free(s);
    }
  }
}

void mb_proc_finish(mb_proc *p, mb_sig *reason) {
  mb_node *n = p->node;
  mb_pid me = atomic_load(&p->pid);
  int abnormal = !mb_reason_is_normal(reason->data, reason->len);

  /* DEAD under meta, with the name taken: a register racing with this end
   * either sees the name gone or the process dead (mb_registry_add) */
  pthread_mutex_lock(&p->meta);
  atomic_store(&p->state, MB_PS_DEAD);
  char *name = p->name;
  size_t name_len = p->name_len;
  p->name = NULL;
  pthread_mutex_unlock(&p->meta);
  if (name) { mb_registry_remove(n->reg, name, name_len, me); free(name); }
  mb_ptab_remove(n->ptab, p);

  if (p->kind == MB_PK_LUA) mb_sched_disarm_wait(p);
  if (p->L) { lua_close(p->L); p->L = p->co = NULL; p->cur = NULL; }

  /* The sets no longer change: nothing else runs as this process. */
  for (int i = 0; i < p->links.n; i++) {
    mb_sig *e = mb_sig_copy(reason, MB_SIG_EXIT, me, 0);
    if (e) { e->flags = MB_SIGF_LINK; mb_send_sig(n, p->links.v[i], e); }
  }
  for (int i = 0; i < p->monitored_by.n; i++) {
    mb_sig *d = mb_sig_copy(reason, MB_SIG_DOWN, me, p->monitored_by.ref[i]);
    if (d) mb_send_sig(n, p->monitored_by.pid[i], d);
  }
  for (int i = 0; i < p->monitors.n; i++) {
    mb_sig *d = mb_sig_new(MB_SIG_DEMONITOR, me, p->monitors.ref[i]);
    if (d) mb_send_sig(n, p->monitors.pid[i], d);
  }
  pthread_mutex_lock(&p->meta);
  p->links.n = p->monitors.n = p->monitored_by.n = 0;
  pthread_mutex_unlock(&p->meta);

  for (mb_sig *m = p->inbox, *next; m; m = next) { next = m->next; mb_sig_free(m); }
  p->inbox = p->inbox_tail = NULL;
  mb_qnode *q;
  while ((q = mb_mpsc_pop(&p->mq)) != NULL) bounce(n, me, (mb_sig *)q);
  atomic_store(&p->mq_count, 0);
  atomic_store(&p->inbox_len, 0);
  atomic_store(&p->queue_bytes, 0);
  if (p->doom == reason) p->doom = NULL;
  mb_sig_free(reason);

  mb_node_proc_ended(n, p, abnormal);
  mb_proc_unref(p);
}
