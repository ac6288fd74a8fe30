/* procenv: what a process state looks like to its Lua code.
 *
 * A fresh state opens only the base library; the other standard tables are built
 * when first touched (through a metatable on _G, and on the string metatable for
 * method calls on strings), so an idle process stays small and spawns fast.
 * Blocking calls and preemption yield the body coroutine to the scheduler; the
 * wrapped coroutine library passes such yields through the user's own coroutines
 * (as OpenResty does) and resumes them transparently. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include "procenv.h"
#include "luaface.h"
#include "node.h"
#include "code.h"
#include "scheduler.h"
#include "term.h"

/* ---- print: one whole line per call ---- */

int mb_procenv_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    /* the tab first: a buffer may only grow while its box is on top */
    if (i > 1) luaL_addchar(&b, '\t');
    mb_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  size_t len;
  const char *line = lua_tolstring(L, -1, &len);
  fwrite(line, 1, len, stdout);   /* one stdio call: stdout's lock keeps it whole */
  return 0;
}

/* ---- os.exit and debug.sethook ---- */

static int os_exit(lua_State *L) {
  int code;
  if (lua_isboolean(L, 1)) code = lua_toboolean(L, 1) ? 0 : 1;
  else code = (int)luaL_optinteger(L, 1, 0);
  mb_proc *p = mb_proc_of(L);
  mb_node_halt(p->node, code);
  mb_proc_doom(p, mb_sig_static("normal"));
  if (mb_proc_can_yield(L, p)) { p->yield_reason = MB_Y_DOOM; return lua_yield(L, 0); }
  mb_sched_arm_hook(p);
  return luaL_error(L, "halted");
}

/* string.format renders values: pids and refs get their __tostring (term.h). */
static int open_string(lua_State *L) {
  mb_light_prepare(L);
  return luaopen_string(L);
}

static int open_os(lua_State *L) {
  luaopen_os(L);
  lua_pushcfunction(L, os_exit);
  lua_setfield(L, -2, "exit");
  return 1;
}

static int refuse_sethook(lua_State *L) {
  return luaL_error(L, "debug.sethook: refused, the moonbeam core owns the hook");
}

/* A process's debug table: traceback, getinfo and a refusing sethook. The rest of
 * the library (getregistry, getlocal/setlocal, getupvalue/setupvalue, user values,
 * metatables of any value) would hand scripts the core's private values. */
static int open_debug(lua_State *L) {
  luaopen_debug(L);   /* the full table: read from, then dropped */
  lua_createtable(L, 0, 3);
  lua_getfield(L, -2, "traceback");
  lua_setfield(L, -2, "traceback");
  lua_getfield(L, -2, "getinfo");
  lua_setfield(L, -2, "getinfo");
  lua_pushcfunction(L, refuse_sethook);
  lua_setfield(L, -2, "sethook");
  return 1;
}

/* ---- load, loadfile, dofile: text chunks only ---- */

/* Lua does not check binary chunks: a crafted one corrupts memory. These are the
 * base library's functions with the mode narrowed to "t"; a mode without 't' loads
 * nothing. (Written out rather than wrapped: a wrapped original would sit on the
 * stack, where debug.getinfo(level, "f") inside a reader function would find it.) */
static int load_result(lua_State *L, int status, int envidx) {
  if (status != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (envidx) {
    lua_pushvalue(L, envidx);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  }
  return 1;
}

/* "t", or NULL (after pushing nil and a message) for a mode that allows no text. */
static const char *text_mode(lua_State *L, int idx) {
  const char *mode = luaL_optstring(L, idx, "bt");
  if (strchr(mode, 't')) return "t";
  luaL_pushfail(L);
  lua_pushfstring(L, "attempt to load a chunk with mode '%s' (moonbeam loads text chunks only)", mode);
  return NULL;
}

#define READER_SLOT 5

static const char *chunk_reader(lua_State *L, void *ud, size_t *size) {
  (void)ud;
  luaL_checkstack(L, 2, "too many nested functions");
  lua_pushvalue(L, 1);
  lua_call(L, 0, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    *size = 0;
    return NULL;
  }
  if (!lua_isstring(L, -1)) luaL_error(L, "reader function must return a string");
  lua_replace(L, READER_SLOT);   /* keeps the piece alive while Lua reads it */
  return lua_tolstring(L, READER_SLOT, size);
}

static int text_load(lua_State *L) {
  size_t len;
  const char *s = lua_tolstring(L, 1, &len);
  int env = !lua_isnone(L, 4) ? 4 : 0;
  const char *mode = text_mode(L, 3);
  if (!mode) return 2;
  int status;
  if (s) {
    status = luaL_loadbufferx(L, s, len, luaL_optstring(L, 2, s), mode);
  } else {
    const char *chunkname = luaL_optstring(L, 2, "=(load)");
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, READER_SLOT);
    status = lua_load(L, chunk_reader, NULL, chunkname, mode);
  }
  return load_result(L, status, env);
}

static int text_loadfile(lua_State *L) {
  const char *fname = luaL_optstring(L, 1, NULL);
  int env = !lua_isnone(L, 3) ? 3 : 0;
  const char *mode = text_mode(L, 2);
  if (!mode) return 2;
  return load_result(L, luaL_loadfilex(L, fname, mode), env);
}

static int dofile_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return lua_gettop(L) - 1;
}

static int text_dofile(lua_State *L) {
  const char *fname = luaL_optstring(L, 1, NULL);
  lua_settop(L, 1);
  if (luaL_loadfilex(L, fname, "t") != LUA_OK) return lua_error(L);
  lua_callk(L, 0, LUA_MULTRET, 0, dofile_k);
  return dofile_k(L, LUA_OK, 0);
}

/* ---- coroutines ---- */

static int resume_k(lua_State *L, int status, lua_KContext ctx);

/* Resume co (at index ctx-encoded `coidx`) with narg values on top of L. Standard
 * results go back to the caller; a core yield is passed up to the scheduler. */
static int do_resume(lua_State *L, lua_State *co, int narg, int coidx, int wrap) {
  mb_proc *p = mb_proc_of(L);
  if (!co) return luaL_error(L, "cannot resume a non-coroutine");
  if (lua_status(co) == LUA_OK && lua_gettop(co) == 0) {
    lua_pushliteral(L, "cannot resume dead coroutine");
    goto fail;
  }
  if (!lua_checkstack(co, narg)) { lua_pushliteral(L, "too many arguments to resume"); goto fail; }
  lua_xmove(L, co, narg);
  lua_State *outer = p->cur;
  int passable = lua_isyieldable(L);   /* could a core yield of co be passed on? */
  if (!passable) p->no_core_yield++;
  p->cur = co;
  int nres = 0;
  int st = lua_resume(co, L, narg, &nres);
  p->cur = outer;
  if (!passable) p->no_core_yield--;
  /* it must end (out of memory, an exit) though co is gone or caught the error:
   * the hook armed on co must now be armed on the thread that goes on */
  if (p->oom || p->doom) mb_sched_arm_hook(p);
  if (st == LUA_YIELD && p->yield_reason != MB_Y_NONE) {
    /* the core's yield: pass it up; resume_k resumes co again later */
    lua_pop(co, nres);
    return lua_yieldk(L, 0, ((lua_KContext)coidx << 1) | wrap, resume_k);
  }
  if (st == LUA_OK || st == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 1)) {
      lua_pop(co, nres);
      lua_pushliteral(L, "too many results to resume");
      goto fail;
    }
    if (!wrap) lua_pushboolean(L, 1);
    lua_xmove(co, L, nres);
    return wrap ? nres : nres + 1;
  }
  if (wrap) {
    /* an error inside co: close its to-be-closed variables (leaves the error on
     * top). Not when resuming failed (co running or normal: it still has frames). */
    int cst = lua_status(co);
    if (cst != LUA_OK && cst != LUA_YIELD) lua_resetthread(co);
    lua_xmove(co, L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      luaL_where(L, 1);
      lua_insert(L, -2);
      lua_concat(L, 2);
    }
    return lua_error(L);
  }
  lua_xmove(co, L, 1);  /* the error */
fail:
  if (wrap) return lua_error(L);
  lua_pushboolean(L, 0);
  lua_insert(L, -2);
  return 2;
}

static int resume_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  int coidx = (int)(ctx >> 1), wrap = (int)(ctx & 1);
  lua_State *co = wrap ? lua_tothread(L, lua_upvalueindex(1)) : lua_tothread(L, coidx);
  lua_settop(L, coidx);
  return do_resume(L, co, 0, coidx, wrap);
}

static int co_resume(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  return do_resume(L, co, lua_gettop(L) - 1, 1, 0);
}

static int co_wrap_call(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  /* keep a slot below the arguments so resume_k can trim back to it */
  lua_pushnil(L);
  lua_insert(L, 1);
  return do_resume(L, co, lua_gettop(L) - 1, 1, 1);
}

static int co_wrap(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushcclosure(L, co_wrap_call, 1);
  return 1;
}

static int co_yield(lua_State *L) {
  mb_proc *p = mb_proc_of(L);
  if (p && L == p->L) return luaL_error(L, "attempt to yield from outside a coroutine");
  return lua_yield(L, lua_gettop(L));
}

static int co_isyieldable(lua_State *L) {
  lua_State *co = lua_isnone(L, 1) ? L : lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "coroutine");
  mb_proc *p = mb_proc_of(L);
  lua_pushboolean(L, lua_isyieldable(co) && !(p && co == p->L));
  return 1;
}

static int co_running(lua_State *L) {
  mb_proc *p = mb_proc_of(L);
  int ismain = lua_pushthread(L);
  if (p) ismain = L == p->L;
  lua_pushboolean(L, ismain);
  return 2;
}

static int open_coroutine(lua_State *L) {
  static const luaL_Reg fns[] = {
    { "resume", co_resume }, { "wrap", co_wrap }, { "yield", co_yield },
    { "isyieldable", co_isyieldable }, { "running", co_running }, { NULL, NULL } };
  luaopen_coroutine(L);
  luaL_setfuncs(L, fns, 0);
  return 1;
}

/* ---- require: the node's code cache first ---- */

static int cache_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  mb_proc *p = mb_proc_of(L);
  char err[2048];
  mb_code *c = mb_code_get(p->node, name, err, sizeof err);
  if (!c) {
    /* not found: return the list of paths (like the standard searcher) */
    const char *nl = strchr(err, '\n');
    if (strncmp(err, "module '", 8) == 0) { lua_pushstring(L, nl ? nl + 2 : ""); return 1; }
    return luaL_error(L, "error loading module '%s':\n\t%s", name, err);
  }
  int st = mb_code_load(L, c);
  lua_pushstring(L, c->chunkname + 1);
  mb_code_unref(c);
  if (st != LUA_OK) return luaL_error(L, "error loading module '%s': %s", name, lua_tostring(L, -2));
  return 2;
}

/* ---- C modules: off unless the node was started with c_modules ---- */

/* A C library runs with the whole Lua API and native code: liblua's own
 * luaopen_debug hands out the registry, and any library can stop the node. */
static int refuse_loadlib(lua_State *L) {
  luaL_pushfail(L);
  lua_pushliteral(L, "package.loadlib: refused (C modules are off; start the node with c_modules)");
  lua_pushliteral(L, "absent");   /* loadlib's `where` when it cannot load libraries */
  return 3;
}

/* In place of the C and all-in-one searchers: one line of require's "not found" list. */
static int refuse_c_searcher(lua_State *L) {
  lua_pushliteral(L, "C modules are off (start the node with c_modules)");
  return 1;
}

static int preload_std(lua_State *L);
static const char *const lazy_names[] = {
  LUA_COLIBNAME, LUA_TABLIBNAME, LUA_IOLIBNAME, LUA_OSLIBNAME, LUA_STRLIBNAME,
  LUA_MATHLIBNAME, LUA_UTF8LIBNAME, LUA_DBLIBNAME, NULL };

static void setup_package(lua_State *L, mb_proc *p) {
  /* package is on the stack */
  lua_pushstring(L, p->node->path);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "searchers");
  lua_pushcfunction(L, cache_searcher);
  lua_rawseti(L, -2, 2);   /* replaces the Lua-file searcher */
  int c_modules = p->node->opts.c_modules;
  if (!c_modules) {
    lua_pushcfunction(L, refuse_c_searcher);
    lua_rawseti(L, -2, 3);
    lua_pushnil(L);
    lua_rawseti(L, -2, 4);
  }
  lua_pop(L, 1);
  if (!c_modules) {
    lua_pushcfunction(L, refuse_loadlib);
    lua_setfield(L, -2, "loadlib");
  }
  /* last: package.preload is the script's table, its metamethods may run here */
  lua_getfield(L, -1, "preload");
  for (const char *const *name = lazy_names; *name; name++) {
    lua_pushcfunction(L, preload_std);
    lua_setfield(L, -2, *name);
  }
  for (mb_preload *pl = p->node->preloads; pl; pl = pl->next) {
    lua_pushcfunction(L, pl->open);
    lua_setfield(L, -2, pl->name);
  }
  lua_pop(L, 1);
}

/* ---- lazy standard libraries ---- */

/* Every library is changed inside its open function (open_package, open_coroutine,
 * open_os, open_debug, open_base_lib), before luaL_requiref stores it through
 * package.loaded and _G, whose metamethods may be the script's: no route that opens
 * a library, and no reopening, lets Lua code see Lua's own functions.
 * Lua's own searchers and loadlib are never reachable: a package library opened
 * again (package.loaded.package and _G.package cleared) gets the same changes. */
static int open_package(lua_State *L) {
  /* luaopen_package sets _G.require: with a raw one already there that is a raw
   * set, so no __newindex of _G gets the new require while its searchers are Lua's */
  lua_pushglobaltable(L);
  lua_pushliteral(L, "require");
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  luaopen_package(L);
  setup_package(L, mb_proc_of(L));
  return 1;
}

typedef struct { const char *name; lua_CFunction open; } lib;
static const lib libs[] = {
  { LUA_LOADLIBNAME, open_package }, { LUA_COLIBNAME, open_coroutine },
  { LUA_TABLIBNAME, luaopen_table }, { LUA_IOLIBNAME, luaopen_io },
  { LUA_OSLIBNAME, open_os }, { LUA_STRLIBNAME, open_string },
  { LUA_MATHLIBNAME, luaopen_math }, { LUA_UTF8LIBNAME, luaopen_utf8 },
  { LUA_DBLIBNAME, open_debug }, { NULL, NULL } };

/* Open library l into _G and package.loaded; pushes it. */
static void open_lib(lua_State *L, const lib *l) {
  luaL_requiref(L, l->name, l->open, 1);
}

static const lib *find_lib(const char *name) {
  for (const lib *l = libs; l->name; l++)
    if (name[0] == l->name[0] && strcmp(name, l->name) == 0) return l;   /* most differ at once */
  return NULL;
}

/* package.preload entry of a standard library not opened yet. */
static int preload_std(lua_State *L) {
  const lib *l = find_lib(luaL_checkstring(L, 1));
  luaL_argcheck(L, l != NULL, 1, "not a standard library");
  open_lib(L, l);
  return 1;
}

static int open_base_lib(lua_State *L) {
  static const luaL_Reg fns[] = {
    { "print", mb_procenv_print }, { "load", text_load }, { "loadfile", text_loadfile },
    { "dofile", text_dofile }, { NULL, NULL } };
  luaopen_base(L);   /* writes into _G: no script can have a metamethod there yet */
  luaL_setfuncs(L, fns, 0);
  mb_light_prepare(L);   /* tostring and print render pids and refs */
  return 1;
}

/* The base library (print, pairs, assert, ...) the first time a global is missing. */
static int open_base(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, (void *)open_base) != LUA_TNIL) { lua_pop(L, 1); return 0; }
  lua_pop(L, 1);
  lua_pushboolean(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, (void *)open_base);
  luaL_requiref(L, LUA_GNAME, open_base_lib, 1);
  lua_pop(L, 1);
  return 1;
}

/* __index of one metatable that _G and strings share until `string` opens (a table
 * less per process). A global missing from _G: a standard library, else the base
 * library's. A string method before `string` was touched: open it (which installs
 * the real string metatable), then look the key up. */
static int lazy_index(lua_State *L) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    open_lib(L, find_lib(LUA_STRLIBNAME));
    /* package.loaded.string is what it returns, and a script may have put anything
     * there (this __index stays reachable as getmetatable(_G).__index) */
    if (!lua_istable(L, -1)) return 0;
    lua_pushvalue(L, 2);
    lua_rawget(L, -2);
    return 1;
  }
  luaL_checktype(L, 1, LUA_TTABLE);   /* reachable as getmetatable(_G).__index */
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  const lib *l = find_lib(lua_tostring(L, 2));
  if (l) { open_lib(L, l); return 1; }
  if (!open_base(L)) return 0;
  lua_rawget(L, 1);
  return 1;
}

/* ---- require before the package library is opened ---- */

/* `require` without the package library: package.loaded, the node's preloads, the
 * standard libraries, then the node's code cache. Touching `package` opens the real
 * library, whose require (with the same loaded table and searchers) replaces this. */
/* The node's preload of that name (the newest registered), or NULL. */
static const mb_preload *find_preload(const mb_node *n, const char *name) {
  for (const mb_preload *pl = n->preloads; pl; pl = pl->next)
    if (pl->name[0] == name[0] && strcmp(pl->name, name) == 0) return pl;   /* most differ at once */
  return NULL;
}

static int light_require(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);   /* 2 */
  if (lua_getfield(L, 2, name) != LUA_TNIL && lua_toboolean(L, -1)) return 1;
  lua_pop(L, 1);
  mb_proc *p = mb_proc_of(L);
  const lib *l = find_lib(name);
  if (l) { open_lib(L, l); return 1; }
  const mb_preload *pl = find_preload(p->node, name);
  if (pl) {
    lua_pushcfunction(L, pl->open);
    lua_pushvalue(L, 1);
    lua_pushliteral(L, ":preload:");
    lua_call(L, 2, 1);
    goto loaded;
  }
  char err[2048];
  mb_code *c = mb_code_get(p->node, name, err, sizeof err);
  if (!c) {
    if (strncmp(err, "module '", 8) != 0)
      return luaL_error(L, "error loading module '%s':\n\t%s", name, err);
    /* not a Lua module on the path: the real package library searches the rest
     * (C modules on package.cpath) and words the error */
    open_lib(L, find_lib(LUA_LOADLIBNAME));
    lua_getfield(L, -1, "loaded");
    lua_pop(L, 2);
    lua_getglobal(L, "require");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2);
    return 2;
  }
  int st = mb_code_load(L, c);
  lua_pushvalue(L, 1);
  lua_pushstring(L, c->chunkname + 1);
  mb_code_unref(c);
  if (st != LUA_OK) return luaL_error(L, "error loading module '%s': %s", name, lua_tostring(L, -3));
  lua_call(L, 2, 1);
loaded:
  if (!lua_isnil(L, -1)) lua_setfield(L, 2, name);
  else lua_pop(L, 1);
  if (lua_getfield(L, 2, name) == LUA_TNIL) {   /* a module that returned nothing */
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
  }
  return 1;
}

int mb_procenv_open(lua_State *L, mb_node *n, mb_proc *p) {
  (void)n;
  (void)p;
  /* package.loaded, with room for the moonbeam module a Lua body is opened with:
   * made here, it is in the node's state image (stateimage.c), not made by each */
  lua_createtable(L, 0, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushglobaltable(L);
  lua_pushcfunction(L, light_require);
  lua_setfield(L, -2, "require");
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, lazy_index);
  lua_setfield(L, -2, "__index");
  /* strings get their methods when `string` opens; until then this opens it. Any
   * string sets the type's metatable: this one is interned in every state. */
  lua_pushliteral(L, "__index");
  lua_pushvalue(L, -2);
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  return 0;
}

/* A body in Lua gets the node's moonbeam module as it starts, opened as require
 * would open it but with the name alone: nearly every such body requires it first,
 * and its require is then a table lookup that never calls an opener (an idle
 * process keeps no third CallInfo nor ":preload:" string from that call). A C body
 * (a gen_server's loop, whose callback module may never require it) does not pay
 * for it. */
int mb_procenv_open_lua(lua_State *L, mb_node *n, mb_proc *p) {
  const mb_preload *pl = find_preload(n, "moonbeam");
  if (!pl) return 0;
  /* ahead of any process (the node's state image): only the module this file knows,
   * whose tables hold C functions under string keys; a host's own opens with each */
  if (!p && pl->open != luaopen_moonbeam) return 1;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pushcfunction(L, pl->open);
  lua_pushstring(L, pl->name);
  lua_call(L, 1, 1);
  if (!lua_isnil(L, -1)) lua_setfield(L, -2, pl->name);
  else lua_pop(L, 1);
  lua_pop(L, 1);
  return 0;
}
