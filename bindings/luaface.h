/* luaface: the pieces of the Lua face shared by the `moonbeam` module (inside
 * processes) and `moonbeam.host` (a plain lua5.4 driving a node from outside). */
#ifndef MB_LUAFACE_H
#define MB_LUAFACE_H

#include <lua.h>
#include "node.h"

/* spawn(target, ...) with the target at index `first`; pushes the pid (and the ref
 * when monitoring). `parent` (may be NULL) is linked / monitors when asked. */
int mb_l_spawn(lua_State *L, mb_node *n, mb_proc *parent, int first, int link, int monitor);
/* send(dest, msg) from self; returns 1 with true pushed, or raises. */
int mb_l_send(lua_State *L, mb_node *n, mb_proc *self, int dest, int msg);
/* Encode the value at idx into a signal of kind, or raise "<op>: <why>" (paths
 * start at root). self (may be NULL) is the sending process: a call's `from` it
 * hands on is let go (core/call.h). */
mb_sig *mb_l_encode(lua_State *L, mb_node *n, mb_proc *self, int idx, const char *op, const char *root, int kind);

/* gen_server calls (bindings/gen_server.c), shared with the host. start: the
 * server at `first`, the request (or stop's reason) after it, then the timeout
 * (default dflt_ms; math.huge = none); raises "<op> <server>: <why>" when the call
 * cannot start. result: the reply pushed (1), or raises the DOWN's reason; stop:
 * true when the server ended with the reason asked. fail raises "<op> <server>: why". */
typedef struct mb_call mb_call;
#define MB_L_CALL_TRUSTED 2   /* or'd into stop (0): the request goes as MB_SIGF_TRUSTED */
void mb_l_call_start(lua_State *L, mb_node *n, mb_proc *self, int first, int stop, mb_call *c, uint64_t *deadline);
int mb_l_call_result(lua_State *L, mb_proc *self, mb_call *c, mb_sig *got, int first, int stop);
int mb_l_call_fail(lua_State *L, int first, int stop, const char *why);
/* cast(server, msg) at first; pushes true. */
int mb_l_cast(lua_State *L, mb_node *n, mb_proc *self, int first);
int luaopen_moonbeam_gen_server(lua_State *L);
/* gen_server.call itself; the supervisor module calls through the trusted one. */
int mb_l_gen_call(lua_State *L);
int mb_l_gen_call_trusted(lua_State *L);
/* Wait for the start answer of c->server (a gen_server or a supervisor spawned
 * with c->ref as its start's call; c->mark taken before), then return as
 * gen_server.start does: pid, or nil, reason [, pid]. The stack above 3 is used;
 * link: unlink from it if it overruns the deadline (0: none). */
int mb_l_start_wait(lua_State *L, mb_proc *p, mb_call *c, uint64_t deadline, int link);
int luaopen_moonbeam_supervisor(lua_State *L);
/* Parse receive's arguments at 1 and 2: match index (0 for none) and the deadline
 * in ns (0 = wait forever); returns the match index. */
int mb_l_receive_args(lua_State *L, uint64_t *deadline, const char *fname);
int mb_l_info(lua_State *L, mb_node *n, mb_pid pid);
int mb_l_processes(lua_State *L, mb_node *n);
int mb_l_whereis(lua_State *L, mb_node *n, int idx);

int luaopen_moonbeam(lua_State *L);
/* moonbeam.tcp (bindings/tcp.c); register gives its handles their methods. */
int luaopen_moonbeam_tcp(lua_State *L);
void mb_l_tcp_register(void);

#endif
