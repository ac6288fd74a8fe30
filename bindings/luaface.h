/* luaface: the pieces of the Lua face shared by the `moonbeam` module (inside
 * processes) and `moonbeam.host` (a plain lua5.4 driving a node from outside). */
#ifndef MB_LUAFACE_H
#define MB_LUAFACE_H

#include <lua.h>
#include "node.h"

/* spawn(target, ...) with the target at index `first`; pushes the pid (and the ref
 * when monitoring). `parent` (may be NULL) is linked / monitors when asked. */
int mb_l_spawn(lua_State *L, mb_node *n, mb_proc *parent, int first, int link, int monitor);
/* send(dest, msg) from `from`; returns 1 with true pushed, or raises. */
int mb_l_send(lua_State *L, mb_node *n, mb_pid from, int dest, int msg);
/* Parse receive's arguments at 1 and 2: match index (0 for none) and the deadline
 * in ns (0 = wait forever); returns the match index. */
int mb_l_receive_args(lua_State *L, uint64_t *deadline, const char *fname);
int mb_l_info(lua_State *L, mb_node *n, mb_pid pid);
int mb_l_processes(lua_State *L, mb_node *n);
int mb_l_whereis(lua_State *L, mb_node *n, int idx);

int luaopen_moonbeam(lua_State *L);

#endif
