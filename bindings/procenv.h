/* procenv: the environment of a process state — standard libraries opened on first
 * use, whole-line print, os.exit = halt, debug.sethook refused, coroutines that let
 * the core's yields through, and `require` served from the node's code cache (C
 * modules only when the node allows them). */
#ifndef MB_PROCENV_H
#define MB_PROCENV_H

#include <lua.h>
#include "proc.h"

/* Prepare a new process state (the node's open_state hook). */
int mb_procenv_open(lua_State *L, mb_node *n, mb_proc *p);
/* Then, for a process whose body is Lua (the node's open_lua hook): its moonbeam module.
 * With p NULL (ahead of any process, for the node's state image): 1, and nothing
 * done, when the node's moonbeam is a host's own. */
int mb_procenv_open_lua(lua_State *L, mb_node *n, mb_proc *p);

/* print: the arguments as one whole line on stdout. */
int mb_procenv_print(lua_State *L);

#endif
