/* supspec (Lua face): checks a user's supervisor spec or child spec table (SPEC
 * section 3) and writes its normal form (core/supspec.h) with the C term writer,
 * defaults applied, for the core to parse without a Lua state. The check runs
 * under a pcall of its own: a field's metamethod may raise or try to yield, and
 * that is reported as what is wrong with the field; only memory errors leave. */
#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "supspec.h"
#include "code.h"
#include "codec.h"
#include "cterm.h"

typedef struct ck {
  lua_State *L;
  mb_node *n;
  mb_tw w;
  mb_buf *b;
  int child;            /* checking start_child's child spec, else start_link's spec */
  int failed, nomem;    /* a check failed (err set); a raise inside was ours, for memory */
  char *err;
  size_t errlen;
  size_t plen;          /* the path of the field being checked */
  char path[1024];
} ck;

static int fail(ck *c, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char *what = c->child ? "invalid child spec" : "invalid spec";
  c->failed = 1;
  if (!c->err || !c->errlen) return -1;
  if (c->plen) snprintf(c->err, c->errlen, "%s: %s: %s", what, c->path, msg);
  else snprintf(c->err, c->errlen, "%s: %s", what, msg);
  return -1;
}

static void nomem(ck *c) {
  c->nomem = 1;
  luaL_error(c->L, "not enough memory");
}

/* ---- the path: "children[2].spec.children[1].module" ---- */

/* Append n bytes of p to the path (cut at its size); returns where the part began.
 * Plain copies: the path is built for every field checked, and only read when a
 * check fails (vsnprintf here was ~5% of a start_child). */
static size_t path_put(ck *c, size_t at, const char *p, size_t n) {
  size_t room = sizeof c->path - 1 - c->plen;
  if (n > room) n = room;
  memcpy(c->path + c->plen, p, n);
  c->plen += n;
  c->path[c->plen] = '\0';
  return at;
}

static size_t path_field(ck *c, const char *name) {
  size_t at = c->plen;
  if (at) path_put(c, at, ".", 1);
  return path_put(c, at, name, strlen(name));
}

static size_t path_index(ck *c, lua_Integer i) {
  char num[24], *e = num + sizeof num, *q = e;
  unsigned long long u = i < 0 ? 0ULL - (unsigned long long)i : (unsigned long long)i;
  *--q = ']';
  do *--q = (char)('0' + u % 10); while ((u /= 10) > 0);
  if (i < 0) *--q = '-';
  *--q = '[';
  return path_put(c, c->plen, q, (size_t)(e - q));
}

static void path_back(ck *c, size_t at) {
  c->plen = at;
  c->path[at] = '\0';
}

/* What the value at idx is, for "got ...": a number's value, else its type. */
static const char *got(lua_State *L, int idx, char *buf, size_t len) {
  if (lua_type(L, idx) != LUA_TNUMBER) return luaL_typename(L, idx);
  if (lua_isinteger(L, idx)) snprintf(buf, len, "%lld", (long long)lua_tointeger(L, idx));
  else snprintf(buf, len, LUA_NUMBER_FMT, (double)lua_tonumber(L, idx));
  return buf;
}

static int type_error(ck *c, const char *expected) {
  char num[64];
  return fail(c, "expected %s, got %s", expected, got(c->L, -1, num, sizeof num));
}

/* Push field `name` of the table at t (its metamethods may run) and make it the
 * path's last part; returns its type. The caller pops it and steps the path back. */
static int get_field(ck *c, int t, const char *name, size_t *at) {
  *at = path_field(c, name);
  return lua_getfield(c->L, t, name);
}

static void done_field(ck *c, size_t at) {
  lua_pop(c->L, 1);
  path_back(c, at);
}

/* The index of the string s in names (NULL-terminated), or -1. */
static int index_of(const char *const *names, const char *s, size_t len) {
  for (int i = 0; names[i]; i++)
    if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0) return i;
  return -1;
}

/* A field that names one of names[] (NULL-terminated); dflt when absent. */
static int enum_field(ck *c, int t, const char *name, const char *const *names, int dflt, int *out) {
  size_t at;
  int tt = get_field(c, t, name, &at);
  *out = dflt;
  if (tt == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(c->L, -1, &len);
    if ((*out = index_of(names, s, len)) < 0) return fail(c, "unknown %s '%s'", name, s);
  } else if (tt != LUA_TNIL) {
    return type_error(c, "a string");
  }
  mb_tw_string(&c->w, name);
  mb_tw_int(&c->w, *out);
  done_field(c, at);
  return 0;
}

/* An optional string field, written as is. */
static int string_field(ck *c, int t, const char *name) {
  size_t at, len;
  int tt = get_field(c, t, name, &at);
  if (tt == LUA_TSTRING) {
    const char *s = lua_tolstring(c->L, -1, &len);
    mb_tw_string(&c->w, name);
    mb_tw_lstring(&c->w, s, len);
  } else if (tt != LUA_TNIL) {
    return type_error(c, "a string");
  }
  done_field(c, at);
  return 0;
}

/* ---- child specs ---- */

static int check_sup(ck *c, int t, int level);

/* The module must be found (and compile) on the node's path. */
static int find_module(ck *c, const char *name, size_t len) {
  char e[1024];
  static const char nf[] = "' not found";
  mb_code *code = mb_code_get(c->n, name, e, sizeof e);
  if (code) {
    mb_code_unref(code);
    return 0;
  }
  if (strcmp(e, "not enough memory") == 0) nomem(c);
  /* "module 'x' not found:\n\tno file ..." is said without the list of files */
  if (strncmp(e, "module '", 8) == 0 && strlen(e + 8) >= len + sizeof nf - 1 &&
      memcmp(e + 8, name, len) == 0 && memcmp(e + 8 + len, nf, sizeof nf - 1) == 0)
    return fail(c, "module '%s' not found", name);
  return fail(c, "%s", e);   /* it was found and does not compile */
}

static int module_field(ck *c, int t, int type) {
  size_t at, len;
  int tt = get_field(c, t, "module", &at);
  const char *s = "supervisor";   /* a supervisor child runs no module of its own */
  len = strlen(s);
  if (tt == LUA_TSTRING) {
    s = lua_tolstring(c->L, -1, &len);
    if (memchr(s, '\0', len)) return fail(c, "module name holds a NUL byte");
    if (type == MB_TYPE_WORKER && find_module(c, s, len)) return -1;
  } else if (tt != LUA_TNIL || type == MB_TYPE_WORKER) {
    return type_error(c, "a string");
  }
  mb_tw_string(&c->w, "module");
  mb_tw_lstring(&c->w, s, len);
  done_field(c, at);
  return 0;
}

/* args: any sendable value, encoded on its own and written as a string. */
static int args_field(ck *c, int t) {
  size_t at;
  if (get_field(c, t, "args", &at) != LUA_TNIL) {
    mb_buf ab;
    char e[512];
    if (mb_buf_init(&ab, 0, c->n->max_message) != 0) nomem(c);
    int rc = mb_encode(c->L, -1, &ab, "args", e, sizeof e);
    if (rc == MB_ENC_OK) {   /* nothing that can raise until ab is freed */
      mb_tw_string(&c->w, "args");
      mb_tw_lstring(&c->w, ab.data, ab.len);
    }
    mb_buf_free(&ab);
    if (rc == MB_ENC_NOMEM) nomem(c);
    if (rc != MB_ENC_OK) return fail(c, "%s", e);
  }
  done_field(c, at);
  return 0;
}

/* shutdown: ms >= 0 (a fraction rounds up; past int64, infinity), "brutal_kill"
 * or "infinity"; dflt when absent. */
static int shutdown_field(ck *c, int t, int64_t dflt) {
  static const char *const words[] = { "brutal_kill", "infinity", NULL };
  static const int64_t values[] = { MB_SHUTDOWN_BRUTAL, MB_SHUTDOWN_INFINITY };
  size_t at;
  int64_t ms = dflt;
  int tt = get_field(c, t, "shutdown", &at);
  if (tt == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(c->L, -1, &len);
    int i = index_of(words, s, len);
    if (i < 0) return fail(c, "unknown shutdown '%s'", s);
    ms = values[i];
  } else if (tt == LUA_TNUMBER) {
    lua_Number v = lua_tonumber(c->L, -1);
    if (!(v >= 0)) return type_error(c, "a number >= 0, \"brutal_kill\" or \"infinity\"");
    ms = lua_isinteger(c->L, -1) ? (int64_t)lua_tointeger(c->L, -1)
         : v >= 0x1p63 ? MB_SHUTDOWN_INFINITY : (int64_t)ceil(v);
  } else if (tt != LUA_TNIL) {
    return type_error(c, "a number >= 0, \"brutal_kill\" or \"infinity\"");
  }
  mb_tw_string(&c->w, "shutdown");
  mb_tw_int(&c->w, ms);
  done_field(c, at);
  return 0;
}

/* id: a string or an integer, unique among the ids in the table at ids (0: no
 * check); required unless this is start_child's own child spec. */
static int id_field(ck *c, int t, int ids, int required) {
  size_t at;
  lua_State *L = c->L;
  int tt = get_field(c, t, "id", &at);
  if (tt == LUA_TNIL && !required) { done_field(c, at); return 0; }
  int isint = 0;
  lua_Integer i = tt == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
  if (tt != LUA_TSTRING && !isint) return type_error(c, "a string or an integer");
  mb_tw_string(&c->w, "id");
  if (isint) {
    lua_pushinteger(L, i);   /* 2.0 is the id 2, as it is the key 2 */
    lua_replace(L, -2);
    mb_tw_int(&c->w, i);
  } else {
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    mb_tw_lstring(&c->w, s, len);
  }
  if (ids) {
    lua_pushvalue(L, -1);
    if (lua_rawget(L, ids) != LUA_TNIL) {
      if (isint) return fail(c, "duplicate id %lld", (long long)i);
      return fail(c, "duplicate id '%s'", lua_tostring(L, -2));
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushboolean(L, 1);
    lua_rawset(L, ids);
  }
  done_field(c, at);
  return 0;
}

/* The child spec table at t, written as a table of fields. level: the specs above it. */
static int check_child(ck *c, int t, int level, int ids, int id_required) {
  static const char *const types[] = { "worker", "supervisor", NULL };
  static const char *const kinds[] = { "gen_server", "process", NULL };
  static const char *const restarts[] = { "permanent", "transient", "temporary", NULL };
  int type, kind, restart;
  if (!lua_checkstack(c->L, 8)) nomem(c);
  mb_tw_table(&c->w, 0);
  if (enum_field(c, t, "type", types, MB_TYPE_WORKER, &type) || id_field(c, t, ids, id_required) ||
      string_field(c, t, "name") || enum_field(c, t, "kind", kinds, MB_CHILD_GEN_SERVER, &kind) ||
      enum_field(c, t, "restart", restarts, MB_RESTART_PERMANENT, &restart) ||
      shutdown_field(c, t, type == MB_TYPE_SUPERVISOR ? MB_SHUTDOWN_INFINITY : 5000) ||
      module_field(c, t, type) || args_field(c, t))
    return -1;
  if (type == MB_TYPE_SUPERVISOR) {
    size_t at;
    if (get_field(c, t, "spec", &at) != LUA_TTABLE) return type_error(c, "a table");
    if (level >= MB_SUP_MAXNEST) return fail(c, "nested too deeply");
    mb_tw_string(&c->w, "spec");
    if (check_sup(c, lua_gettop(c->L), level + 1)) return -1;
    done_field(c, at);
  }
  mb_tw_end(&c->w);
  return 0;
}

/* ---- supervisor specs ---- */

/* children: an array of child specs with unique ids; absent: none. */
static int children_field(ck *c, int t, int level) {
  lua_State *L = c->L;
  size_t at;
  int tt = get_field(c, t, "children", &at);
  lua_Integer n = 0;
  if (tt != LUA_TNIL && tt != LUA_TTABLE) return type_error(c, "a table");
  int arr = lua_gettop(L);
  if (tt == LUA_TTABLE) {
    n = luaL_len(L, arr);   /* __len may raise: reported at this path */
    if (n < 0 || n > INT32_MAX) return fail(c, "not an array (its length is %lld)", (long long)n);
    for (lua_pushnil(L); lua_next(L, arr); lua_pop(L, 1)) {   /* raw keys: 1..n only */
      lua_Integer k = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0;
      if (k >= 1 && k <= n) continue;
      if (lua_type(L, -2) == LUA_TSTRING) return fail(c, "not an array (found key '%s')", lua_tostring(L, -2));
      if (lua_type(L, -2) == LUA_TNUMBER) {
        char num[64];
        return fail(c, "not an array (found key %s)", got(L, -2, num, sizeof num));
      }
      return fail(c, "not an array (found a %s key)", luaL_typename(L, -2));
    }
  }
  lua_createtable(L, 0, n < 64 ? (int)n : 64);   /* the ids seen */
  int ids = lua_gettop(L);
  mb_tw_string(&c->w, "children");
  mb_tw_table(&c->w, (uint64_t)n);
  for (lua_Integer i = 1; i <= n; i++) {
    size_t ci = path_index(c, i);
    if (lua_geti(L, arr, i) != LUA_TTABLE) return type_error(c, "a table");
    if (check_child(c, lua_gettop(L), level, ids, 1)) return -1;
    lua_pop(L, 1);
    path_back(c, ci);
  }
  mb_tw_end(&c->w);
  lua_pop(L, 1);   /* ids */
  done_field(c, at);
  return 0;
}

static int check_sup(ck *c, int t, int level) {
  static const char *const strategies[] = { "one_for_one", "one_for_all", "rest_for_one", NULL };
  lua_State *L = c->L;
  size_t at;
  char num[64];
  int strategy;
  if (!lua_checkstack(L, 8)) nomem(c);
  mb_tw_table(&c->w, 0);
  if (enum_field(c, t, "strategy", strategies, MB_SUP_ONE_FOR_ONE, &strategy)) return -1;

  int isint = 1;
  lua_Integer intensity = 1;
  int tt = get_field(c, t, "intensity", &at);
  if (tt == LUA_TNUMBER) intensity = lua_tointegerx(L, -1, &isint);
  if ((tt != LUA_TNIL && tt != LUA_TNUMBER) || !isint || intensity < 0)
    return fail(c, "expected an integer >= 0, got %s", got(L, -1, num, sizeof num));
  mb_tw_string(&c->w, "intensity");
  mb_tw_int(&c->w, intensity);
  done_field(c, at);

  lua_Number period = 5;
  tt = get_field(c, t, "period", &at);
  if (tt == LUA_TNUMBER) period = lua_tonumber(L, -1);
  if ((tt != LUA_TNIL && tt != LUA_TNUMBER) || !(period > 0))
    return fail(c, "expected a number > 0, got %s", got(L, -1, num, sizeof num));
  mb_tw_string(&c->w, "period");
  mb_tw_float(&c->w, period);
  done_field(c, at);

  if (string_field(c, t, "name") || children_field(c, t, level)) return -1;
  mb_tw_end(&c->w);
  return 0;
}

/* ---- entry: under a pcall ---- */

/* The check this thread is running: check_main is reachable by a metamethod the
 * check runs (debug.getinfo finds it on the stack), so it runs only with the very
 * struct check() passed it, which Lua code cannot name (pids and refs are light
 * userdata too, never that address). */
static __thread ck *live_check;

static int check_main(lua_State *L) {
  ck *c = lua_touserdata(L, 1);
  if (lua_type(L, 1) != LUA_TLIGHTUSERDATA || !c || c != live_check) return luaL_error(L, "not for scripts");
  live_check = NULL;   /* once */
  if (lua_type(L, 2) != LUA_TTABLE) {
    lua_settop(L, 2);
    type_error(c, "a table");
    return 0;
  }
  mb_tw_begin(&c->w, c->b);
  if (c->child ? check_child(c, 2, 0, 0, 0) : check_sup(c, 2, 0)) return 0;
  int rc = mb_tw_finish(&c->w);
  if (rc == MB_ENC_NOMEM) nomem(c);
  if (rc == MB_ENC_TOOBIG) fail(c, "message too large");
  else if (rc != MB_ENC_OK) fail(c, "cannot be written (%d)", rc);   /* not expected */
  return 0;
}

static int check(lua_State *L, mb_node *n, int idx, mb_buf *b, char *err, size_t errlen, int child) {
  ck c;
  c.L = L;
  c.n = n;
  c.b = b;
  c.child = child;
  c.failed = c.nomem = 0;
  c.err = err;
  c.errlen = errlen;
  c.plen = 0;
  c.path[0] = '\0';
  size_t len0 = b->len;
  idx = lua_absindex(L, idx);
  if (!lua_checkstack(L, 3)) luaL_error(L, "not enough memory");
  lua_pushcfunction(L, check_main);
  lua_pushlightuserdata(L, &c);
  lua_pushvalue(L, idx);
  ck *outer = live_check;   /* a metamethod of an outer check may have started this one */
  live_check = &c;
  int st = lua_pcall(L, 2, 0, 0);
  live_check = outer;
  if (st == LUA_OK && !c.failed) return 0;
  b->len = len0;
  if (st == LUA_OK) return -1;
  if (st == LUA_ERRMEM || c.nomem) return lua_error(L);
  /* a metamethod raised (or tried to yield) while the field at c.path was read */
  int et = lua_type(L, -1);
  if (et == LUA_TSTRING || et == LUA_TNUMBER) fail(&c, "%s", lua_tostring(L, -1));
  else fail(&c, "(error object is a %s value)", luaL_typename(L, -1));
  lua_pop(L, 1);
  return -1;
}

int mb_l_sup_spec(lua_State *L, mb_node *n, int idx, mb_buf *b, char *err, size_t errlen) {
  return check(L, n, idx, b, err, errlen, 0);
}

int mb_l_child_spec(lua_State *L, mb_node *n, int idx, mb_buf *b, char *err, size_t errlen) {
  return check(L, n, idx, b, err, errlen, 1);
}
