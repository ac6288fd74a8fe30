/* proc: a process — its pid, mailbox, links, monitors, flags and counters — and
 * the signals (messages, exits, links, monitors) that travel between processes.
 *
 * Ownership: the process table holds one reference to a live process; a lookup
 * (mb_proc_get) takes another, dropped with mb_proc_unref. Process structs are
 * pooled and never returned to malloc while the node lives, so a stale pointer
 * may be dereferenced safely and its pid checked. Fields marked [owner] are read
 * and written only by the thread running the process; [meta] fields are also
 * read by mb.info from other threads and change under `meta` lock. */
#ifndef MB_PROC_H
#define MB_PROC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <lua.h>
#include "moonbeam.h"
#include "mailbox.h"
#include "codec.h"
#include "sets.h"
#include "lock.h"

typedef struct mb_sched mb_sched;
typedef struct mb_code mb_code;

/* Signal kinds. A signal is one malloc'd block: this header, then its payload. */
enum {
  MB_SIG_MSG,        /* payload: the encoded message */
  MB_SIG_EXIT,       /* payload: the encoded reason; flags: MB_SIGF_LINK */
  MB_SIG_DOWN,       /* ref: monitor ref; payload: the encoded reason */
  MB_SIG_LINK,
  MB_SIG_UNLINK,
  MB_SIG_MONITOR,    /* ref: the monitor's ref */
  MB_SIG_DEMONITOR,  /* ref */
  MB_SIG_REPLY,      /* ref: the call's ref; payload: the encoded reply (receive.c) */
  MB_SIG_CALL,       /* ref: the call's ref, from: the caller; payload: the encoded request.
                      * Draining it makes the caller a monitor of this process (call.c) */
  MB_SIG_CAST,       /* payload: the encoded message (gen_server.cast) */
  MB_SIG_WAKE,       /* ref: an I/O wait's number. Never queued: draining it ends that wait
                      * if it is the process's current one (io_wait), else it is dropped */
};
#define MB_SIGF_LINK   1   /* an EXIT that comes from a link (the sender ended) */
#define MB_SIGF_FATAL  2   /* an EXIT the sender found fatal (see mb_proc_exit_signal) */
#define MB_SIGF_STATIC 4   /* a node-independent constant reason (mb_sig_static): never freed */
#define MB_SIGF_UNMONITORED 8  /* a REPLY whose sender dropped the call's monitor (call.c) */
#define MB_SIGF_SYSTEM 16  /* a CALL that is gen_server.stop: payload = the stop reason */
#define MB_SIGF_TRUSTED 32 /* a CALL made by moonbeam.supervisor, never by gen_server.call:
                            * its request may carry encodings that Lua code must not forge */

/* A signal's payload is inline (data) or another signal's: an exit reason goes
 * to every link and monitor as header-only signals sharing one payload, so no
 * copy of it can fail or cost its size. `refs` counts the holders of a payload. */
typedef struct mb_sig {
  mb_qnode q;              /* must be first: the mailbox link */
  struct mb_sig *next;     /* [owner] the inbox list once drained */
  uint8_t kind, flags;
  uint8_t block;           /* the class of sigblock.h's cache it is a block of (0: a block of its own size) */
  int lref;                /* [owner] registry ref of the decoded value, or LUA_NOREF */
  mb_pid from;
  uint64_t ref;
  struct mb_sig *share;    /* the signal whose payload this one uses, or NULL */
  _Atomic int refs;        /* 1 + the signals sharing this one's payload */
  uint32_t seq;            /* [owner] stamped when appended to the inbox (receive marks) */
  size_t len;              /* payload bytes */
  char data[];
} mb_sig;

#define MB_SIG_HDR (offsetof(mb_sig, data))

static inline const char *mb_sig_payload(const mb_sig *s) { return s->share ? s->share->data : s->data; }

/* Process kinds: Lua body, native C handler (supervisors), or external (a host thread). */
enum { MB_PK_LUA, MB_PK_NATIVE, MB_PK_EXTERNAL };

/* Scheduling states. */
enum { MB_PS_FREE, MB_PS_RUNNABLE, MB_PS_RUNNING, MB_PS_WAITING, MB_PS_DEAD };

/* Why the body yielded to the scheduler. */
enum { MB_Y_NONE, MB_Y_WAIT, MB_Y_PREEMPT, MB_Y_DOOM };

typedef struct mb_proc mb_proc;

/* What differs between process kinds, in one table (proc.c) instead of tests of
 * `kind` across the core. */
typedef struct mb_kind {
  uint8_t counted;      /* in the node's live count and mb.processes() */
  uint8_t traps_all;    /* every exit signal, "kill" too, arrives as an EXIT message */
  uint8_t waits_off_scheduler;  /* a thread outside the schedulers waits on ext_cond */
  int (*run)(mb_proc *p);     /* a C body (1: park it); NULL: the scheduler runs Lua */
  void (*reap)(mb_proc *p);   /* a process that never finished, at node free */
} mb_kind;
extern const mb_kind mb_kinds[];

struct mb_proc {
  _Atomic uint64_t pid;
  _Atomic int refs;

  /* everything from here to `ext` is cleared when the struct returns to the pool.
   * What a message's path touches, on its sender's side and its receiver's, comes
   * first, in the struct's first four cache lines: in a ring of 1000 processes
   * every hop reaches a process whose lines have left the cache. */
  _Atomic int state;
  _Atomic uint8_t dying;        /* a fatal exit signal is on its way: is_alive says false */
  _Atomic uint8_t over_heap;    /* queued messages crossed max_heap: it must end */
  _Atomic uint8_t tree_root;    /* a supervisor no supervisor started: a shutdown stops it first
                                 * (1; 2 once asked to, mb_node_shutdown_trees) */
  uint8_t kind;
  _Atomic uint32_t wait_seq;    /* bumped at every wait; a timer for an old wait is stale */
  mb_node *node;
  mb_mpsc mq;                   /* incoming signals, any thread pushes */
  _Atomic int64_t mq_count;     /* signals pushed on mq and not yet drained */
  _Atomic int64_t mq_ctrl;      /* of those, the control signals (link, monitor, ...) */
  _Atomic int64_t inbox_len;    /* messages drained and not yet received (owner writes) */
  _Atomic int64_t queue_bytes;  /* bytes of queued messages */
  _Atomic int64_t heap_bytes;   /* bytes of the Lua state, fed by its allocator */
  _Atomic uint64_t reductions;  /* [owner] counted by the thread running it, plain stores
                                 * (mb_proc_reduce); the ticker's share is `ticks` */
  size_t max_heap;              /* 0 = unbounded */
  mb_proc *rq_next;             /* the run queue or inject list it is on (RUNNABLE), or,
                                 * pooled, the next struct in the pool */

  /* [owner] */
  lua_State *L;                 /* the process state; its main thread runs the body */
  struct mb_acache *acache;     /* the running scheduler's allocation cache, NULL between runs */
  lua_State *volatile cur;      /* the thread of L now running (user coroutines included) */
  _Atomic uint32_t ticks;       /* [ticker] preemption ticks while it ran: reductions too
                                 * (mb.info adds them; the owner folds them in when large) */
  int nargs;
  uint8_t started, oom, first, script;
  uint8_t selecting;             /* [owner] a selective receive is walking the inbox */
  uint8_t yield_reason;          /* [owner] MB_Y_* */
  uint16_t no_core_yield;        /* [owner] inside a coroutine resumed where a yield cannot pass */
  mb_sig *taken;                 /* [owner] messages unlinked and being decoded (a stack) */
  mb_sig *inbox, *inbox_tail;   /* drained messages, in arrival order */
  mb_sig *doom;                 /* set: the process must end with this reason (EXIT-shaped sig) */
  struct mb_timer *wait_timer;   /* the armed wait timer (its owner scheduler inside), see wait_armed_seq */
  uint32_t wait_armed_seq;      /* the sequence wait_timer was armed for */
  /* [owner] receiving in C (receive.c) */
  uint32_t inbox_seq;            /* the stamp of the last message appended to the inbox */
  uint64_t deadline;             /* [owner] of the current receive/sleep, 0 = none */
  mb_sig *recv_pos;              /* [owner] selective receive: last message examined */
  uint32_t mark_seq;             /* the latest receive mark ... */
  int inbox_replies;             /* REPLY signals in the inbox */
  mb_sig *mark_pos;              /* ... and the last inbox message before it (NULL: none) */
  mb_monset monitored_by;        /* [meta] monitors on this process: ref -> watcher; here, in
                                  * the fourth line, as every send reads whether it is empty */
  void *strcache;                /* [owner] L's decoder cache (mb_decode_in), NULL until known */
  /* a call in progress (call.c): the server it waits on, for deadlock detection, and
   * the call's ref; call_to is 0 when it waits on nobody, or its server let go */
  _Atomic mb_pid call_to;
  _Atomic uint64_t call_ref;

  /* colder: a process's start and end, calls, I/O */
  mb_sig *exit_reason;           /* set at its end: signals that reach it later get this reason */
  uint8_t io_woken;              /* a WAKE for io_wait was drained */
  uint8_t trap_exit;             /* [meta] */
  uint8_t resources_closed;      /* [meta] set at its end: no resource may join the list */
  mb_lock meta;                  /* guards the [meta] fields (a zeroed word is free) */
  uint64_t io_wait, io_waits;    /* the current I/O wait's number (0: none), and the last one given */
  mb_monset calls;               /* live call refs -> the server monitored for it, or 0: a REPLY to another is dropped */
  mb_code *code;                /* what to run: a module ... */
  mb_code *code_next;           /* [owner] a gen_server's upgrade in progress, or its last failed one */
  char *fn_code;                /* ... or a dumped function, fn_len bytes */
  uint32_t fn_len;
  uint32_t name_len;            /* [meta] of `name`, below */
  mb_sig *args;                 /* encoded spawn arguments */
  union {                       /* by kind: */
    lua_CFunction body;         /* a Lua process's C body (spawn.h), or NULL */
    const struct mb_native_ops *native_ops;   /* a native's handler and destroy of data (native.c) */
  };
  void *native_data;

  /* [meta] */
  mb_pidset links;
  mb_monset monitors;      /* monitors this process holds: ref -> target */
  char *name;              /* registered name: name_len bytes (and a NUL) */
  char *module;
  struct mb_resource *resources;   /* closed at its end (handle.h) */

  /* made once per struct (pooled), never copied nor cleared */
  struct mb_extwait *ext;       /* made for the first external process the struct is:
                                 * the host thread waits on its condition */
};

static inline const mb_kind *mb_kind_of(const mb_proc *p) { return &mb_kinds[p->kind]; }

/* [owner] n more reductions. Only the thread running p writes `reductions` (the
 * ticker counts into `ticks`), so a plain load and store do, without a locked
 * add: a message's path counts two. */
static inline void mb_proc_reduce(mb_proc *p, uint64_t n) {
  atomic_store_explicit(&p->reductions, atomic_load_explicit(&p->reductions, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

/* Where a thread outside the schedulers waits for its process's signals. */
typedef struct mb_extwait {
  pthread_mutex_t lock;
  pthread_cond_t cond;
} mb_extwait;

/* The process running on this thread's state L. */
static inline mb_proc *mb_proc_of(lua_State *L) { return *(mb_proc **)lua_getextraspace(L); }

/* Can the core yield the process from L now (block, be preempted, end)? Not
 * inside C calls that cannot yield, nor inside a user coroutine that was resumed
 * from such a place (its yield could not be passed on to the scheduler). */
static inline int mb_proc_can_yield(lua_State *L, mb_proc *p) {
  return lua_isyieldable(L) && !p->no_core_yield;
}

/* A process struct not yet visible to anyone: set its fields, then publish it. */
mb_proc *mb_proc_new(mb_node *n, int kind);
/* Give it a pid and make it visible (lookups find it). 0, or MB_ELIMIT (then p is gone). */
int mb_proc_publish(mb_proc *p);
/* Free a pooled struct for good (the table does this when the node is freed, before
 * its arena). */
void mb_proc_destroy(mb_node *n, mb_proc *p);
/* Return a process that was never published to the pool (its fields are freed). */
void mb_proc_discard(mb_proc *p);
mb_proc *mb_proc_alloc(mb_node *n, int kind);  /* new + publish; NULL if the table is full */
/* Alive as seen from another process: in the table, not ended, no fatal exit on its way. */
int mb_proc_alive(mb_proc *p);
mb_proc *mb_proc_get(mb_node *n, mb_pid pid);  /* +1 ref, or NULL if not alive */
void mb_proc_unref(mb_proc *p);

/* Signals. mb_sig_new returns a signal with an empty payload. */
mb_sig *mb_sig_new(int kind, mb_pid from, uint64_t ref);
/* A payload that is not an encoding: only C code that knows the signal reads it
 * (an I/O thread's answer taken by a C select, core/tcp.c). */
mb_sig *mb_sig_raw(int kind, mb_pid from, uint64_t ref, const void *p, size_t len);
mb_sig *mb_sig_from_buf(mb_buf *b, int kind, mb_pid from, uint64_t ref); /* takes the buffer */
mb_sig *mb_sig_string(int kind, mb_pid from, uint64_t ref, const char *s);  /* payload = encoded s */
mb_sig *mb_sig_copy(const mb_sig *s, int kind, mb_pid from, uint64_t ref);
/* A header-only signal sharing s's payload; NULL only if a header cannot be had. */
mb_sig *mb_sig_share(mb_sig *s, int kind, mb_pid from, uint64_t ref);
/* A constant reason ("normal", "killed", "out of memory", "error", "noproc"), usable as
 * a doom or shared: never allocated, never freed. NULL for another string. */
mb_sig *mb_sig_static(const char *reason);
int mb_sig_statics_init(void);   /* once per program (mb_node_create); 0 or -1 */
void mb_sig_free(mb_sig *s);

/* Deliver a signal; takes ownership. MB_ENOPROC if the target is not alive (then
 * the sender's side of the protocol applies: see mb_proc_send_* below). */
int mb_send_sig(mb_node *n, mb_pid to, mb_sig *s);
int mb_send_sig_to(mb_proc *to, mb_sig *s);   /* to a referenced process */
/* Make a waiting process runnable (a message or timer came). */
void mb_proc_wake(mb_proc *p);

/* The operations of SPEC section 1 that act on other processes. `self` runs on this thread. */
void mb_proc_link(mb_proc *self, mb_pid other);
void mb_proc_unlink(mb_proc *self, mb_pid other);
void mb_proc_monitor(mb_proc *self, mb_pid other, uint64_t ref);
int mb_proc_demonitor(mb_proc *self, uint64_t ref);  /* 1 if it was active */
int mb_proc_exit_signal(mb_proc *self, mb_pid to, mb_sig *reason);  /* exit/2 */

/* [owner] The process must end with reason s (an EXIT-shaped signal, taken; freed
 * if it is doomed already: the first reason wins). */
void mb_proc_doom(mb_proc *p, mb_sig *s);
/* [owner] Take signals off the mailbox: messages go to the inbox, control signals are
 * acted on (which may set p->doom). Inline, the common case of nothing counted
 * (a process drains when it runs and again when it receives); mb_proc_drain_counted
 * does the work. */
void mb_proc_drain_counted(mb_proc *p);
static inline void mb_proc_drain(mb_proc *p) {
  if (atomic_load_explicit(&p->over_heap, memory_order_relaxed) ||
      atomic_load_explicit(&p->mq_count, memory_order_relaxed) > 0)
    mb_proc_drain_counted(p);
}
/* [owner] Remove a message from the inbox (prev = its predecessor or NULL). */
void mb_proc_take(mb_proc *p, mb_sig *prev, mb_sig *m);

/* [owner] The process has ended with `reason` (an EXIT-shaped sig whose payload is the
 * reason, taken). Frees its name, leaves the table, tells links and monitors. */
void mb_proc_finish(mb_proc *p, mb_sig *reason);

#endif
