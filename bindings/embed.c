/* embed: the C embedding API of moonbeam.h on top of the core: a node with the
 * moonbeam modules preloaded, spawning and sending from outside any process. */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "moonbeam.h"
#include "node.h"
#include "code.h"
#include "spawn.h"
#include "registry.h"
#include "procenv.h"
#include "luaface.h"
#include "log.h"

int mb_node_preload(mb_node *n, const char *name, mb_lua_CFunction open) {
  /* schedulers read the list without a lock, and the image for Lua bodies is made
   * from it at start */
  if (atomic_load(&n->state) != MB_NODE_NEW) return MB_ESTATE;
  mb_preload *p = malloc(sizeof *p);
  if (!p || !(p->name = strdup(name))) { free(p); return MB_ENOMEM; }
  p->open = open;
  p->next = n->preloads;
  n->preloads = p;
  return 0;
}

mb_node *mb_node_new(const mb_node_opts *opts) {
  mb_l_tcp_register();
  mb_node *n = mb_node_create(opts, mb_procenv_open, mb_procenv_open_lua);
  if (!n) return NULL;
  if (mb_node_preload(n, "moonbeam", luaopen_moonbeam) != 0 ||
      mb_node_preload(n, "moonbeam.gen_server", luaopen_moonbeam_gen_server) != 0 ||
      mb_node_preload(n, "moonbeam.supervisor", luaopen_moonbeam_supervisor) != 0 ||
      mb_node_preload(n, "moonbeam.tcp", luaopen_moonbeam_tcp) != 0) {
    mb_node_free(n);
    return NULL;
  }
  return n;
}

/* Encode L[top-nargs+1 .. top] as spawn arguments (popped). */
static int encode_args(mb_node *n, lua_State *L, int nargs, mb_sig **out) {
  *out = NULL;
  if (nargs <= 0) return 0;
  mb_buf b;
  char err[256];
  if (mb_buf_init(&b, MB_SIG_HDR, n->max_message) != 0) return MB_ENOMEM;
  int rc = mb_encode_values(L, lua_gettop(L) - nargs + 1, nargs, &b, err, sizeof err);
  lua_pop(L, nargs);
  if (rc != MB_ENC_OK) { mb_buf_free(&b); return rc == MB_ENC_TOOBIG ? MB_ETOOBIG : MB_EBADMSG; }
  *out = mb_sig_from_buf(&b, MB_SIG_MSG, 0, 0);
  return 0;
}

int mb_spawn(mb_node *n, const char *module, lua_State *L, int nargs, mb_pid *pid) {
  mb_spawn_req r;
  memset(&r, 0, sizeof r);
  char err[4096];
  r.code = mb_code_get(n, module, err, sizeof err);
  if (!r.code) {
    if (L) lua_pop(L, nargs);
    mb_log(n, MB_LOG_ERROR, 0, "spawn: %s", err);
    return MB_ENOTFOUND;
  }
  int rc = L ? encode_args(n, L, nargs, &r.args) : 0;
  if (rc != 0) { mb_code_unref(r.code); return rc; }
  return mb_spawn_proc(n, &r, pid);
}

int mb_spawn_script(mb_node *n, const char *path, int argc, char **argv, mb_pid *pid) {
  mb_spawn_req r;
  memset(&r, 0, sizeof r);
  char err[4096];
  r.code = mb_code_file(n, path, err, sizeof err);
  if (!r.code) {
    fprintf(stderr, "moonbeam: %s\n", err);
    return strncmp(err, "cannot open", 11) == 0 ? MB_ENOTFOUND : MB_EINVAL;   /* a syntax error */
  }
  if (argc > 0) {
    mb_buf b;
    lua_State *L = luaL_newstate();
    int rc = L && mb_buf_init(&b, MB_SIG_HDR, 0) == 0 ? 0 : MB_ENOMEM;
    if (rc == 0) {
      for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
      if (mb_encode_values(L, 1, argc, &b, err, sizeof err) != MB_ENC_OK) { mb_buf_free(&b); rc = MB_ENOMEM; }
      else r.args = mb_sig_from_buf(&b, MB_SIG_MSG, 0, 0);
    }
    if (L) lua_close(L);
    if (rc != 0) { mb_code_unref(r.code); return rc; }
  }
  r.first = 1;
  r.script = 1;
  return mb_spawn_proc(n, &r, pid);
}

static int send_value(mb_node *n, mb_pid pid, lua_State *L, int idx) {
  mb_buf b;
  char err[256];
  if (lua_isnoneornil(L, idx)) return MB_EBADMSG;
  if (mb_buf_init(&b, MB_SIG_HDR, n->max_message) != 0) return MB_ENOMEM;
  int rc = mb_encode(L, idx, &b, "msg", err, sizeof err);
  if (rc != MB_ENC_OK) { mb_buf_free(&b); return rc == MB_ENC_TOOBIG ? MB_ETOOBIG : MB_EBADMSG; }
  return mb_send_sig(n, pid, mb_sig_from_buf(&b, MB_SIG_MSG, 0, 0));
}

int mb_send(mb_node *n, mb_pid pid, lua_State *L, int idx) { return send_value(n, pid, L, idx); }

int mb_send_named(mb_node *n, const char *name, lua_State *L, int idx) {
  mb_pid pid = mb_registry_whereis(n->reg, name, strlen(name));
  if (!pid) return MB_ENOPROC;
  return send_value(n, pid, L, idx);
}

int mb_whereis(mb_node *n, const char *name, mb_pid *pid) {
  *pid = mb_registry_whereis(n->reg, name, strlen(name));
  return *pid ? 0 : MB_ENOTFOUND;
}
