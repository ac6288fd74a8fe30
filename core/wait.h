/* wait: blocking calls of a Lua process (see wait.c). */
#ifndef MB_WAIT_H
#define MB_WAIT_H

#include <stdint.h>
#include <lua.h>
#include "proc.h"

#define MB_NEVER UINT64_MAX

/* now + ms as a monotonic deadline; MB_NEVER for math.huge, NaN or anything past
 * a few centuries (a double that does not fit the clock must not wrap to "now"). */
uint64_t mb_deadline_after(lua_Number ms);
/* End the process now if a signal doomed it (exit, kill, halt, out of memory): yields
 * when it can, else arms the hook and raises. Returns 0 if it is not doomed. */
int mb_wait_doomed(lua_State *L, mb_proc *p);
/* Blocking from C with a continuation: prepare checks that the process can block
 * here and arms the wait timer for p->deadline (0 or MB_NEVER: none); NULL, or why
 * it cannot ("cannot block here ...", "not enough memory"). Then yield: the
 * process waits until a signal or the deadline, and k(ctx) runs. */
const char *mb_wait_prepare(lua_State *L, mb_proc *p);
int mb_wait_yield(lua_State *L, lua_KContext ctx, lua_KFunction k);
/* receive: the message matching the function at match_idx (1, or 0 for any), or nil
 * at deadline (0: none). Returns like a lua_CFunction (may yield). */
int mb_wait_receive(lua_State *L, mb_proc *p, int match_idx, uint64_t deadline);
/* sleep until deadline (MB_NEVER: for ever). */
int mb_wait_sleep(lua_State *L, mb_proc *p, uint64_t deadline);

#endif
