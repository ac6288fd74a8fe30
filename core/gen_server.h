/* gen_server: the server loop of SPEC section 2 — receive, dispatch to the Lua
 * callbacks, reply, time out, terminate — in C, as the body of a Lua process. */
#ifndef MB_GEN_SERVER_H
#define MB_GEN_SERVER_H

#include <lua.h>
#include "proc.h"

/* The body of a server process (mb_spawn_req.body). Its arguments after the
 * process: the callback module's name, init's argument, the name to register
 * (or nil), the parent pid and the ref of its start. It registers the name,
 * loads the module, runs init and answers the start with mb_call_reply: the
 * encoded `true`, or a table {reason} / {"already_started", pid} after
 * unlinking from the parent (a failed init sends no exit signal), then serves. */
int mb_gen_server_body(lua_State *L);

#endif
