/* node: one moonbeam runtime — its schedulers, process table, names, code cache,
 * timers registry, I/O thread and lifecycle. Owned by the embedder (mb_node_new /
 * mb_node_free); everything else in the core hangs off it. */
#ifndef MB_NODE_H
#define MB_NODE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <lua.h>
#include "moonbeam.h"
#include "proc.h"
#include "alloc.h"
#include "clock.h"

typedef struct mb_ptab mb_ptab;
typedef struct mb_registry mb_registry;
typedef struct mb_codecache mb_codecache;
typedef struct mb_io mb_io;
typedef struct mb_timers mb_timers;
typedef struct mb_htab mb_htab;

/* Preloaded modules: `require name` in any process state calls `open`. */
typedef struct mb_preload { char *name; lua_CFunction open; struct mb_preload *next; } mb_preload;

/* The bindings set this: it turns a new lua_State into a process environment of
 * node n. It may run before the process is known (p NULL: the state pool opens its
 * states ahead of time), so it must not depend on p; what needs the process it
 * looks up later, when the process's code runs (mb_proc_of). */
typedef int (*mb_open_state_fn)(lua_State *L, struct mb_node *n, mb_proc *p);

/* The node's state only moves forward (a CAS): NEW -> RUNNING -> STOPPING -> STOPPED,
 * or NEW -> STOPPED. STOPPED means "done": no Lua runs any more; the threads leave on
 * `quit` and are joined by the first waiter (or by free), the only gate to freeing. */
enum { MB_NODE_NEW, MB_NODE_RUNNING, MB_NODE_STOPPING, MB_NODE_STOPPED };

struct mb_node {
  mb_node_opts opts;
  char *path;                    /* full search path: user's; ./?.lua;./?/init.lua; library */
  _Atomic int log_level;
  size_t max_message;

  int nsched;
  mb_sched **sched;
  mb_ptab *ptab;
  mb_registry *reg;
  mb_codecache *codes;
  mb_timers *timers;             /* ref -> timer, for cancel_timer from anywhere */
  mb_io *io;
  mb_htab *handles;              /* I/O handles: id -> kind, owner, resource (handle.c) */
  mb_arena arena;                /* memory of process states */
  struct mb_statepool *statepool; /* states made ahead by idle schedulers (statepool.c) */
  struct mb_stateimage *stateimage; /* a state new ones are copied from (stateimage.c), or NULL */
  struct mb_stateimage *stateimage_lua; /* the same with open_lua's too, for Lua bodies (made at
                                         * start, when the preloads are known), or NULL */
  struct mb_ticker *ticker;      /* the preemption ticker (scheduler.c) */
  mb_preload *preloads;
  mb_open_state_fn open_state;
  mb_open_state_fn open_lua;    /* then, for a body in Lua (not a C body), pooled state or not;
                                 * with p NULL, ahead of any process: nonzero if it cannot */

  /* work injected from outside the schedulers (host thread, I/O thread) */
  pthread_mutex_t inject_lock;
  mb_proc *inject_head, *inject_tail;   /* through rq_next */
  _Atomic int inject_count;

  /* idle schedulers */
  _Atomic int nsleeping, nspinning;

  _Atomic uint64_t next_ref;
  _Atomic int64_t live;          /* processes alive, external ones excluded */
  _Atomic int state;
  _Atomic int quit;              /* the scheduler threads leave (set with done) */
  _Atomic int halting;           /* halt() called: run no more Lua */
  int exit_status;
  _Atomic int first_abnormal;
  /* a shutdown is under way: every process, including those spawned from now on,
   * gets an exit signal sharing this reason ("shutdown", then "kill") */
  _Atomic(mb_sig *) late_exit;
  mb_sig *shutdown_sigs[2];      /* kept until the node is freed: spawns may share them */
  int keep_alive;                /* a host node runs until stopped, not until empty */

  pthread_mutex_t life_lock;     /* guards state changes; done_cond signals the end */
  pthread_cond_t done_cond;
  int done, joining, joined;
  uint64_t start_ns;
};


/* The core half of mb_node_new: no modules opened. `open_state` prepares each process
 * state (ahead of time too, p NULL: the state pool, the state image); `open_lua` (may
 * be NULL) a process whose body is Lua, as it starts (ahead of time too, for the
 * state image of Lua bodies, if it returns 0 with p NULL). */
mb_node *mb_node_create(const mb_node_opts *opts, mb_open_state_fn open_state, mb_open_state_fn open_lua);
uint64_t mb_node_make_ref(mb_node *n);

/* A process ended (called by mb_proc_finish). */
void mb_node_proc_ended(mb_node *n, mb_proc *p, int abnormal);
/* halt(code): stop running Lua, end the node with that status. */
void mb_node_halt(mb_node *n, int code);
/* Send an exit signal with reason `reason` from no process to every live process. */
void mb_node_exit_all(mb_node *n, const char *reason);
/* The shutdown policy (SIGINT/SIGTERM): hard = 0 sends exit "shutdown" to every
 * process, hard = 1 "kill"; either also reaches processes spawned afterwards. */
void mb_node_shutdown(mb_node *n, int hard);
/* Supervision trees first: ask every tree's root supervisor not asked yet to stop
 * (top-down, children last started first) — at the first call (first set: logged)
 * and at each poll, for roots started since. Returns how many roots live. */
int mb_node_shutdown_trees(mb_node *n, int first);
/* A process just published: if a shutdown is under way, it gets its signal too. */
void mb_node_spawned(mb_node *n, mb_proc *p);

#endif
