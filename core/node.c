/* node: creation and teardown of a runtime, its lifecycle (start, wait, stop,
 * halt) and the node-wide counters. A node ends when its last process ends (the
 * CLI), when halt() is called, or when the embedder stops it. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <lauxlib.h>
#include "spawn.h"
#include "node.h"
#include "statepool.h"
#include "stateimage.h"
#include "ptab.h"
#include "registry.h"
#include "code.h"
#include "scheduler.h"
#include "timer.h"
#include "io.h"
#include "log.h"
#include "native.h"
#include "handle.h"

#ifndef MB_LIBDIR
#define MB_LIBDIR "/usr/local/share/moonbeam"
#endif

const char *mb_version_string(void) { return MB_VERSION_STRING; }

const char *mb_strerror(int code) {
  switch (code) {
  case MB_OK: return "ok";
  case MB_ENOMEM: return "out of memory";
  case MB_EINVAL: return "invalid argument";
  case MB_ENOPROC: return "noproc";
  case MB_ENOTFOUND: return "not found";
  case MB_ETIMEOUT: return "timeout";
  case MB_ESTATE: return "node not in a state for this call";
  case MB_EBADMSG: return "value cannot be sent";
  case MB_ETOOBIG: return "message too large";
  case MB_ELIMIT: return "process table full";
  case MB_ESYS: return "system call failed";
  default: return "unknown error";
  }
}

mb_node *mb_node_create(const mb_node_opts *opts, mb_open_state_fn open_state, mb_open_state_fn open_lua) {
  mb_node *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  if (opts) n->opts = *opts;
  n->opts.path = NULL;
  n->opts.log_level = NULL;
  n->nsched = n->opts.schedulers > 0 ? n->opts.schedulers : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (n->nsched < 1) n->nsched = 1;
  n->max_message = n->opts.max_message ? n->opts.max_message : (size_t)64 << 20;
  int level = opts && opts->log_level ? mb_log_level_parse(opts->log_level) : MB_LOG_INFO;
  atomic_store(&n->log_level, level < 0 ? MB_LOG_INFO : level);
  const char *user = opts && opts->path ? opts->path : "";
  size_t len = strlen(user) + 2 * strlen(MB_LIBDIR) + 64;
  n->path = malloc(len);
  if (n->path)
    snprintf(n->path, len, "%s%s./?.lua;./?/init.lua;%s/?.lua;%s/?/init.lua", user,
             *user ? ";" : "", MB_LIBDIR, MB_LIBDIR);
  n->ptab = mb_ptab_new(n->opts.max_processes ? n->opts.max_processes : 1u << 20);
  n->reg = mb_registry_new();
  n->codes = mb_codecache_new();
  n->timers = mb_timers_new();
  n->open_state = open_state;
  n->open_lua = open_lua;
  mb_arena_init(&n->arena);
  n->statepool = mb_statepool_new();   /* none (no memory): every spawn makes its state */
  atomic_store(&n->next_ref, 1);
  pthread_mutex_init(&n->inject_lock, NULL);
  pthread_mutex_init(&n->life_lock, NULL);
  pthread_cond_init(&n->done_cond, NULL);
  n->start_ns = mb_now_ns();
  if (mb_sig_statics_init() != 0 || !n->path || !n->ptab || !n->reg || !n->codes || !n->timers) { mb_node_free(n); return NULL; }
  if (!(n->handles = mb_htab_new())) { mb_node_free(n); return NULL; }
  /* last, on a whole node: open_state runs on it. None (the ASan build, a Lua the
   * image does not work with, no memory): every state is made block by block */
  n->stateimage = mb_stateimage_new(n, 0);
  return n;
}

uint64_t mb_node_make_ref(mb_node *n) { return atomic_fetch_add(&n->next_ref, 1); }

/* Move the state forward to `to` (never back); 1 if this call moved it. */
static int advance(mb_node *n, int from, int to) {
  return atomic_compare_exchange_strong(&n->state, &from, to);
}

/* The node is done: no more Lua runs, the threads leave. Idempotent. */
static void set_done(mb_node *n) {
  pthread_mutex_lock(&n->life_lock);
  if (!n->done) {
    n->done = 1;
    int st = atomic_load(&n->state);
    while (st < MB_NODE_STOPPED && !atomic_compare_exchange_weak(&n->state, &st, MB_NODE_STOPPED)) {}
    atomic_store(&n->quit, 1);
    pthread_cond_broadcast(&n->done_cond);
  }
  pthread_mutex_unlock(&n->life_lock);
  if (n->sched) mb_sched_wake_all(n);
}

void mb_node_proc_ended(mb_node *n, mb_proc *p, int abnormal) {
  if (p->first && abnormal) atomic_store(&n->first_abnormal, 1);
  if (!mb_kind_of(p)->counted) return;
  if (atomic_fetch_sub(&n->live, 1) == 1 &&
      (!n->keep_alive || atomic_load(&n->state) == MB_NODE_STOPPING))
    set_done(n);
}

void mb_node_halt(mb_node *n, int code) {
  pthread_mutex_lock(&n->life_lock);
  if (!atomic_load(&n->halting)) {
    n->exit_status = code;
    atomic_store(&n->halting, 1);
  }
  pthread_mutex_unlock(&n->life_lock);
  fflush(NULL);
  set_done(n);
}

static mb_pid *realloc_room(void *ud, size_t cap) {
  mb_pid **held = ud, *v = realloc(*held, sizeof *v * cap);
  if (!v) { free(*held); *held = NULL; return NULL; }
  return *held = v;
}

/* Every live process's pid (malloc'd), or NULL with *k = 0. */
static mb_pid *list_pids(mb_node *n, size_t *k) {
  mb_pid *held = NULL, *pids;
  *k = mb_ptab_snapshot(n->ptab, realloc_room, &held, &pids);
  return pids;
}

void mb_node_exit_all(mb_node *n, const char *reason) {
  size_t k;
  mb_sig *r = mb_sig_string(MB_SIG_EXIT, 0, 0, reason);   /* one payload, shared by all */
  mb_pid *pids = r ? list_pids(n, &k) : NULL;
  for (size_t i = 0; pids && i < k; i++) {
    mb_sig *s = mb_sig_share(r, MB_SIG_EXIT, 0, 0);
    if (s) mb_send_sig(n, pids[i], s);
  }
  free(pids);
  if (r) mb_sig_free(r);
}

int mb_node_shutdown_trees(mb_node *n, int first) {
  size_t k;
  int left = 0;
  mb_pid *pids = list_pids(n, &k);
  for (size_t i = 0; pids && i < k; i++) {
    mb_proc *p = mb_proc_get(n, pids[i]);
    if (!p) continue;
    if (atomic_load(&p->tree_root) && mb_proc_alive(p)) {
      left++;
      /* each root is asked once (1 -> 2), also one started since the first call:
       * gen_server.stop's request, from no process: it stops its children, last
       * started first, each within its shutdown, then ends */
      uint8_t unasked = 1;
      if (atomic_compare_exchange_strong(&p->tree_root, &unasked, 2)) {
        mb_sig *s = mb_sig_string(MB_SIG_CALL, 0, mb_node_make_ref(n), "shutdown");
        if (s) { s->flags = MB_SIGF_SYSTEM; mb_send_sig_to(p, s); }
        else atomic_store(&p->tree_root, 1);   /* no memory: asked at the next poll */
      }
    }
    mb_proc_unref(p);
  }
  free(pids);
  if (first && left)
    mb_log(n, MB_LOG_INFO, 0, "shutdown: stopping %d supervision tree%s top-down", left, left == 1 ? "" : "s");
  return left;
}

void mb_node_shutdown(mb_node *n, int hard) {
  mb_log(n, MB_LOG_INFO, 0, "%s", hard ? "shutdown: killing what is left" : "shutdown: exit shutdown to every process");
  pthread_mutex_lock(&n->life_lock);
  mb_sig **slot = &n->shutdown_sigs[hard ? 1 : 0];
  if (!*slot) *slot = mb_sig_string(MB_SIG_EXIT, 0, 0, hard ? "kill" : "shutdown");
  mb_sig *r = *slot;
  pthread_mutex_unlock(&n->life_lock);
  if (!r) { mb_node_exit_all(n, hard ? "kill" : "shutdown"); return; }
  /* published before the list is taken: a process spawned meanwhile is either
   * listed or sees it (mb_node_spawned), possibly both (then it gets it twice) */
  atomic_store(&n->late_exit, r);
  size_t k;
  mb_pid *pids = list_pids(n, &k);
  for (size_t i = 0; pids && i < k; i++) {
    mb_sig *s = mb_sig_share(r, MB_SIG_EXIT, 0, 0);
    if (s) mb_send_sig(n, pids[i], s);
  }
  free(pids);
}

void mb_node_spawned(mb_node *n, mb_proc *p) {
  mb_sig *r = atomic_load(&n->late_exit);
  if (!r) return;
  mb_sig *s = mb_sig_share(r, MB_SIG_EXIT, 0, 0);
  if (s) mb_send_sig_to(p, s);
}

/* Join the threads once: the first caller joins, any other waits until it has. */
static void join_once(mb_node *n) {
  pthread_mutex_lock(&n->life_lock);
  if (!n->joining) {
    n->joining = 1;
    pthread_mutex_unlock(&n->life_lock);
    mb_sched_join_all(n);
    if (n->io) { mb_io_stop(n->io); n->io = NULL; }
    pthread_mutex_lock(&n->life_lock);
    n->joined = 1;
    pthread_cond_broadcast(&n->done_cond);
  }
  while (!n->joined) pthread_cond_wait(&n->done_cond, &n->life_lock);
  pthread_mutex_unlock(&n->life_lock);
}

int mb_node_start(mb_node *n) {
  if (!advance(n, MB_NODE_NEW, MB_NODE_RUNNING)) return MB_ESTATE;
  /* the preloads are known now (mb_node_preload comes before start); before the
   * scheduler threads, which read it */
  if (n->stateimage && n->open_lua) n->stateimage_lua = mb_stateimage_new(n, 1);
  n->io = mb_io_start(n, n->opts.handle_signals);
  int rc = n->io ? mb_sched_start_all(n) : MB_ESYS;
  if (rc != 0) {
    /* leave a stopped node: the threads that did start leave and are joined */
    set_done(n);
    join_once(n);
  }
  return rc;
}

int mb_node_wait(mb_node *n) {
  pthread_mutex_lock(&n->life_lock);
  while (!n->done) pthread_cond_wait(&n->done_cond, &n->life_lock);
  pthread_mutex_unlock(&n->life_lock);
  join_once(n);
  if (atomic_load(&n->halting)) return n->exit_status;
  return atomic_load(&n->first_abnormal) ? 1 : 0;
}

int mb_node_run(mb_node *n) {
  int rc = mb_node_start(n);
  if (rc != 0) return rc;
  if (atomic_load(&n->live) == 0) set_done(n);
  return mb_node_wait(n);
}

int mb_node_stop(mb_node *n) {
  if (advance(n, MB_NODE_NEW, MB_NODE_STOPPED)) {
    pthread_mutex_lock(&n->life_lock);
    n->done = n->joining = n->joined = 1;
    atomic_store(&n->quit, 1);
    pthread_mutex_unlock(&n->life_lock);
    return 0;
  }
  if (advance(n, MB_NODE_RUNNING, MB_NODE_STOPPING)) {
    /* a process ending from now on sees STOPPING and ends the node if it is the last */
    if (atomic_load(&n->live) == 0) set_done(n);
    else mb_node_exit_all(n, "kill");
  }
  return mb_node_wait(n);
}

/* Close what halt left behind: processes that never finished. */
static void reap(mb_node *n) {
  size_t k;
  mb_pid *pids = list_pids(n, &k);
  for (size_t i = 0; i < k; i++) {
    mb_proc *p = mb_proc_get(n, pids[i]);
    if (!p) continue;
    for (mb_sig *m = p->inbox, *next; m; m = next) { next = m->next; mb_sig_free(m); }
    p->inbox = p->inbox_tail = NULL;
    mb_ptab_remove(n->ptab, p);
    atomic_store(&p->state, MB_PS_DEAD);
    mb_resources_close_all(p);
    if (p->L) { mb_spawn_close(p->L); p->L = NULL; }
    if (mb_kind_of(p)->reap) mb_kind_of(p)->reap(p);   /* a native's destroy, once */
    mb_proc_unref(p);   /* ours */
    mb_proc_unref(p);   /* the table's */
  }
  free(pids);
}

void mb_node_free(mb_node *n) {
  if (!n) return;
  /* whatever ended it (stop, halt, its last process), its threads are joined
   * before anything is freed */
  mb_node_stop(n);
  if (n->ptab) reap(n);
  mb_sched_free_all(n);
  if (n->io) mb_io_stop(n->io);
  mb_statepool_free(n->statepool);   /* before the arena its states live in */
  mb_stateimage_free(n->stateimage);
  mb_stateimage_free(n->stateimage_lua);
  mb_timers_free(n->timers);
  mb_htab_free(n->handles);
  mb_codecache_free(n->codes);
  mb_registry_free(n->reg);
  mb_ptab_free(n->ptab, n);
  mb_arena_free(&n->arena);
  for (mb_preload *p = n->preloads, *next; p; p = next) { next = p->next; free(p->name); free(p); }
  for (int i = 0; i < 2; i++) if (n->shutdown_sigs[i]) mb_sig_free(n->shutdown_sigs[i]);
  free(n->path);
  pthread_mutex_destroy(&n->inject_lock);
  pthread_mutex_destroy(&n->life_lock);
  pthread_cond_destroy(&n->done_cond);
  free(n);
}
