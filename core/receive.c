/* receive: selects over a process's inbox with a C predicate, receive marks and
 * live call refs (see receive.h). proc.c keeps the shared state consistent: it
 * stamps each message appended to the inbox with ++inbox_seq, moves mark_pos
 * back when mb_proc_take unlinks the message it points at, and at drain queues a
 * REPLY only if its ref is in `calls`. Lua's receive skips REPLY signals: a reply
 * is only ever taken here. */
#include <errno.h>
#include <lauxlib.h>
#include "receive.h"
#include "clock.h"

/* Was the message stamped seq appended after the mark? Serial-number order, so
 * the stamps may wrap. */
static int after(uint32_t seq, mb_recv_mark_t mark) { return (int32_t)(seq - mark) > 0; }

/* The first message after prev (NULL: the head) that pred accepts, unlinked. */
static mb_sig *pick(mb_proc *p, mb_sig *prev, mb_recv_pred pred, void *ud) {
  for (mb_sig *m = prev ? prev->next : p->inbox; m; prev = m, m = m->next) {
    if (!pred(m, ud)) continue;
    /* a Lua selective receive may have decoded it before (a cached value) */
    if (m->lref != LUA_NOREF) {
      if (p->L) luaL_unref(p->L, LUA_REGISTRYINDEX, m->lref);
      m->lref = LUA_NOREF;
    }
    mb_proc_take(p, prev, m);
    mb_proc_reduce(p, 1);
    return m;
  }
  return NULL;
}

mb_sig *mb_recv_select(mb_proc *p, mb_recv_pred pred, void *ud) {
  mb_proc_drain(p);
  return pick(p, NULL, pred, ud);
}

mb_recv_mark_t mb_recv_mark(mb_proc *p) {
  mb_proc_drain(p);
  p->mark_seq = p->inbox_seq;
  p->mark_pos = p->inbox_tail;
  return p->mark_seq;
}

mb_sig *mb_recv_select_after(mb_proc *p, mb_recv_mark_t mark, mb_recv_pred pred, void *ud) {
  mb_proc_drain(p);
  mb_sig *prev = NULL;
  if (mark == p->mark_seq) {
    prev = p->mark_pos;
  } else {   /* an older mark: stamps grow along the inbox */
    for (mb_sig *m = p->inbox; m && !after(m->seq, mark); m = m->next) prev = m;
  }
  return pick(p, prev, pred, ud);
}

int mb_call_ref_add(mb_proc *p, uint64_t ref) { return mb_monset_add(&p->calls, ref, 0); }
int mb_call_ref_add_server(mb_proc *p, uint64_t ref, mb_pid server) { return mb_monset_add(&p->calls, ref, server); }

static int is_reply_to(const mb_sig *s, void *ud) {
  return s->kind == MB_SIG_REPLY && s->ref == *(const uint64_t *)ud;
}

int mb_call_ref_del(mb_proc *p, uint64_t ref) {
  if (mb_monset_del(&p->calls, ref, NULL)) return 1;
  if (p->inbox_replies > 0) {   /* its reply was queued and not taken */
    mb_sig *r = pick(p, NULL, is_reply_to, &ref);
    if (r) mb_sig_free(r);
  }
  return 0;
}

/* Before it sleeps, a host thread watches its count for this long: a reply that
 * comes within it costs no wake-up of a sleeping thread (the sender finds it still
 * RUNNING and signals nothing). bench/hop's process <-> host hop was ~6 us asleep. */
#define EXT_SPIN_NS 50000

/* The sender raises mq_count after its push, then reads the state; we store the
 * state, then read the count (both sequentially consistent): one sees the other. */
int mb_recv_wait_external(mb_proc *p, uint64_t deadline) {
  int rc = 0;
  if (atomic_load(&p->mq_count) <= 0) {
    uint64_t until = mb_now_ns() + EXT_SPIN_NS;
    if (deadline && deadline < until) until = deadline;
    for (unsigned i = 1; atomic_load_explicit(&p->mq_count, memory_order_acquire) <= 0; i++) {
      if ((i & 63) == 0 && mb_now_ns() >= until) break;
      __builtin_ia32_pause();
    }
    if (atomic_load(&p->mq_count) > 0) return 0;   /* the caller drains it */
  }
  pthread_mutex_lock(&p->ext->lock);
  atomic_store(&p->state, MB_PS_WAITING);
  atomic_thread_fence(memory_order_seq_cst);
  while (atomic_load(&p->state) == MB_PS_WAITING && atomic_load(&p->mq_count) <= 0) {
    if (deadline) {
      struct timespec ts = mb_timespec_at(deadline);
      if (pthread_cond_timedwait(&p->ext->cond, &p->ext->lock, &ts) == ETIMEDOUT) { rc = MB_ETIMEOUT; break; }
    } else {
      pthread_cond_wait(&p->ext->cond, &p->ext->lock);
    }
  }
  atomic_store(&p->state, MB_PS_RUNNING);
  pthread_mutex_unlock(&p->ext->lock);
  return rc;
}
