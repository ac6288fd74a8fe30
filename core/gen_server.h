/* gen_server: the server loop of SPEC section 2 — receive, dispatch to the Lua
 * callbacks, reply, time out, terminate — in C, as the body of a Lua process. */
#ifndef MB_GEN_SERVER_H
#define MB_GEN_SERVER_H

#include <lua.h>
#include "proc.h"

/* Spawn a server process running module, init's argument given by its encoding
 * (args_len bytes; NULL: nil), registered as name (NULL: none), linked with self
 * when link is set. Its start is a call of self's: ref must be live in self's
 * calls (mb_call_ref_add) and self waits for the REPLY (the encoded `true`, or a
 * table {reason} / {"already_started", pid}) or the DOWN of ref. [owner of self]
 * 0 and *pid, or MB_E*. */
int mb_gen_server_spawn(mb_proc *self, const char *module, const char *args, size_t args_len,
                        const char *name, size_t name_len, int link, uint64_t ref, mb_pid *pid);

/* The body of a server process (mb_spawn_req.body). It registers the name, loads
 * the module, runs init and answers the start with mb_call_reply, unlinking from
 * its parent first when init failed (a failed start sends no exit signal), then
 * serves. */
int mb_gen_server_body(lua_State *L);

#endif
