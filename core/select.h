/* select: selective receive into a process's Lua state (see select.c). */
#ifndef MB_SELECT_H
#define MB_SELECT_H

#include <lua.h>
#include "proc.h"

/* [owner] From p->recv_pos on, push the first inbox message that the function at
 * match_idx accepts (0: any message) as a Lua value and take it off the inbox:
 * 1; or 0 with nothing pushed. REPLY signals are left for C selects. Raises
 * what the match function raises. */
int mb_select(lua_State *L, mb_proc *p, int match_idx);

/* [owner] Push the Lua value of m, a signal the caller took off the inbox, and free
 * m. If decoding raises (memory), m stays on p->taken until the process ends. */
void mb_push_taken(lua_State *L, mb_proc *p, mb_sig *m);
/* The same, pushing only its payload's value (a call's request, a cast's message). */
void mb_push_taken_payload(lua_State *L, mb_proc *p, mb_sig *m);

#endif
