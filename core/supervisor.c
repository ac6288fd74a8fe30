/* supervisor: supervisors as native processes (see supervisor.h).
 *
 * A supervisor traps exits and does one thing at a time. What it does is a job: a
 * list of steps (start a child, stop a child) and an end (answer a call, answer
 * its own start, exit). A step that waits — a gen_server child's or a
 * sub-supervisor's start answer, a stopping child's DOWN — leaves every other
 * signal queued, so a call made during a restart is answered after it, and sees
 * the new pid. Children sit in a list in start order, with hashes by pid and by
 * id: finding, adding and removing one is O(1) whatever their number. Restarts
 * within `period` are a queue of times, pruned as it grows: O(1) amortized. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "supervisor.h"
#include "call.h"
#include "clock.h"
#include "code.h"
#include "codec.h"
#include "codec_format.h"
#include "cterm.h"
#include "gen_server.h"
#include "hash.h"
#include "log.h"
#include "native.h"
#include "node.h"
#include "registry.h"
#include "scheduler.h"
#include "spawn.h"
#include "testhook.h"
#include "wait.h"

#define START_TIMEOUT_MS 5000   /* a gen_server child's init, as gen_server.start_link's default */

typedef struct kid {
  mb_child_spec cs;
  mb_pid pid;                  /* 0: not running */
  int restarting;              /* its restart failed: tried again later (retry_later) */
  struct kid *prev, *next;     /* start order */
  struct kid *by_pid, *by_id;  /* hash chains */
} kid;

enum { STEP_START = 1, STEP_STOP, STEP_STOP_REMOVE };   /* nonzero: also what s->waiting holds */
typedef struct step { int what; kid *k; } step;

/* How a job ends. */
enum { J_NONE, J_BOOT, J_RESTART, J_START_CHILD, J_RESTART_CHILD, J_TERMINATE, J_EXIT };

typedef struct sup {
  mb_sup_spec *spec;           /* strategy, intensity, period, name (its children moved to kids) */
  kid *first, *last;
  int nkids;
  kid **pid_tab, **id_tab;     /* hashes, cap buckets each */
  int cap;
  int64_t next_id;             /* ids given to children added without one */
  mb_pid parent;
  uint64_t ack_ref;            /* the start's ref until answered */
  /* restart times (ns) within the period: a ring */
  uint64_t *times;
  int64_t ntimes, captimes, head;
  /* the job */
  int end;
  step *steps;
  int nsteps, capsteps, at;
  mb_pid call_from;            /* the call the job answers */
  uint64_t call_ref;
  kid *target;                 /* the child the call is about */
  mb_sig *reason;              /* J_EXIT's reason; a failed start's reason */
  kid *failed;                 /* the child whose start failed */
  /* the step under way */
  int waiting;                 /* 0, STEP_START (wait_ref's answer) or STEP_STOP (its DOWN) */
  uint64_t wait_ref;
  uint64_t deadline;
  int killed;
} sup;

/* ---- children: list and hashes ---- */

static uint32_t pid_hash(mb_pid pid) { return (uint32_t)(pid * 0x9E3779B97F4A7C15ull >> 32); }
static uint32_t id_hash(const mb_child_spec *c) {
  return c->id_is_int ? pid_hash((uint64_t)c->id_int) : mb_hash_bytes(c->id, c->id_len);
}
static int same_id(const mb_child_spec *a, const mb_child_spec *b) {
  if (a->id_is_int != b->id_is_int) return 0;
  return a->id_is_int ? a->id_int == b->id_int : a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0;
}

static kid **pid_slot(sup *s, mb_pid pid) { return &s->pid_tab[pid_hash(pid) & (uint32_t)(s->cap - 1)]; }
static kid **id_slot(sup *s, const mb_child_spec *c) { return &s->id_tab[id_hash(c) & (uint32_t)(s->cap - 1)]; }

static kid *by_pid(sup *s, mb_pid pid) {
  if (!pid || !s->cap) return NULL;
  for (kid *k = *pid_slot(s, pid); k; k = k->by_pid) if (k->pid == pid) return k;
  return NULL;
}

static kid *by_id(sup *s, const mb_child_spec *c) {
  if (!s->cap) return NULL;   /* no child yet: no buckets */
  for (kid *k = *id_slot(s, c); k; k = k->by_id) if (same_id(&k->cs, c)) return k;
  return NULL;
}

static void unhash_pid(sup *s, kid *k) {
  if (!k->pid) return;
  for (kid **q = pid_slot(s, k->pid); *q; q = &(*q)->by_pid)
    if (*q == k) { *q = k->by_pid; break; }
  k->pid = 0;
}

static void set_pid(sup *s, kid *k, mb_pid pid) {
  unhash_pid(s, k);
  k->pid = pid;
  if (!pid) return;
  k->restarting = 0;
  kid **q = pid_slot(s, pid);
  k->by_pid = *q;
  *q = k;
}

/* Double the buckets when they are fewer than the children. -1 without memory. */
static int grow(sup *s) {
  if (s->nkids < s->cap) return 0;
  int cap = s->cap ? s->cap * 2 : 16;
  kid **pt = calloc((size_t)cap, sizeof *pt), **it = calloc((size_t)cap, sizeof *it);
  if (!pt || !it) { free(pt); free(it); return -1; }
  free(s->pid_tab);
  free(s->id_tab);
  s->pid_tab = pt;
  s->id_tab = it;
  s->cap = cap;
  for (kid *k = s->first; k; k = k->next) {
    kid **q = id_slot(s, &k->cs);
    k->by_id = *q;
    *q = k;
    if (k->pid) { q = pid_slot(s, k->pid); k->by_pid = *q; *q = k; }
  }
  return 0;
}

/* Append a child (taking cs): the kid, or NULL without memory (cs then cleared). */
static kid *add_kid(sup *s, mb_child_spec *cs) {
  kid *k = calloc(1, sizeof *k);
  if (!k || grow(s) != 0) { free(k); mb_child_spec_clear(cs); return NULL; }
  k->cs = *cs;
  memset(cs, 0, sizeof *cs);
  k->prev = s->last;
  if (s->last) s->last->next = k; else s->first = k;
  s->last = k;
  s->nkids++;
  kid **q = id_slot(s, &k->cs);
  k->by_id = *q;
  *q = k;
  return k;
}

static void remove_kid(sup *s, kid *k) {
  unhash_pid(s, k);
  for (kid **q = id_slot(s, &k->cs); *q; q = &(*q)->by_id)
    if (*q == k) { *q = k->by_id; break; }
  if (k->prev) k->prev->next = k->next; else s->first = k->next;
  if (k->next) k->next->prev = k->prev; else s->last = k->prev;
  s->nkids--;
  mb_child_spec_clear(&k->cs);
  free(k);
}

/* k's id as the writer's next value. */
static void write_id(mb_tw *w, const kid *k) {
  if (k->cs.id_is_int) mb_tw_int(w, k->cs.id_int); else mb_tw_lstring(w, k->cs.id, k->cs.id_len);
}

/* ---- logging ---- */

/* "<0.5>" or "<0.5> (name)" of the supervisor, into buf. */
static const char *sup_text(mb_proc *p, sup *s, char *buf, size_t cap) {
  if (s->spec->name) snprintf(buf, cap, "<0.%llu> (%.*s)", (unsigned long long)atomic_load(&p->pid),
                              (int)(s->spec->name_len < 64 ? s->spec->name_len : 64), s->spec->name);
  else snprintf(buf, cap, "<0.%llu>", (unsigned long long)atomic_load(&p->pid));
  return buf;
}

static const char *id_text(const kid *k, char *buf, size_t cap) {
  if (k->cs.id_is_int) snprintf(buf, cap, "%lld", (long long)k->cs.id_int);
  else snprintf(buf, cap, "'%.*s'", (int)(k->cs.id_len < 64 ? k->cs.id_len : 64), k->cs.id);
  return buf;
}

static void report(mb_proc *p, sup *s, int level, kid *k, mb_pid pid, const char *what, const mb_sig *reason) {
  char st[96], it[80];
  char *r = reason ? mb_reason_text(reason) : NULL;
  mb_log(p->node, level, atomic_load(&p->pid), "supervisor report: supervisor %s: child %s (<0.%llu>, module '%s') %s%s%s",
         sup_text(p, s, st, sizeof st), id_text(k, it, sizeof it), (unsigned long long)pid, k->cs.module, what,
         reason ? ": " : "", reason ? (r ? r : "?") : "");
  free(r);
}

/* ---- jobs ---- */

static int job_add(sup *s, int what, kid *k) {
  if (s->nsteps == s->capsteps) {
    int cap = s->capsteps ? s->capsteps * 2 : 8;
    step *n = realloc(s->steps, (size_t)cap * sizeof *n);
    if (!n) return -1;
    s->steps = n;
    s->capsteps = cap;
  }
  s->steps[s->nsteps++] = (step){ what, k };
  return 0;
}

static void job_begin(sup *s, int end) {
  s->end = end;
  s->nsteps = s->at = 0;
  s->failed = NULL;
}

/* Stop every running child, last started first. */
static void add_stop_all(sup *s) {
  for (kid *k = s->last; k; k = k->prev) if (k->pid) job_add(s, STEP_STOP, k);
}

static mb_sig *static_reason(const char *r) {
  mb_sig *s = mb_sig_string(MB_SIG_EXIT, 0, 0, r);
  return s ? s : mb_sig_static("error");
}

/* Reply to the job's call with the writer's value (w holds one). */
static void reply_with(mb_proc *p, sup *s, mb_buf *b, mb_tw *w) {
  if (mb_tw_finish(w) != 0) { mb_buf_free(b); return; }   /* no memory: the caller's DOWN or timeout tells */
  mb_call_reply(p->node, p, s->call_from, s->call_ref, mb_sig_from_buf(b, MB_SIG_REPLY, 0, 0));
}

static int reply_begin(mb_buf *b, mb_tw *w) {
  if (mb_buf_init(b, MB_SIG_HDR, 0) != 0) return -1;
  mb_tw_begin(w, b);
  return 0;
}

/* Reply {true [, pid]} or {false, reason [, pid]}. */
static void reply_result(mb_proc *p, sup *s, int ok, const mb_sig *reason, const char *text, mb_pid pid) {
  mb_buf b;
  mb_tw w;
  if (reply_begin(&b, &w) != 0) return;
  mb_tw_table(&w, (ok ? 1 : 2) + (pid ? 1 : 0));
  mb_tw_bool(&w, ok);
  if (!ok) {
    if (reason) mb_tw_encoded(&w, mb_sig_payload(reason), reason->len);
    else mb_tw_string(&w, text);
  }
  if (pid) mb_tw_pid(&w, pid);
  mb_tw_end(&w);
  reply_with(p, s, &b, &w);
}

/* The answer to our own start: the encoded true, or {reason} after unlinking. */
static void ack(mb_proc *p, sup *s, const mb_sig *failure, const char *text, mb_pid holder) {
  if (!s->ack_ref) return;
  mb_buf b;
  mb_tw w;
  if (reply_begin(&b, &w) != 0) return;
  if (!failure && !text) {
    mb_tw_bool(&w, 1);
  } else {
    mb_proc_unlink(p, s->parent);   /* a failed start sends no exit signal */
    mb_tw_table(&w, holder ? 2 : 1);
    if (failure) mb_tw_encoded(&w, mb_sig_payload(failure), failure->len);
    else mb_tw_string(&w, text);
    if (holder) mb_tw_pid(&w, holder);
    mb_tw_end(&w);
  }
  uint64_t ref = s->ack_ref;
  s->ack_ref = 0;
  if (mb_tw_finish(&w) != 0) { mb_buf_free(&b); return; }
  mb_call_reply(p->node, p, s->parent, ref, mb_sig_from_buf(&b, MB_SIG_REPLY, 0, 0));
}

/* {"failed_to_start_child", id, reason} as an exit reason. */
static mb_sig *failed_to_start(kid *k, const mb_sig *reason) {
  mb_buf b;
  mb_tw w;
  if (mb_buf_init(&b, MB_SIG_HDR, 0) != 0) return static_reason("failed_to_start_child");
  mb_tw_begin(&w, &b);
  mb_tw_table(&w, 3);
  mb_tw_string(&w, "failed_to_start_child");
  write_id(&w, k);
  mb_tw_encoded(&w, mb_sig_payload(reason), reason->len);
  mb_tw_end(&w);
  if (mb_tw_finish(&w) != 0) { mb_buf_free(&b); return static_reason("failed_to_start_child"); }
  return mb_sig_from_buf(&b, MB_SIG_EXIT, 0, 0);
}

/* ---- restarts ---- */

/* Count a restart now: 0, or -1 when that makes more than intensity within period. */
static int count_restart(sup *s) {
  /* a period past the clock's range (math.huge) keeps every restart: it must not wrap to 0 */
  uint64_t now = mb_now_ns(), span = s->spec->period * 1e9 < 0x1p64 ? (uint64_t)(s->spec->period * 1e9) : UINT64_MAX;
  while (s->ntimes && now - s->times[s->head] > span) {   /* out of the period */
    s->head = (s->head + 1) % s->captimes;
    s->ntimes--;
  }
  if (s->ntimes >= s->spec->intensity) return -1;
  if (s->ntimes == s->captimes) {   /* grow the ring, keeping its order */
    int64_t cap = s->captimes ? s->captimes * 2 : 4;
    uint64_t *t = malloc((size_t)cap * sizeof *t);
    if (!t) return 0;   /* not counted: memory must not make us give up */
    for (int64_t i = 0; i < s->ntimes; i++) t[i] = s->times[(s->head + i) % s->captimes];
    free(s->times);
    s->times = t;
    s->captimes = cap;
    s->head = 0;
  }
  s->times[(s->head + s->ntimes) % s->captimes] = now;
  s->ntimes++;
  return 0;
}

/* More than intensity restarts within period (the last one for k, which ended
 * with reason, NULL for a failed restart): stop everything and exit "shutdown". */
static void give_up(mb_proc *p, sup *s, kid *k, mb_pid pid, const mb_sig *reason) {
  char st[96], it[80];
  char *r = reason ? mb_reason_text(reason) : NULL;
  mb_log(p->node, MB_LOG_ERROR, atomic_load(&p->pid),
         "supervisor report: supervisor %s reached max restart intensity: %lld restarts in %g s, then child %s "
         "(<0.%llu>, module '%s') ended with reason: %s; stopping its children and exiting with reason shutdown",
         sup_text(p, s, st, sizeof st), (long long)s->ntimes, s->spec->period, id_text(k, it, sizeof it),
         (unsigned long long)pid, k->cs.module, reason ? (r ? r : "?") : "failed to restart");
  free(r);
  job_begin(s, J_EXIT);
  if (s->reason) mb_sig_free(s->reason);
  s->reason = static_reason("shutdown");
  add_stop_all(s);
}

/* Plan the restart of k (it ended) by the strategy. */
static void plan_restart(sup *s, kid *k) {
  job_begin(s, J_RESTART);
  int strategy = s->spec->strategy;
  if (strategy == MB_SUP_ONE_FOR_ONE) { job_add(s, STEP_START, k); return; }
  kid *from = strategy == MB_SUP_ONE_FOR_ALL ? s->first : k;
  for (kid *j = s->last; j; j = j->prev) {   /* stop, last first */
    if (j->pid) job_add(s, j->cs.restart == MB_RESTART_TEMPORARY ? STEP_STOP_REMOVE : STEP_STOP, j);
    if (j == from) break;
  }
  for (kid *j = from; j; j = j->next)   /* start, first first; temporary ones are gone */
    if (j->cs.restart != MB_RESTART_TEMPORARY || j == k) job_add(s, STEP_START, j);
}

/* ---- steps ---- */

/* While a step waits on child pid, our call_to names it (call.h): a call the child
 * makes to us meanwhile closes a cycle and fails at once with "deadlock". */
static void wait_on(mb_proc *p, uint64_t ref, mb_pid pid) {
  atomic_store(&p->call_ref, ref);
  atomic_store(&p->call_to, pid);
}

/* The deadline ms from now, 0 (none) when that is past the clock's range: a huge
 * shutdown (math.maxinteger) must not wrap to a deadline already gone. */
static uint64_t deadline_in(int64_t ms) {
  uint64_t d = mb_deadline_after((lua_Number)ms);
  return d == MB_NEVER ? 0 : d;
}

/* A signal whose payload is a's alen bytes, then b's blen. NULL without memory. */
static mb_sig *sig_concat(int kind, const void *a, size_t alen, const void *b, size_t blen) {
  mb_buf buf;
  memset(&buf, 0, sizeof buf);
  buf.start = MB_SIG_HDR;
  buf.cap = buf.len = MB_SIG_HDR + alen + blen;
  if (!(buf.data = malloc(buf.cap))) return NULL;
  memcpy(buf.data + MB_SIG_HDR, a, alen);
  memcpy(buf.data + MB_SIG_HDR + alen, b, blen);
  return mb_sig_from_buf(&buf, kind, 0, 0);
}

/* Start a child. 0: started (k->pid); 1: waiting for its answer; -1: failed (s->reason). */
static int start_kid(mb_proc *p, sup *s, kid *k) {
  mb_node *n = p->node;
  mb_pid pid = 0;
  int rc;
  if (k->cs.type == MB_TYPE_SUPERVISOR || k->cs.kind == MB_CHILD_GEN_SERVER) {
    uint64_t ref = mb_node_make_ref(n);
    if (mb_call_ref_add(p, ref) < 0) { rc = MB_ENOMEM; goto failed; }
    if (k->cs.type == MB_TYPE_SUPERVISOR) {
      mb_sup_spec *copy = k->cs.spec ? mb_sup_spec_copy(k->cs.spec) : NULL;
      rc = copy ? mb_supervisor_spawn(p, copy, ref, &pid) : MB_ENOMEM;
    } else {
      rc = mb_gen_server_spawn(p, k->cs.module, k->cs.args, k->cs.args_len, k->cs.name, k->cs.name_len, 1, ref, &pid);
    }
    if (rc != 0) { mb_call_ref_del(p, ref); goto failed; }
    set_pid(s, k, pid);
    s->waiting = STEP_START;
    s->wait_ref = ref;
    s->deadline = k->cs.type == MB_TYPE_SUPERVISOR ? 0 : deadline_in(START_TIMEOUT_MS);
    wait_on(p, ref, pid);   /* a deadlock if the child calls us from its init */
    return 1;
  }
  /* a plain process: its module's body, spawned linked with the args as its one argument */
  char err[512];
  mb_spawn_req r;
  memset(&r, 0, sizeof r);
  r.code = mb_code_get(n, k->cs.module, err, sizeof err);
  if (!r.code) { s->reason = static_reason(err); return -1; }
  if (k->cs.args) {   /* a values list of one: the header, the count, the value */
    const char head[2] = { k->cs.args[0], 1 };
    r.args = sig_concat(MB_SIG_MSG, head, 2, k->cs.args + 1, k->cs.args_len - 1);
    if (!r.args) { mb_code_unref(r.code); rc = MB_ENOMEM; goto failed; }
  }
  r.link = p;
  rc = mb_spawn_proc(n, &r, &pid);
  if (rc != 0) goto failed;
  mb_test_point("supervisor_named_spawn");   /* it runs, and may end, before it has its name */
  /* one that has already ended (MB_ENOPROC) did start: its EXIT is on the way */
  rc = k->cs.name ? mb_registry_add(n, k->cs.name, k->cs.name_len, pid) : 0;
  if (rc != 0 && rc != MB_ENOPROC) {
    mb_proc_unlink(p, pid);
    mb_sig *kill = mb_sig_string(MB_SIG_EXIT, 0, 0, "kill");
    if (kill) mb_proc_exit_signal(p, pid, kill);
    s->reason = static_reason(rc == MB_EINVAL ? "already_started" : mb_strerror(rc));
    return -1;
  }
  set_pid(s, k, pid);
  return 0;
failed:
  s->reason = static_reason(mb_strerror(rc));
  return -1;
}

static mb_sig *exit_sig(const char *r) {
  mb_sig *s = mb_sig_string(MB_SIG_EXIT, 0, 0, r);
  return s;
}

/* Stop a child: "shutdown" (or kill), then wait for its DOWN. 0: stopped; 1: waiting. */
static int stop_kid(mb_proc *p, sup *s, kid *k) {
  if (!k->pid) return 0;
  mb_pid pid = k->pid;
  mb_proc_unlink(p, pid);   /* its end comes as the DOWN, not as an EXIT */
  uint64_t ref = mb_node_make_ref(p->node);
  mb_proc_monitor(p, pid, ref);
  int brutal = k->cs.shutdown == MB_SHUTDOWN_BRUTAL;
  mb_sig *e = exit_sig(brutal ? "kill" : "shutdown");
  if (e) mb_proc_exit_signal(p, pid, e);
  s->waiting = STEP_STOP;
  s->wait_ref = ref;
  wait_on(p, ref, pid);   /* and from its terminate: else infinity would hang us both */
  s->killed = brutal;
  s->deadline = brutal || k->cs.shutdown == MB_SHUTDOWN_INFINITY ? 0 : deadline_in(k->cs.shutdown);
  return 1;
}

typedef struct { uint64_t ref; } want;

static int answer_of(const mb_sig *m, void *ud) {
  const want *w = ud;
  return m->ref == w->ref && (m->kind == MB_SIG_REPLY || m->kind == MB_SIG_DOWN);
}

/* Is the step under way done? 1 (s->waiting cleared; a failed start leaves
 * s->reason), 0 (still waiting). */
static int poll_step(mb_proc *p, sup *s, int *failed) {
  want w = { s->wait_ref };
  kid *k = s->steps[s->at].k;
  mb_sig *m = mb_recv_select(p, answer_of, &w);
  *failed = 0;
  if (!m) {
    if (!s->deadline || mb_now_ns() < s->deadline) {
      if (s->deadline && !p->wait_timer) mb_sched_arm_wait(p, s->deadline);
      return 0;
    }
    mb_sched_disarm_wait(p);
    s->deadline = 0;
    if (s->waiting == STEP_STOP) {   /* over its shutdown time: kill it, and wait on */
      mb_sig *kill = exit_sig("kill");
      if (kill) mb_proc_exit_signal(p, k->pid, kill);
      s->killed = 1;
      return 0;
    }
    /* a start over its time: the child goes, quietly */
    mb_call_ref_del(p, s->wait_ref);
    mb_sig *d = mb_sig_new(MB_SIG_DEMONITOR, atomic_load(&p->pid), s->wait_ref);
    if (d) mb_send_sig(p->node, k->pid, d);
    mb_proc_unlink(p, k->pid);
    mb_sig *kill = exit_sig("kill");
    if (kill) mb_proc_exit_signal(p, k->pid, kill);
    set_pid(s, k, 0);
    s->reason = static_reason("timeout");
    *failed = 1;
  } else if (s->waiting == STEP_STOP) {
    set_pid(s, k, 0);
    mb_sig_free(m);
  } else {   /* a start's answer */
    mb_call c = { k->pid, s->wait_ref, 0 };
    mb_call_end(p, &c, m);
    int ok = 0;
    if (m->kind == MB_SIG_REPLY) {
      mb_tr r;
      int b;
      if (mb_tr_open(&r, mb_sig_payload(m), m->len) == 0) {
        if (mb_tr_bool(&r, &b) == 0 && b) {
          ok = 1;
        } else {   /* {reason [, pid]}: the reason's bytes, under a header of their own */
          const char *payload = mb_sig_payload(m);
          uint64_t narr;
          uint32_t nh;
          if (payload[0] & HDR_BACKREFS) {   /* numbered for the whole reply: shown as text */
            char *t = mb_reason_render(payload, m->len, 4096);
            s->reason = static_reason(t ? t : "failed to start");
            free(t);
          } else if (mb_tr_enter(&r, &narr, &nh) == 0 && narr >= 1) {
            const unsigned char *at = r.p;
            mb_tr_skip(&r);
            s->reason = sig_concat(MB_SIG_EXIT, payload, 1, at, (size_t)(r.p - at));
          }
        }
        mb_tr_close(&r);
      }
    } else {
      s->reason = mb_sig_share(m, MB_SIG_EXIT, 0, 0);
    }
    mb_sig_free(m);
    if (!ok) {
      set_pid(s, k, 0);
      if (!s->reason) s->reason = static_reason("failed to start");
      *failed = 1;
    }
  }
  mb_sched_disarm_wait(p);
  atomic_store(&p->call_to, 0);
  s->waiting = 0;
  return 1;
}

/* ---- running a job ---- */

static void finish_job(mb_proc *p, sup *s);

/* k's restart failed: try it again once what is queued now has been handled (as
 * OTP's try_again_restart), so that calls, the parent's exit and a node shutdown
 * get through between attempts. A message to itself names k (see retry). -1
 * without memory. */
static int retry_later(mb_proc *p, kid *k) {
  mb_buf b;
  mb_tw w;
  if (reply_begin(&b, &w) != 0) return -1;
  write_id(&w, k);
  if (mb_tw_finish(&w) != 0) { mb_buf_free(&b); return -1; }
  mb_pid self = atomic_load(&p->pid);
  if (mb_send_sig(p->node, self, mb_sig_from_buf(&b, MB_SIG_MSG, self, 0)) != 0) return -1;
  k->restarting = 1;
  return 0;
}

/* A start in the job failed (s->reason, s->failed). */
static void start_failed(mb_proc *p, sup *s, kid *k) {
  s->failed = k;
  if (s->end == J_RESTART) {
    report(p, s, MB_LOG_ERROR, k, 0, "failed to restart", s->reason);
    mb_sig *why = s->reason;
    s->reason = NULL;
    s->failed = NULL;
    if (count_restart(s) != 0) give_up(p, s, k, 0, why);
    else if (retry_later(p, k) == 0) s->at = s->nsteps;   /* the rest waits for the retry */
    mb_sig_free(why);
    return;   /* else s->at stays: the same start is tried again at once */
  }
  if (s->end == J_BOOT) {   /* stop what started, then fail */
    mb_sig *why = failed_to_start(k, s->reason);
    mb_sig_free(s->reason);
    s->reason = why;
    s->nsteps = s->at = 0;
    s->end = J_EXIT;
    s->failed = k;
    for (kid *j = k->prev; j; j = j->prev) if (j->pid) job_add(s, STEP_STOP, j);
    return;
  }
  s->at = s->nsteps;   /* a call's start: answer it */
}

static void run_job(mb_proc *p, sup *s) {
  while (!p->doom) {
    if (s->waiting) {
      int failed;
      if (!poll_step(p, s, &failed)) return;
      kid *k = s->steps[s->at].k;
      if (failed) { start_failed(p, s, k); continue; }
      if (s->steps[s->at].what == STEP_STOP_REMOVE) remove_kid(s, k);
      else if (s->steps[s->at].what == STEP_START && s->end == J_RESTART)
        report(p, s, MB_LOG_INFO, k, k->pid, "restarted", NULL);
      s->at++;
      continue;
    }
    if (s->at >= s->nsteps) { finish_job(p, s); return; }
    step *st = &s->steps[s->at];
    int rc = st->what == STEP_START ? start_kid(p, s, st->k) : stop_kid(p, s, st->k);
    if (rc == 1) continue;   /* poll it: its answer may be there already */
    if (rc < 0) { start_failed(p, s, st->k); continue; }
    if (st->what == STEP_STOP_REMOVE) remove_kid(s, st->k);
    s->at++;
  }
}

static void finish_job(mb_proc *p, sup *s) {
  int end = s->end;
  s->end = J_NONE;
  s->nsteps = s->at = 0;
  kid *k = s->target;
  s->target = NULL;
  switch (end) {
  case J_BOOT:
    ack(p, s, NULL, NULL, 0);
    break;
  case J_START_CHILD:
  case J_RESTART_CHILD:
    if (s->failed) {
      reply_result(p, s, 0, s->reason, NULL, 0);
      if (end == J_START_CHILD) remove_kid(s, s->failed);
    } else {
      reply_result(p, s, 1, NULL, NULL, k ? k->pid : 0);
    }
    break;
  case J_TERMINATE:
    if (k) k->restarting = 0;   /* its retry is called off */
    if (k && k->cs.restart == MB_RESTART_TEMPORARY) remove_kid(s, k);
    reply_result(p, s, 1, NULL, NULL, 0);
    break;
  case J_EXIT:
    ack(p, s, s->reason, NULL, 0);   /* a failed start: no exit signal to the parent */
    mb_native_exit(p, s->reason);
    s->reason = NULL;
    break;
  }
  if (s->reason) { mb_sig_free(s->reason); s->reason = NULL; }
  s->failed = NULL;
}

/* ---- signals ---- */

static void child_ended(mb_proc *p, sup *s, kid *k, mb_sig *e) {
  mb_pid pid = k->pid;
  set_pid(s, k, 0);
  int normal = mb_reason_is_normal(mb_sig_payload(e), e->len);
  int restart = k->cs.restart;
  if (restart == MB_RESTART_TEMPORARY) {
    if (!normal) report(p, s, MB_LOG_ERROR, k, pid, "terminated", e);
    remove_kid(s, k);
    return;
  }
  if (restart == MB_RESTART_TRANSIENT && normal) return;
  report(p, s, MB_LOG_ERROR, k, pid, "terminated", e);
  if (count_restart(s) != 0) { give_up(p, s, k, pid, e); run_job(p, s); return; }
  plan_restart(s, k);
  run_job(p, s);
}

/* Read a child id from the request cursor into c (a string id points into the request). */
static int read_id(mb_tr *r, mb_child_spec *c) {
  memset(c, 0, sizeof *c);
  if (mb_tr_type(r) == MB_TT_INT) { c->id_is_int = 1; return mb_tr_int(r, &c->id_int); }
  const char *id;
  if (mb_tr_string(r, &id, &c->id_len) != 0) return -1;
  c->id = (char *)id;
  return 0;
}

static void which_children(mb_proc *p, sup *s) {
  mb_buf b;
  mb_tw w;
  if (reply_begin(&b, &w) != 0) return;
  mb_tw_table(&w, (uint64_t)s->nkids);
  for (kid *k = s->first; k; k = k->next) {
    mb_tw_table(&w, 0);
    mb_tw_string(&w, "id");
    write_id(&w, k);
    if (k->pid) { mb_tw_string(&w, "pid"); mb_tw_pid(&w, k->pid); }
    mb_tw_string(&w, "type");
    mb_tw_string(&w, k->cs.type == MB_TYPE_SUPERVISOR ? "supervisor" : "worker");
    mb_tw_string(&w, "module");
    mb_tw_string(&w, k->cs.module);
    mb_tw_end(&w);
  }
  mb_tw_end(&w);
  reply_with(p, s, &b, &w);
}

static void count_children(mb_proc *p, sup *s) {
  int64_t active = 0, sups = 0;
  for (kid *k = s->first; k; k = k->next) {
    if (k->pid) active++;
    if (k->cs.type == MB_TYPE_SUPERVISOR) sups++;
  }
  mb_buf b;
  mb_tw w;
  if (reply_begin(&b, &w) != 0) return;
  mb_tw_table(&w, 0);
  mb_tw_string(&w, "specs"); mb_tw_int(&w, s->nkids);
  mb_tw_string(&w, "active"); mb_tw_int(&w, active);
  mb_tw_string(&w, "supervisors"); mb_tw_int(&w, sups);
  mb_tw_string(&w, "workers"); mb_tw_int(&w, s->nkids - sups);
  mb_tw_end(&w);
  reply_with(p, s, &b, &w);
}

static void start_child(mb_proc *p, sup *s, const char *spec, size_t len) {
  mb_child_spec cs;
  char err[256];
  if (mb_child_spec_parse(spec, len, &cs, err, sizeof err) != 0) { reply_result(p, s, 0, NULL, err, 0); return; }
  if (!cs.id_is_int && !cs.id) {   /* the next id above every integer id so far */
    if (s->next_id == INT64_MAX) { mb_child_spec_clear(&cs); reply_result(p, s, 0, NULL, "no free child id", 0); return; }
    cs.id_is_int = 1;
    cs.id_int = ++s->next_id;
  }
  kid *old = by_id(s, &cs);
  if (old) {
    mb_child_spec_clear(&cs);
    reply_result(p, s, 0, NULL, old->pid ? "already_started" : "already_present", old->pid);
    return;
  }
  if (cs.id_is_int && cs.id_int > s->next_id) s->next_id = cs.id_int;
  kid *k = add_kid(s, &cs);
  if (!k) { reply_result(p, s, 0, NULL, "not enough memory", 0); return; }
  job_begin(s, J_START_CHILD);
  s->target = k;
  job_add(s, STEP_START, k);
  run_job(p, s);
}

static void on_call(mb_proc *p, sup *s, mb_sig *m) {
  s->call_from = m->from;
  s->call_ref = m->ref;
  if (m->flags & MB_SIGF_SYSTEM) {   /* gen_server.stop on a supervisor */
    job_begin(s, J_EXIT);
    s->reason = mb_sig_share(m, MB_SIG_EXIT, 0, 0);
    if (!s->reason) s->reason = static_reason("shutdown");
    add_stop_all(s);
    run_job(p, s);
    return;
  }
  mb_tr r;
  uint64_t narr;
  uint32_t nh;
  const char *name = NULL;
  size_t oplen;
  char op[32];
  if (mb_tr_open(&r, mb_sig_payload(m), m->len) != 0 || mb_tr_enter(&r, &narr, &nh) != 0 ||
      mb_tr_string(&r, &name, &oplen) != 0 || oplen >= sizeof op || memchr(name, '\0', oplen)) {
    reply_result(p, s, 0, NULL, "bad request", 0);
    mb_tr_close(&r);
    return;
  }
  memcpy(op, name, oplen);   /* the reader's strings point into the request, unterminated */
  op[oplen] = 0;
  mb_child_spec id;
  kid *k = NULL;
  int has_id = strcmp(op, "terminate_child") == 0 || strcmp(op, "restart_child") == 0 ||
               strcmp(op, "delete_child") == 0;
  if (has_id) {
    if (read_id(&r, &id) != 0) { reply_result(p, s, 0, NULL, "not_found", 0); mb_tr_close(&r); return; }
    k = by_id(s, &id);
    if (!k) { reply_result(p, s, 0, NULL, "not_found", 0); mb_tr_close(&r); return; }
  }
  if (strcmp(op, "which_children") == 0) {
    which_children(p, s);
  } else if (strcmp(op, "count_children") == 0) {
    count_children(p, s);
  } else if (strcmp(op, "start_child") == 0) {
    const char *spec;
    size_t len;
    /* the child decodes the normal form's args as they are: only moonbeam.supervisor
     * sends one, never gen_server.call (a hand-made encoding could forge refs) */
    if (!(m->flags & MB_SIGF_TRUSTED) || mb_tr_string(&r, &spec, &len) != 0)
      reply_result(p, s, 0, NULL, "bad request", 0);
    else start_child(p, s, spec, len);
  } else if (strcmp(op, "terminate_child") == 0) {
    job_begin(s, J_TERMINATE);
    s->target = k;
    job_add(s, STEP_STOP, k);
    run_job(p, s);
  } else if (strcmp(op, "restart_child") == 0) {
    if (k->pid || k->restarting) { reply_result(p, s, 0, NULL, k->pid ? "running" : "restarting", 0); }
    else { job_begin(s, J_RESTART_CHILD); s->target = k; job_add(s, STEP_START, k); run_job(p, s); }
  } else if (strcmp(op, "delete_child") == 0) {
    if (k->pid || k->restarting) reply_result(p, s, 0, NULL, k->pid ? "running" : "restarting", 0);
    else { remove_kid(s, k); reply_result(p, s, 1, NULL, NULL, 0); }
  } else {
    reply_result(p, s, 0, NULL, "bad request", 0);
  }
  mb_tr_close(&r);
}

/* The retry of a failed restart (retry_later), unless the child was started or
 * stopped meanwhile (a strategy's restart, terminate_child). */
static void retry(mb_proc *p, sup *s, const mb_sig *m) {
  mb_tr r;
  mb_child_spec id;
  if (mb_tr_open(&r, mb_sig_payload(m), m->len) != 0) return;
  kid *k = read_id(&r, &id) == 0 ? by_id(s, &id) : NULL;
  mb_tr_close(&r);
  if (!k || !k->restarting || k->pid) return;
  k->restarting = 0;
  plan_restart(s, k);
  run_job(p, s);
}

static void on_signal(mb_proc *p, sup *s, mb_sig *m) {
  if (m->kind == MB_SIG_CALL) {
    on_call(p, s, m);
  } else if (m->kind == MB_SIG_EXIT) {
    kid *k = by_pid(s, m->from);
    if (k) {
      child_ended(p, s, k, m);
    } else if (m->from == s->parent) {   /* the parent's end is ours: children first */
      job_begin(s, J_EXIT);
      s->reason = mb_sig_share(m, MB_SIG_EXIT, 0, 0);
      if (!s->reason) s->reason = static_reason("shutdown");
      add_stop_all(s);
      run_job(p, s);
    }   /* others: ignored */
  } else if (m->kind == MB_SIG_MSG && m->from == atomic_load(&p->pid)) {
    retry(p, s, m);
  }   /* other messages, casts, DOWNs of nothing we wait for: dropped */
  mb_sig_free(m);
}

static void handle(mb_proc *p, void *data) {
  sup *s = data;
  if (s->end != J_NONE) { run_job(p, s); if (s->end != J_NONE) return; }
  mb_sig *m;
  while (!p->doom && s->end == J_NONE && (m = mb_native_next(p)) != NULL) on_signal(p, s, m);
}

static void init(mb_proc *p, void *data) {
  sup *s = data;
  mb_native_trap_exit(p, 1);
  if (s->spec->name) {
    mb_node *n = p->node;
    if (mb_registry_add(n, s->spec->name, s->spec->name_len, atomic_load(&p->pid)) != 0) {
      mb_pid holder = mb_registry_whereis(n->reg, s->spec->name, s->spec->name_len);
      ack(p, s, NULL, "already_started", holder);
      mb_native_exit(p, mb_sig_static("normal"));
      return;
    }
  }
  job_begin(s, J_BOOT);
  for (kid *k = s->first; k; k = k->next) job_add(s, STEP_START, k);
  run_job(p, s);
}

static void destroy(void *data, const mb_sig *reason) {
  (void)reason;
  sup *s = data;
  for (kid *k = s->first, *next; k; k = next) { next = k->next; mb_child_spec_clear(&k->cs); free(k); }
  free(s->pid_tab);
  free(s->id_tab);
  free(s->times);
  free(s->steps);
  if (s->reason) mb_sig_free(s->reason);
  mb_sup_spec_free(s->spec);
  free(s);
}

static const mb_native_ops sup_ops = { "supervisor", init, handle, destroy };

int mb_supervisor_spawn(mb_proc *self, mb_sup_spec *spec, uint64_t ref, mb_pid *pid) {
  sup *s = calloc(1, sizeof *s);
  if (!s) { mb_sup_spec_free(spec); return MB_ENOMEM; }
  s->spec = spec;
  s->parent = atomic_load(&self->pid);
  s->ack_ref = ref;
  for (int i = 0; i < spec->nchildren; i++) {
    if (spec->children[i].id_is_int && spec->children[i].id_int > s->next_id) s->next_id = spec->children[i].id_int;
    if (!add_kid(s, &spec->children[i])) { destroy(s, NULL); return MB_ENOMEM; }
  }
  free(spec->children);
  spec->children = NULL;
  spec->nchildren = 0;
  int root = !(self->kind == MB_PK_NATIVE && self->native_ops == &sup_ops);
  int rc = mb_native_spawn_call(self->node, &sup_ops, s, self, ref, pid);
  if (rc != 0) { destroy(s, NULL); return rc; }
  if (root) {   /* a tree's root: the node's shutdown stops it before the rest */
    mb_proc *q = mb_proc_get(self->node, *pid);
    if (q) { atomic_store(&q->tree_root, 1); mb_proc_unref(q); }
  }
  return 0;
}
