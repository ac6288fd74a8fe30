/* spawn: process creation and the first and last moments of a Lua process. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include "spawn.h"
#include "scheduler.h"
#include "log.h"
#include "cterm.h"
#include "statepool.h"
#include "stateimage.h"
#include "alloc.h"
#include "term.h"

/* ---- creation ---- */

int mb_spawn_proc(mb_node *n, mb_spawn_req *r, mb_pid *out) {
  if (atomic_load(&n->state) >= MB_NODE_STOPPING && !r->first) goto fail_state;
  if (r->fn && r->fn_len > UINT32_MAX) goto fail_mem;   /* the struct keeps a 32-bit length */
  mb_proc *p = mb_proc_new(n, MB_PK_LUA);
  if (!p) goto fail_mem;
  /* everything another thread may read is set before the pid is published */
  if (r->fn) {
    p->fn_code = malloc(r->fn_len);
    if (!p->fn_code) { mb_proc_discard(p); goto fail_mem; }
    memcpy(p->fn_code, r->fn, r->fn_len);
    p->fn_len = (uint32_t)r->fn_len;
  }
  p->code = r->code;
  p->args = r->args;
  p->max_heap = r->max_heap;
  p->first = (uint8_t)r->first;
  p->script = (uint8_t)r->script;
  p->body = r->body;
  const char *module = r->code ? r->code->name : r->module;
  p->module = module ? strdup(module) : NULL;
  if (module && !p->module) { p->code = NULL; p->args = NULL; mb_proc_discard(p); goto fail_mem; }
  if (mb_proc_publish(p) != 0) {   /* it released the code and the args */
    *out = 0;
    return MB_ELIMIT;
  }
  mb_pid pid = atomic_load(&p->pid);
  if (r->link) {
    mb_pid other = atomic_load(&r->link->pid);
    mb_lock_take(&p->meta);
    mb_pidset_add(&p->links, other);
    mb_lock_give(&p->meta);
    mb_lock_take(&r->link->meta);
    mb_pidset_add(&r->link->links, pid);
    mb_lock_give(&r->link->meta);
  }
  if (r->monitor) {
    mb_lock_take(&p->meta);
    mb_monset_add(&p->monitored_by, r->mref, atomic_load(&r->monitor->pid));
    mb_lock_give(&p->meta);
    if (!r->call_monitor) {
      mb_lock_take(&r->monitor->meta);
      mb_monset_add(&r->monitor->monitors, r->mref, pid);
      mb_lock_give(&r->monitor->meta);
    }
  }
  /* a stop that listed the processes before this one existed must still end it */
  if (atomic_load(&n->state) >= MB_NODE_STOPPING && !r->first) p->doom = mb_sig_static("killed");
  mb_node_spawned(n, p);   /* and so must a shutdown */
  *out = pid;
  mb_sched_ready(n, p, r->handoff);
  return 0;
fail_mem:
  if (r->code) mb_code_unref(r->code);
  if (r->args) mb_sig_free(r->args);
  return MB_ENOMEM;
fail_state:
  if (r->code) mb_code_unref(r->code);
  if (r->args) mb_sig_free(r->args);
  return MB_ESTATE;
}

/* ---- first run ---- */

static int boot_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  if (ctx == 1) {
    /* the chunk returned: a function, or a table with main */
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "main");
      lua_remove(L, -2);
    }
    if (!lua_isfunction(L, -1)) {
      mb_proc *p = mb_proc_of(L);
      return luaL_error(L, "module '%s' returned neither a function nor a table with main",
                        p->module ? p->module : "?");
    }
    lua_replace(L, 1);
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 2, boot_k);
    return boot_k(L, LUA_OK, 2);
  }
  return lua_gettop(L);
}

/* The body of a module process: run the chunk, then its function with the arguments. */
static int boot(lua_State *L) {
  lua_pushvalue(L, 1);
  lua_callk(L, 0, 1, 1, boot_k);
  return boot_k(L, LUA_OK, 1);
}

/* The functions below run on the process's main state with the process as a
 * light userdata argument. Lua code can reach them there (debug.getinfo in a
 * finalizer or a __tostring) but cannot make a light userdata: checked first. */
static mb_proc *proc_arg(lua_State *L) {
  mb_proc *p = lua_touserdata(L, 1);
  if (lua_type(L, 1) != LUA_TLIGHTUSERDATA || p != mb_proc_of(L)) luaL_error(L, "not for scripts");
  return p;
}

#define OPENED_STATE 1   /* open_state has run on the state (a pooled state, an image's copy) */
#define OPENED_LUA 2     /* open_lua has too (the copy of the image for Lua bodies) */

/* Opens the state (what it did not come with: `opened`, at 2) and returns the body's
 * function and its arguments, which mb_spawn_start leaves on the main thread's stack
 * for the first resume: the body runs on the state's main thread (a coroutine more
 * would cost ~0.9 KB a process). */
static int start_protected(lua_State *L) {
  mb_proc *p = proc_arg(L);
  int opened = (int)lua_tointeger(L, 2);
  lua_settop(L, 1);
  if (p->node->open_state && !(opened & OPENED_STATE)) p->node->open_state(L, p->node, p);
  if (p->node->open_lua && !p->body && !(opened & OPENED_LUA)) p->node->open_lua(L, p->node, p);
  int base = lua_gettop(L), nargs = 0;
  if (p->body) {
    lua_pushcfunction(L, p->body);
    lua_pushlightuserdata(L, p);   /* proves the call is the core's (see mb_spawn_req) */
    nargs = 1;
  } else if (p->code) {
    if (!p->script) { lua_pushcfunction(L, boot); nargs = 1; }
    if (mb_code_load(L, p->code) != LUA_OK) return lua_error(L);
  } else {
    if (luaL_loadbufferx(L, p->fn_code, p->fn_len, "=spawned function", "b") != LUA_OK)
      return lua_error(L);
  }
  if (p->args && !p->body) {   /* a C body reads its own (made by the core) from p->args */
    int k = mb_decode_values(L, p->args->data, p->args->len);
    if (k < 0) return luaL_error(L, "spawn: corrupt arguments");
    nargs += k;
  }
  p->nargs = nargs;
  return lua_gettop(L) - base;
}

/* Doom p with the text reason msg (a constant one if even that cannot be had). */
static void doom_text(mb_proc *p, const char *msg) {
  mb_sig *s = mb_sig_string(MB_SIG_EXIT, 0, 0, msg);
  p->doom = s ? s : mb_sig_static("error");
}

/* Every call the core makes into a state runs protected; a panic means one did
 * not. Say which process and what, before Lua aborts. */
static int on_panic(lua_State *L) {
  mb_proc *p = mb_proc_of(L);
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
  mb_log(p ? p->node : NULL, MB_LOG_ERROR, p ? atomic_load(&p->pid) : 0,
         "Lua panic (an unprotected call into a process state, a core bug): %s", msg);
  return 0;
}

#define FIRST_GC_CREDIT_KB 11   /* a bare state is ~5 KB */

void mb_spawn_prepare(lua_State *L) {
  lua_atpanic(L, on_panic);
  /* Lua starts a state with no GC credit, so its first allocations run a whole
   * cycle over a heap with no garbage in it yet. Start instead as a cycle would
   * leave a started process (~8 KB live, the default pause of 200%): the first
   * cycle when the heap passes ~16 KB. A negative step only sets the debt. */
  lua_gc(L, LUA_GCSTEP, -FIRST_GC_CREDIT_KB);
}

/* A copy of the node's state image, set up as lua_newstate(mb_proc_lua_alloc, p),
 * mb_spawn_prepare and the node's open_state would have left a new state, counting
 * the same bytes; NULL if the node has no image or no memory, or the state alone
 * would pass max_heap (the new state's way then fails as it should). */
static lua_State *state_from_image(mb_proc *p, int *opened) {
  mb_node *n = p->node;
  const mb_stateimage *im = !p->body && n->stateimage_lua ? n->stateimage_lua : n->stateimage;
  if (!im) return NULL;
  int64_t bytes = mb_stateimage_bytes(im);
  if (p->max_heap && (uint64_t)bytes > p->max_heap) return NULL;
  void *dst = mb_arena_alloc_run(&n->arena, p->acache, mb_stateimage_size(im));
  if (!dst) return NULL;
  lua_State *L = mb_stateimage_copy(im, dst);
  *opened = im == n->stateimage_lua ? OPENED_STATE | OPENED_LUA : OPENED_STATE;
  lua_setallocf(L, mb_proc_lua_alloc, p);
  *(mb_proc **)lua_getextraspace(L) = p;
  atomic_store_explicit(&p->heap_bytes, bytes, memory_order_relaxed);
  return L;
}

static int open_ahead(lua_State *L) {
  mb_node *n = lua_touserdata(L, 1);
  int lua = lua_toboolean(L, 2);
  lua_settop(L, 0);
  if (n->open_state) n->open_state(L, n, NULL);
  if (lua && (!n->open_lua || n->open_lua(L, n, NULL) != 0)) return luaL_error(L, "cannot open ahead");
  return 0;
}

int mb_spawn_closed_state_here(mb_node *n, const mb_acache *c) {
  return n->stateimage && mb_arena_has_free(c, mb_stateimage_first_block(n->stateimage));
}

int mb_spawn_open_ahead(lua_State *L, mb_node *n, int lua) {
  lua_pushcfunction(L, open_ahead);
  lua_pushlightuserdata(L, n);
  lua_pushboolean(L, lua);
  int st = lua_pcall(L, 2, 0, 0);
  lua_settop(L, 0);
  return st;
}

void mb_spawn_start(mb_proc *p) {
  p->started = 1;
  /* A copy is a run of new bytes. A closed state's blocks waiting on this thread's
   * free lists (its first block, the lua_State and global state, has a size few
   * other blocks have) are taken back by a new state made here block by block; one
   * an idle scheduler made from the blocks of states closed there comes next (the
   * pool fills only from those, mb_statepool_fill); else the copy. Copies alone
   * would leave closed states' blocks on the lists: a node that spawns and ends
   * processes would grow without bound. */
  int opened = 0;
  lua_State *L = NULL;
  if (!mb_spawn_closed_state_here(p->node, p->acache)) {
    if ((L = mb_statepool_take(p->node, p))) opened = OPENED_STATE;
    else L = state_from_image(p, &opened);
  }
  if (!L) {
    L = lua_newstate(mb_proc_lua_alloc, p);
    if (!L) { p->doom = mb_sig_static("out of memory"); return; }
    mb_spawn_prepare(L);
    *(mb_proc **)lua_getextraspace(L) = p;
  }
  p->L = L;
  lua_pushcfunction(L, start_protected);
  lua_pushlightuserdata(L, p);
  lua_pushinteger(L, opened);
  int st = lua_pcall(L, 2, LUA_MULTRET, 0);
  if (st != LUA_OK) {
    const char *msg = st == LUA_ERRMEM || p->oom ? "out of memory" : lua_tostring(L, -1);
    doom_text(p, msg ? msg : "spawn failed");
    if (st != LUA_ERRMEM && !p->oom)
      mb_log(p->node, MB_LOG_ERROR, atomic_load(&p->pid), "crash report: process could not start: %s",
             msg ? msg : "?");
    lua_settop(L, 0);
  }
  free(p->fn_code); p->fn_code = NULL; p->fn_len = 0;
  if (p->args && !p->body) { mb_sig_free(p->args); p->args = NULL; }
}

/* ---- the end ---- */

/* Raises at every function entry: a `__close` handler (C or Lua) is refused before
 * it runs anything. */
static void refuse_calls(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_pushboolean(L, 0);
  lua_error(L);
}

void mb_spawn_close(lua_State *L) {
  /* lua_close would unwind a suspended or errored main thread and call its
   * pending `__close` handlers. Reset it first, with every call refused: the
   * handlers are dropped one by one, and the thread is left as a fresh one (status
   * OK, base frame), so a finalizer that lua_close runs next finds no suspended
   * thread to resume. Finalizers run as on any lua_close (Lua runs them unhooked). */
  lua_sethook(L, refuse_calls, LUA_MASKCALL | LUA_MASKCOUNT, 1);
  lua_resetthread(L);
  lua_sethook(L, NULL, 0, 0);
  lua_close(L);
}

/* The reason rendered in C (cterm.c), not in a Lua state made for it. Bounded:
 * a long reason still shows whole in a crash report, a huge one is cut. */
#define REASON_RENDER_MAX (64 * 1024)

char *mb_reason_text(const mb_sig *reason) {
  return mb_reason_render(mb_sig_payload(reason), reason->len, REASON_RENDER_MAX);
}

/* A reason shown as text is cut to this many bytes (a 70 MiB error string must not
 * become a 70 MiB reason, nor a 70 MiB log line). */
#define REASON_TEXT_MAX 4096

/* Push tostring of the value at idx, cut to REASON_TEXT_MAX bytes. */
static const char *push_reason_text(lua_State *L, int idx, size_t *len) {
  const char *s = mb_tolstring(L, idx, len);
  if (*len <= REASON_TEXT_MAX) return s;
  lua_pushfstring(L, "... (%I bytes in all)", (lua_Integer)*len);
  lua_pushlstring(L, s, REASON_TEXT_MAX);
  lua_insert(L, -2);
  lua_concat(L, 2);
  lua_remove(L, -2);
  return lua_tolstring(L, -1, len);
}

/* The crash report of the errored body: the reason (at 2) and the body's
 * traceback. Runs protected on p->L (run_on). */
static int crash_text(lua_State *L) {
  mb_proc *p = proc_arg(L);
  size_t len;
  const char *reason = push_reason_text(L, 2, &len);
  luaL_traceback(L, L, NULL, 1);   /* the errored body's frames, below this one */
  lua_pushfstring(L, "crash report: process <0.%I> (module '%s') ended with reason: %s\n%s",
                  (lua_Integer)atomic_load(&p->pid), p->module ? p->module : "function",
                  reason, lua_tostring(L, -1));
  return 1;
}

/* The reason of an errored body (the value at 2): itself if it can be sent within
 * the message limit, else its tostring (cut). Runs protected on p->L (run_on);
 * returns the signal as a light userdata, made last so nothing raises after it. */
static int error_reason(lua_State *L) {
  mb_proc *p = proc_arg(L);
  mb_sig *s = mb_reason_sig(L, 2, p->node->max_message);
  if (!s) return 0;
  lua_pushlightuserdata(L, s);
  return 1;
}

mb_sig *mb_reason_sig(lua_State *L, int idx, size_t max_message) {
  mb_buf b;
  char err[256];
  idx = lua_absindex(L, idx);
  if (mb_buf_init(&b, MB_SIG_HDR, max_message) == 0) {
    if (mb_encode(L, idx, &b, "reason", err, sizeof err) == MB_ENC_OK)
      return mb_sig_from_buf(&b, MB_SIG_EXIT, 0, 0);
    mb_buf_free(&b);
  }
  size_t len;
  const char *s = push_reason_text(L, idx, &len);
  if (mb_buf_init(&b, MB_SIG_HDR, 0) != 0) { lua_pop(L, 1); return NULL; }
  int rc = mb_encode_string(&b, s, len);
  lua_pop(L, 1);
  if (rc != 0) { mb_buf_free(&b); return NULL; }
  return mb_sig_from_buf(&b, MB_SIG_EXIT, 0, 0);
}

/* Run f protected on L with p and the value at v: 1 and its result on top, or 0.
 * f checks p (proc_arg), so Lua code that reaches f cannot run it. */
static int run_on(lua_State *L, lua_CFunction f, mb_proc *p, int v) {
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, p);
  lua_pushvalue(L, v);
  if (lua_pcall(L, 2, 1, 0) == LUA_OK) return 1;
  lua_pop(L, 1);
  return 0;
}

void mb_spawn_end(mb_proc *p, int status) {
  mb_node *n = p->node;
  mb_sig *reason = NULL;
  int reported = 0;
  if (p->doom) {
    reason = p->doom;
  } else if (status == LUA_OK) {
    reason = mb_sig_static("normal");
  } else if (p->L && lua_checkstack(p->L, 4)) {
    lua_State *L = p->L;
    p->oom = 0;  /* let the report allocate */
    /* the error value is on top of the errored main thread, its frames below it for
     * the traceback; the report runs protected above them */
    int v = lua_gettop(L);
    if (run_on(L, error_reason, p, v)) { reason = lua_touserdata(L, -1); lua_pop(L, 1); }
    if (run_on(L, crash_text, p, v)) {
      size_t len;
      const char *t = lua_tolstring(L, -1, &len);
      mb_log_str(n, MB_LOG_ERROR, atomic_load(&p->pid), t, len);
      reported = 1;
    }
    lua_settop(L, v - 1);
  }
  if (!reason) reason = mb_sig_static("error");
  const char *r = mb_sig_payload(reason);
  if (p->oom && !reported && mb_encoded_is_string(r, reason->len, "out of memory")) {
    mb_log(n, MB_LOG_ERROR, atomic_load(&p->pid), "crash report: process (module '%s') ended with reason: out of memory",
           p->module ? p->module : "function");
    reported = 1;
  }
  if (p->first && !reported && !mb_reason_is_normal(r, reason->len)) {
    char *text = mb_reason_text(reason);
    mb_log(n, MB_LOG_ERROR, atomic_load(&p->pid),
           "crash report: process <0.%llu> (module '%s') exited with reason: %s",
           (unsigned long long)atomic_load(&p->pid), p->module ? p->module : "function",
           text ? text : "?");
    free(text);
  }
  mb_proc_finish(p, reason);
}
