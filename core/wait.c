/* wait: the protocol of the blocking calls of a Lua process (receive, sleep): drain,
 * look, and either answer or yield to the scheduler with a continuation, arming a
 * wait timer for a deadline. The continuations work inside pcall and the user's
 * coroutines; a process found doomed ends at once. */
#include <lauxlib.h>
#include "wait.h"
#include "select.h"
#include "scheduler.h"

/* now + ms as a monotonic deadline; MB_NEVER for math.huge or anything past a
 * few centuries (a double that does not fit the clock must not wrap to "now"). */
uint64_t mb_deadline_after(lua_Number ms) {
  if (!(ms < 1e13)) return MB_NEVER;   /* also NaN */
  if (ms < 0) ms = 0;
  return mb_now_ns() + (uint64_t)(ms * 1e6);
}

/* End the process now if a signal doomed it (exit, kill, halt, out of memory). */
int mb_wait_doomed(lua_State *L, mb_proc *p) {
  if (!p->doom) return 0;
  if (mb_proc_can_yield(L, p)) { p->yield_reason = MB_Y_DOOM; return lua_yield(L, 0); }
  mb_sched_arm_hook(p);
  return luaL_error(L, "process is exiting");
}

const char *mb_wait_prepare(lua_State *L, mb_proc *p) {
  if (!mb_proc_can_yield(L, p) || !mb_sched_self())
    return "cannot block here (attempt to yield across a C-call boundary)";
  if (p->deadline && p->deadline != MB_NEVER && !p->wait_timer && mb_sched_arm_wait(p, p->deadline) != 0)
    return "not enough memory";
  return NULL;
}

int mb_wait_yield(lua_State *L, lua_KContext ctx, lua_KFunction k) {
  mb_proc_of(L)->yield_reason = MB_Y_WAIT;
  return lua_yieldk(L, 0, ctx, k);
}

static int receive_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  mb_proc *p = mb_proc_of(L);
  mb_proc_drain(p);
  if (p->doom) return mb_wait_doomed(L, p);
  if (mb_select(L, p, (int)(ctx & 1))) { mb_sched_disarm_wait(p); return 1; }
  if (p->deadline && mb_now_ns() >= p->deadline) {
    mb_sched_disarm_wait(p);
    lua_pushnil(L);
    return 1;
  }
  const char *why = mb_wait_prepare(L, p);
  if (why) return luaL_error(L, "receive: %s", why);
  return mb_wait_yield(L, ctx, receive_k);
}

int mb_wait_receive(lua_State *L, mb_proc *p, int match_idx, uint64_t deadline) {
  if (p->selecting) return luaL_error(L, "receive: cannot be called from a match function");
  p->recv_pos = NULL;
  p->deadline = deadline;
  mb_sched_disarm_wait(p);
  return receive_k(L, LUA_OK, match_idx);
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  mb_proc *p = mb_proc_of(L);
  mb_proc_drain(p);
  if (p->doom) return mb_wait_doomed(L, p);
  if (mb_now_ns() >= p->deadline) { mb_sched_disarm_wait(p); return 0; }
  const char *why = mb_wait_prepare(L, p);
  if (why) return luaL_error(L, "sleep: %s", why);
  return mb_wait_yield(L, 0, sleep_k);
}

int mb_wait_sleep(lua_State *L, mb_proc *p, uint64_t deadline) {
  mb_sched_disarm_wait(p);
  p->deadline = deadline;
  return sleep_k(L, LUA_OK, 0);
}
