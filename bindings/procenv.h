/* procenv: the environment of a process state — standard libraries opened on first
 * use, whole-line print, os.exit = halt, debug.sethook refused, coroutines that let
 * the core's yields through, and `require` served from the node's code cache. */
#ifndef MB_PROCENV_H
#define MB_PROCENV_H

#include <lua.h>
#include "proc.h"

int mb_procenv_open(lua_State *L, mb_proc *p);

/* Resume `co` from L the way coroutine.resume does, passing the core's yields up. */
int mb_procenv_print(lua_State *L);

#endif
