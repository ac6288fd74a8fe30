/* statepool: Lua states made and opened (the node's open_state) ahead of time by
 * idle schedulers, so that a spawn on a busy scheduler does not wait for
 * lua_newstate (half of a small spawn) nor for its environment. On a node with a
 * state image (stateimage.h) only from the blocks of states closed on the idle
 * scheduler's thread: that is how they get back to spawns on other threads. */
#ifndef MB_STATEPOOL_H
#define MB_STATEPOOL_H

#include <lua.h>

typedef struct mb_node mb_node;
typedef struct mb_proc mb_proc;
typedef struct mb_statepool mb_statepool;

mb_statepool *mb_statepool_new(void);
void mb_statepool_free(mb_statepool *sp);   /* closes what is left: before the arena goes */

/* [scheduler] A pooled state, now p's: its allocator, extra space and heap count set
 * as lua_newstate(mb_proc_lua_alloc, p) and the node's open_state would have left
 * them. NULL if none is ready. */
lua_State *mb_statepool_take(mb_node *n, mb_proc *p);

/* [idle scheduler] Make states until the pool is full or `stop(arg)` says work came.
 * 0, or -1 when a state could not be made (no memory: then do not ask again soon). */
int mb_statepool_fill(mb_node *n, int (*stop)(void *), void *arg);

/* Whether the pool wants this idle scheduler to fill it: at or below its low mark,
 * and, on a node with a state image, closed states' blocks on this thread's lists. */
int mb_statepool_low(mb_node *n);

#endif
