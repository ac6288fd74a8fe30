/* host: the `moonbeam.host` Lua C module — a node driven from a plain lua5.4
 * interpreter (this is how busted drives moonbeam). The host thread has a pid of
 * its own (an external process that always traps exits); node:receive blocks the
 * host thread on a condition variable. Built without liblua: the interpreter
 * provides the Lua core. */
#include <lauxlib.h>
#include <string.h>
#include "luaface.h"
#include "select.h"
#include "term.h"
#include "node.h"
#include "receive.h"
#include "log.h"
#include "call.h"
#include "code.h"
#include "clock.h"

#define HOST_MT "moonbeam.host.node"

typedef struct { mb_node *node; mb_proc *self; int stopped; int status; } host;

static host *check_host(lua_State *L) {
  host *h = luaL_checkudata(L, 1, HOST_MT);
  if (h->stopped) luaL_error(L, "node is stopped");
  return h;
}

static int h_start(lua_State *L) {
  mb_node_opts o;
  memset(&o, 0, sizeof o);
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "schedulers");
    o.schedulers = (int)luaL_optinteger(L, -1, 0);
    lua_getfield(L, 1, "path");
    o.path = luaL_optstring(L, -1, NULL);
    lua_getfield(L, 1, "log_level");
    o.log_level = luaL_optstring(L, -1, NULL);
    if (o.log_level && mb_log_level_parse(o.log_level) < 0) return luaL_error(L, "start: unknown log level '%s'", o.log_level);
    lua_getfield(L, 1, "max_processes");
    o.max_processes = (uint32_t)luaL_optinteger(L, -1, 0);
    lua_getfield(L, 1, "preempt_signal");
    o.preempt_signal = (int)luaL_optinteger(L, -1, 0);
    lua_getfield(L, 1, "c_modules");
    o.c_modules = lua_toboolean(L, -1);
  }
  host *h = lua_newuserdatauv(L, sizeof *h, 0);
  memset(h, 0, sizeof *h);
  h->stopped = 1;
  luaL_setmetatable(L, HOST_MT);
  h->node = mb_node_new(&o);
  if (!h->node) return luaL_error(L, "start: cannot create the node");
  h->node->keep_alive = 1;
  h->self = mb_proc_alloc(h->node, MB_PK_EXTERNAL);
  if (!h->self) { mb_node_free(h->node); h->node = NULL; return luaL_error(L, "start: cannot create the host process"); }
  atomic_store(&h->self->state, MB_PS_RUNNING);
  h->self->trap_exit = 1;   /* the host's pid always gets exits as messages */
  int rc = mb_node_start(h->node);
  if (rc != 0) { mb_node_free(h->node); h->node = NULL; return luaL_error(L, "start: %s", mb_strerror(rc)); }
  h->stopped = 0;
  return 1;
}

static int h_stop(lua_State *L) {
  host *h = luaL_checkudata(L, 1, HOST_MT);
  if (!h->stopped && h->node) {
    h->stopped = 1;
    h->status = mb_node_stop(h->node);
    mb_proc_finish(h->self, mb_sig_static("normal"));
    mb_node_free(h->node);
    h->node = NULL;
  }
  lua_pushinteger(L, h->status);
  return 1;
}

static int h_spawn(lua_State *L) {
  host *h = check_host(L);
  return mb_l_spawn(L, h->node, h->self, 2, 0, 0);   /* self: its arguments may hand a `from` on */
}

static int h_send(lua_State *L) {
  host *h = check_host(L);
  return mb_l_send(L, h->node, h->self, 2, 3);
}

static int h_self(lua_State *L) {
  host *h = check_host(L);
  mb_push_pid(L, atomic_load(&h->self->pid));
  return 1;
}

static int h_receive(lua_State *L) {
  host *h = check_host(L);
  mb_proc *p = h->self;
  if (p->selecting) return luaL_error(L, "receive: cannot be called from a match function");
  lua_remove(L, 1);
  uint64_t deadline;
  int match = mb_l_receive_args(L, &deadline, "receive");
  p->recv_pos = NULL;
  for (;;) {
    mb_proc_drain(p);
    if (mb_select(L, p, match)) return 1;
    if (deadline && mb_now_ns() >= deadline) { lua_pushnil(L); return 1; }
    mb_recv_wait_external(p, deadline);
  }
}

/* node:call(server, request, [timeout]): the host thread blocks until the reply. */
static int h_call(lua_State *L) {
  host *h = check_host(L);
  mb_proc *p = h->self;
  if (p->selecting) return luaL_error(L, "call: cannot be called from a match function");
  lua_remove(L, 1);
  lua_settop(L, 3);
  mb_call c;
  uint64_t deadline;
  mb_l_call_start(L, h->node, p, 1, 0, &c, &deadline);
  for (;;) {
    mb_sig *got = mb_call_poll(p, &c);
    if (got) return mb_l_call_result(L, p, &c, got, 1, 0);
    if (deadline && mb_now_ns() >= deadline) {
      mb_call_end(p, &c, NULL);
      return mb_l_call_fail(L, 1, 0, "timeout");
    }
    mb_recv_wait_external(p, deadline);
  }
}

static int h_cast(lua_State *L) { host *h = check_host(L); return mb_l_cast(L, h->node, h->self, 2); }

/* node:reload(module): compile the module's current source into the code cache;
 * true, or nil and the error (the cache unchanged). New spawns and require use
 * it; each gen_server running the module upgrades at its next message. */
static int h_reload(lua_State *L) {
  host *h = check_host(L);
  const char *module = luaL_checkstring(L, 2);
  char err[2048];
  mb_code *c = mb_code_reload(h->node, module, err, sizeof err);
  if (!c) { luaL_pushfail(L); lua_pushstring(L, err); return 2; }
  mb_code_unref(c);
  lua_pushboolean(L, 1);
  return 1;
}

static int h_whereis(lua_State *L) { host *h = check_host(L); return mb_l_whereis(L, h->node, 2); }
static int h_info(lua_State *L) { host *h = check_host(L); return mb_l_info(L, h->node, mb_check_pid(L, 2)); }
static int h_processes(lua_State *L) { host *h = check_host(L); return mb_l_processes(L, h->node); }

static int h_tostring(lua_State *L) {
  host *h = luaL_checkudata(L, 1, HOST_MT);
  lua_pushfstring(L, "moonbeam node (%s)", h->stopped ? "stopped" : "running");
  return 1;
}

MB_API int luaopen_moonbeam_host(lua_State *L) {
  static const luaL_Reg methods[] = {
    { "spawn", h_spawn }, { "send", h_send }, { "self", h_self }, { "receive", h_receive },
    { "whereis", h_whereis }, { "info", h_info }, { "processes", h_processes },
    { "call", h_call }, { "cast", h_cast }, { "reload", h_reload },
    { "stop", h_stop }, { NULL, NULL } };
  if (luaL_newmetatable(L, HOST_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, h_stop);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, h_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  mb_light_prepare(L);   /* the host's tostring renders the pids and refs it gets */
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, h_start);
  lua_setfield(L, -2, "start");
  lua_pushstring(L, mb_version_string());
  lua_setfield(L, -2, "version");
  return 1;
}
