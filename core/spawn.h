/* spawn: creating a process from a module or a dumped function, building its
 * lua_State (on its own counting allocator, alloc.c) on its first run, and turning the
 * end of its body into an exit reason and, for errors, a crash report. */
#ifndef MB_SPAWN_H
#define MB_SPAWN_H

#include "node.h"
#include "code.h"

typedef struct mb_spawn_req {
  mb_code *code;             /* a module (the request's reference passes to the process) */
  const char *fn; size_t fn_len;  /* or a function dumped with string.dump */
  mb_sig *args;              /* encoded arguments (mb_encode_values), taken; NULL = none */
  size_t max_heap;
  mb_proc *link;             /* link the new process with this one */
  mb_proc *monitor;          /* this one monitors the new process with ref mref */
  uint64_t mref;
  int call_monitor;          /* the monitor is a call's (mref live in its calls, call.h):
                              * only the new process's side is made */
  int first;                 /* the CLI's first process */
  int handoff;               /* the spawner waits for the new process's start (a
                              * gen_server's init): it runs next, on this thread */
  int script;                /* run the chunk itself as the body, `...` = arguments */
  /* or a C body (the gen_server loop), called with the process as a light userdata
   * (which Lua code cannot make: the body refuses any other first argument); it
   * reads `args` (one value in mb_encode's form, not a list) from p->args in C and
   * frees it, so none of it becomes Lua values it does not need; `module` is what
   * mb.info shows */
  lua_CFunction body;
  const char *module;
} mb_spawn_req;

/* Create and schedule a process. 0 and *out, or MB_E*. On failure the request's code
 * and args are released. */
int mb_spawn_proc(mb_node *n, mb_spawn_req *r, mb_pid *out);

/* Set up a new Lua state as every process state starts (its panic handler, its
 * first GC credit); the state pool's are made with it too. */
void mb_spawn_prepare(lua_State *L);

/* Whether a closed state's blocks wait on the free lists of cache c (by its first
 * block: the lua_State and global state), on a node with a state image. */
struct mb_acache;
int mb_spawn_closed_state_here(mb_node *n, const struct mb_acache *c);

/* Run the node's open_state (and, if lua, its open_lua) on a state made ahead of any
 * process (p NULL: the state pool's, the state images), protected: LUA_OK, else an
 * error (a memory error, or open_lua declining), with the state's stack left empty. */
int mb_spawn_open_ahead(lua_State *L, mb_node *n, int lua);

/* [owner] First run: build the state, load the code, decode the arguments onto its
 * main thread, which runs the body. On failure sets p->doom. */
void mb_spawn_start(mb_proc *p);
/* [owner] The body ended: status LUA_OK (returned, or doomed) or an error status with
 * the error value on top of p->L. Reports crashes and finishes the process. */
void mb_spawn_end(mb_proc *p, int status);

/* Close a process state without running any of its code but finalizers: the body
 * may be suspended (a kill) or errored on the main thread with to-be-closed
 * variables pending, and a process that has ended runs none of them. */
void mb_spawn_close(lua_State *L);

/* An exit reason (EXIT-shaped signal) of the Lua value at idx: itself if it can be
 * sent within max_message, else its tostring, cut. NULL without memory; raises
 * what a __tostring raises. */
mb_sig *mb_reason_sig(lua_State *L, int idx, size_t max_message);

/* A readable rendering of an encoded exit reason (malloc'd), or NULL. */
char *mb_reason_text(const mb_sig *reason);

#endif
