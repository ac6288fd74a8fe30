/* test_supspec_lua: the Lua face's checker of supervisor specs (bindings/supspec.c)
 * on a plain lua_State and a node that is never started, whose search path is a
 * temp directory with a few modules: every refusal's exact message, and normal
 * forms that parse back (core/supspec.c) with the defaults of SPEC section 3. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "nodecheck.h"
#include "codec.h"
#include "moonbeam.h"
#include "proc.h"
#include "../../bindings/supspec.h"

typedef struct { char dir[64]; mb_node *n; lua_State *L; } fixture;

static void write_module(fixture *f, const char *name, const char *src) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s.lua", f->dir, name);
  FILE *fp = fopen(path, "w");
  CHECK(fp != NULL);
  fputs(src, fp);
  CHECK(fclose(fp) == 0);
}

static void setup_with(fixture *f, size_t max_message) {
  f->n = check_node_in_tempdir(f->dir, sizeof f->dir, "mb_test_supspec", max_message);
  write_module(f, "stack", "return { init = function(a) return 'ok', a end }\n");
  write_module(f, "echo", "return function() end\n");
  write_module(f, "broken", "return {\n");
  f->L = luaL_newstate();
  CHECK(f->L != NULL);
  luaL_openlibs(f->L);
}

static void setup(fixture *f) { setup_with(f, 0); }

/* Free everything, remove the directory, and (under ASan) fail on any leak. */
static void teardown(fixture *f) {
  lua_close(f->L);
  mb_node_free(f->n);
  check_remove_dir(f->dir);
  check_no_leaks();
}

/* Check the value of the Lua expression src as a spec (child: a child spec) into b
 * (with the header room a signal has); the stack is as it was either way. */
static int check_src(fixture *f, const char *src, int child, mb_buf *b, char *err, size_t errlen) {
  char chunk[4096];
  snprintf(chunk, sizeof chunk, "return %s", src);
  if (luaL_dostring(f->L, chunk) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", src, lua_tostring(f->L, -1));
    CHECK(0);
  }
  int top = lua_gettop(f->L);
  CHECK(mb_buf_init(b, MB_SIG_HDR, 0) == 0);
  err[0] = '\0';
  int rc = child ? mb_l_child_spec(f->L, f->n, -1, b, err, errlen) : mb_l_sup_spec(f->L, f->n, -1, b, err, errlen);
  CHECK_EQ_INT(lua_gettop(f->L), top);
  lua_settop(f->L, 0);
  if (rc != 0) CHECK_EQ_INT(b->len, MB_SIG_HDR);   /* nothing written */
  return rc;
}

/* The spec src parsed back from its normal form; NULL if the check refused it. */
static mb_sup_spec *sup_of(fixture *f, const char *src) {
  mb_buf b;
  char err[512];
  if (check_src(f, src, 0, &b, err, sizeof err) != 0) {
    fprintf(stderr, "%s: %s\n", src, err);
    mb_buf_free(&b);
    return NULL;
  }
  mb_sup_spec *s = mb_sup_spec_parse(b.data + MB_SIG_HDR, b.len - MB_SIG_HDR, err, sizeof err);
  if (!s) fprintf(stderr, "%s: %s\n", src, err);
  CHECK(s != NULL);
  mb_buf_free(&b);
  return s;
}

static void child_of(fixture *f, const char *src, mb_child_spec *c) {
  mb_buf b;
  char err[512];
  if (check_src(f, src, 1, &b, err, sizeof err) != 0) {
    fprintf(stderr, "%s: %s\n", src, err);
    CHECK(0);
  }
  if (mb_child_spec_parse(b.data + MB_SIG_HDR, b.len - MB_SIG_HDR, c, err, sizeof err) != 0) {
    fprintf(stderr, "%s: %s\n", src, err);
    CHECK(0);
  }
  mb_buf_free(&b);
}

/* Decode args and compare with the Lua expression want (through a serialiser). */
static void check_args(fixture *f, const mb_child_spec *c, const char *want) {
  lua_State *L = f->L;
  CHECK(c->args != NULL);
  CHECK(luaL_dostring(L,
    "return function(v) local function s(v) if type(v) ~= 'table' then return tostring(v) end\n"
    "  local ks = {} for k in pairs(v) do ks[#ks + 1] = k end\n"
    "  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)\n"
    "  local o = {} for _, k in ipairs(ks) do o[#o + 1] = tostring(k) .. '=' .. s(v[k]) end\n"
    "  return '{' .. table.concat(o, ',') .. '}' end return s(v) end") == LUA_OK);
  lua_pushvalue(L, -1);
  CHECK(mb_decode(L, c->args, c->args_len) == 0);
  CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK);
  char chunk[256];
  snprintf(chunk, sizeof chunk, "return %s", want);
  lua_insert(L, -2);
  CHECK(luaL_dostring(L, chunk) == LUA_OK);
  CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK);
  CHECK_EQ_STR(lua_tostring(L, -2), lua_tostring(L, -1));
  lua_settop(L, 0);
}

static void check_worker_defaults(const mb_child_spec *c) {
  CHECK(c->args == NULL && c->name == NULL && c->spec == NULL);
  CHECK_EQ_INT(c->kind, MB_CHILD_GEN_SERVER);
  CHECK_EQ_INT(c->restart, MB_RESTART_PERMANENT);
  CHECK_EQ_INT(c->shutdown, 5000);
  CHECK_EQ_INT(c->type, MB_TYPE_WORKER);
}

static void check_sup_defaults(const mb_sup_spec *s) {
  CHECK_EQ_INT(s->strategy, MB_SUP_ONE_FOR_ONE);
  CHECK_EQ_INT(s->intensity, 1);
  CHECK(s->period == 5.0);
  CHECK(s->name == NULL);
}

TEST(an_empty_spec_gets_the_defaults) {
  fixture f;
  setup(&f);
  mb_sup_spec *s = sup_of(&f, "{}");
  CHECK(s != NULL);
  check_sup_defaults(s);
  CHECK_EQ_INT(s->nchildren, 0);
  mb_sup_spec_free(s);
  s = sup_of(&f, "{ children = {}, unknown = print, [1] = 'ignored too' }");
  CHECK(s != NULL && s->nchildren == 0);
  mb_sup_spec_free(s);
  teardown(&f);
}

TEST(children_get_the_defaults_for_their_type) {
  fixture f;
  setup(&f);
  mb_sup_spec *s = sup_of(&f, "{ children = { { id = 'a', module = 'stack', bogus = 1 },"
                              "  { id = 'sub', type = 'supervisor', spec = {} } } }");
  CHECK(s != NULL && s->nchildren == 2);
  const mb_child_spec *c = &s->children[0];
  CHECK(!c->id_is_int);
  CHECK_EQ_STR(c->id, "a");
  CHECK_EQ_STR(c->module, "stack");
  check_worker_defaults(c);
  c = &s->children[1];
  CHECK_EQ_STR(c->id, "sub");
  CHECK_EQ_STR(c->module, "supervisor");   /* a supervisor runs no module: its name says what it is */
  CHECK_EQ_INT(c->type, MB_TYPE_SUPERVISOR);
  CHECK_EQ_INT(c->shutdown, MB_SHUTDOWN_INFINITY);
  CHECK_EQ_INT(c->kind, MB_CHILD_GEN_SERVER);
  CHECK_EQ_INT(c->restart, MB_RESTART_PERMANENT);
  CHECK(c->args == NULL && c->name == NULL && c->spec != NULL);
  check_sup_defaults(c->spec);
  CHECK_EQ_INT(c->spec->nchildren, 0);
  mb_sup_spec_free(s);
  teardown(&f);
}

TEST(every_field_is_carried) {
  fixture f;
  setup(&f);
  mb_sup_spec *s = sup_of(&f,
    "{ strategy = 'rest_for_one', intensity = 3, period = 0.5, name = 'app_sup', children = {"
    "  { id = 'stack', module = 'stack', args = { 1, 2, k = { true } }, name = 'stack' },"
    "  { id = 7, module = 'echo', kind = 'process', restart = 'transient', shutdown = 'brutal_kill' },"
    "  { id = 2.0, module = 'echo', restart = 'temporary', shutdown = 2.5, args = 'x' },"
    "  { id = 'z', module = 'stack', shutdown = math.huge, args = false },"
    "  { id = 'i', module = 'stack', shutdown = 'infinity', kind = 'gen_server', type = 'worker' },"
    "  { id = 0, module = 'stack', shutdown = 0 },"
    "  { id = 'sub', type = 'supervisor', shutdown = 100, name = 'sub_sup', module = 'mine', spec = {"
    "      strategy = 'one_for_all', intensity = 0, period = 10, name = 'inner',"
    "      children = { { id = 'w', module = 'echo', kind = 'process' } } } } } }");
  CHECK(s != NULL);
  CHECK_EQ_INT(s->strategy, MB_SUP_REST_FOR_ONE);
  CHECK_EQ_INT(s->intensity, 3);
  CHECK(s->period == 0.5);
  CHECK_EQ_STR(s->name, "app_sup");
  CHECK_EQ_INT(s->name_len, 7);
  CHECK_EQ_INT(s->nchildren, 7);

  mb_child_spec *c = s->children;
  CHECK_EQ_STR(c[0].id, "stack");
  CHECK_EQ_STR(c[0].name, "stack");
  check_args(&f, &c[0], "{ 1, 2, k = { true } }");

  CHECK(c[1].id_is_int && c[1].id_int == 7 && c[1].id == NULL);
  CHECK_EQ_STR(c[1].module, "echo");
  CHECK_EQ_INT(c[1].kind, MB_CHILD_PROCESS);
  CHECK_EQ_INT(c[1].restart, MB_RESTART_TRANSIENT);
  CHECK_EQ_INT(c[1].shutdown, MB_SHUTDOWN_BRUTAL);
  CHECK(c[1].args == NULL);

  CHECK(c[2].id_is_int && c[2].id_int == 2);   /* 2.0 is the id 2, as it is the key 2 */
  CHECK_EQ_INT(c[2].restart, MB_RESTART_TEMPORARY);
  CHECK_EQ_INT(c[2].shutdown, 3);              /* a fraction of a ms rounds up */
  check_args(&f, &c[2], "'x'");

  CHECK_EQ_INT(c[3].shutdown, MB_SHUTDOWN_INFINITY);
  check_args(&f, &c[3], "false");              /* false is a value, nil is none */
  CHECK_EQ_INT(c[4].shutdown, MB_SHUTDOWN_INFINITY);
  CHECK_EQ_INT(c[4].kind, MB_CHILD_GEN_SERVER);
  CHECK_EQ_INT(c[4].type, MB_TYPE_WORKER);
  CHECK(c[5].id_is_int && c[5].id_int == 0);
  CHECK_EQ_INT(c[5].shutdown, 0);

  CHECK_EQ_STR(c[6].id, "sub");
  CHECK_EQ_STR(c[6].name, "sub_sup");
  CHECK_EQ_STR(c[6].module, "mine");           /* kept, never looked up */
  CHECK_EQ_INT(c[6].shutdown, 100);
  const mb_sup_spec *sub = c[6].spec;
  CHECK(sub != NULL);
  CHECK_EQ_INT(sub->strategy, MB_SUP_ONE_FOR_ALL);
  CHECK_EQ_INT(sub->intensity, 0);
  CHECK(sub->period == 10.0);
  CHECK_EQ_STR(sub->name, "inner");
  CHECK_EQ_INT(sub->nchildren, 1);
  CHECK_EQ_STR(sub->children[0].id, "w");
  CHECK_EQ_INT(sub->children[0].kind, MB_CHILD_PROCESS);
  CHECK_EQ_INT(sub->children[0].shutdown, 5000);
  mb_sup_spec_free(s);
  teardown(&f);
}

TEST(a_child_spec_may_leave_out_its_id) {
  fixture f;
  setup(&f);
  mb_child_spec c;
  child_of(&f, "{ module = 'stack' }", &c);
  CHECK(!c.id_is_int && c.id == NULL);
  CHECK_EQ_STR(c.module, "stack");
  check_worker_defaults(&c);
  mb_child_spec_clear(&c);
  child_of(&f, "{ id = 3, module = 'echo', kind = 'process', restart = 'temporary', args = { 'a' } }", &c);
  CHECK(c.id_is_int && c.id_int == 3);
  CHECK_EQ_INT(c.kind, MB_CHILD_PROCESS);
  CHECK_EQ_INT(c.restart, MB_RESTART_TEMPORARY);
  check_args(&f, &c, "{ 'a' }");
  mb_child_spec_clear(&c);
  child_of(&f, "{ type = 'supervisor', spec = { strategy = 'one_for_all', children = { { id = 1, module = 'stack' } } } }", &c);
  CHECK(c.id == NULL && !c.id_is_int);
  CHECK(c.spec != NULL && c.spec->nchildren == 1 && c.spec->strategy == MB_SUP_ONE_FOR_ALL);
  mb_child_spec_clear(&c);
  teardown(&f);
}

/* Fields are read as t.field reads them: through __index too. */
TEST(fields_are_read_through_metamethods) {
  fixture f;
  setup(&f);
  mb_sup_spec *s = sup_of(&f,
    "setmetatable({}, { __index = function(_, k)\n"
    "  if k == 'strategy' then return 'one_for_all' end\n"
    "  if k == 'children' then return setmetatable({}, { __len = function() return 1 end,\n"
    "    __index = function(_, i) return i == 1 and { id = 'p', module = 'stack' } or nil end }) end\n"
    "end })");
  CHECK(s != NULL);
  CHECK_EQ_INT(s->strategy, MB_SUP_ONE_FOR_ALL);
  CHECK_EQ_INT(s->nchildren, 1);
  CHECK_EQ_STR(s->children[0].id, "p");
  mb_sup_spec_free(s);
  teardown(&f);
}

typedef struct { const char *src, *err; } refusal;

/* Every refusal, with its exact message. */
static const refusal sup_refusals[] = {
  { "'spec'", "invalid spec: expected a table, got string" },
  { "nil", "invalid spec: expected a table, got nil" },
  { "{ strategy = 'one_for_some' }", "invalid spec: strategy: unknown strategy 'one_for_some'" },
  { "{ strategy = 1 }", "invalid spec: strategy: expected a string, got 1" },
  { "{ intensity = -1 }", "invalid spec: intensity: expected an integer >= 0, got -1" },
  { "{ intensity = 1.5 }", "invalid spec: intensity: expected an integer >= 0, got 1.5" },
  { "{ intensity = '3' }", "invalid spec: intensity: expected an integer >= 0, got string" },
  { "{ intensity = 2^63 }", "invalid spec: intensity: expected an integer >= 0, got 9.2233720368548e+18" },
  { "{ period = 0 }", "invalid spec: period: expected a number > 0, got 0" },
  { "{ period = -2.5 }", "invalid spec: period: expected a number > 0, got -2.5" },
  { "{ period = '5' }", "invalid spec: period: expected a number > 0, got string" },
  { "{ name = 5 }", "invalid spec: name: expected a string, got 5" },
  { "{ children = 'x' }", "invalid spec: children: expected a table, got string" },
  { "{ children = { a = {} } }", "invalid spec: children: not an array (found key 'a')" },
  { "{ children = { { id = 1, module = 'stack' }, [2.5] = {} } }", "invalid spec: children: not an array (found key 2.5)" },
  { "{ children = { [true] = {} } }", "invalid spec: children: not an array (found a boolean key)" },
  { "{ children = { 'x' } }", "invalid spec: children[1]: expected a table, got string" },
  { "{ children = { { module = 'stack' } } }", "invalid spec: children[1].id: expected a string or an integer, got nil" },
  { "{ children = { { id = 1.5, module = 'stack' } } }", "invalid spec: children[1].id: expected a string or an integer, got 1.5" },
  { "{ children = { { id = {}, module = 'stack' } } }", "invalid spec: children[1].id: expected a string or an integer, got table" },
  { "{ children = { { id = 'a', module = 'stack' }, { id = 'b', module = 'stack' }, { id = 'a', module = 'stack' } } }",
    "invalid spec: children[3].id: duplicate id 'a'" },
  { "{ children = { { id = 1, module = 'stack' }, { id = 1.0, module = 'stack' } } }", "invalid spec: children[2].id: duplicate id 1" },
  { "{ children = { { id = 'x', module = 'nope' } } }", "invalid spec: children[1].module: module 'nope' not found" },
  { "{ children = { { id = 'x' } } }", "invalid spec: children[1].module: expected a string, got nil" },
  { "{ children = { { id = 'x', module = 5 } } }", "invalid spec: children[1].module: expected a string, got 5" },
  { "{ children = { { id = 'x', module = 'st\\0ack' } } }", "invalid spec: children[1].module: module name holds a NUL byte" },
  { "{ children = { { id = 'x', type = 'supervisor', module = '\\0', spec = {} } } }", "invalid spec: children[1].module: module name holds a NUL byte" },
  { "{ children = { { id = 'x', module = 'stack', kind = 'gen_event' } } }", "invalid spec: children[1].kind: unknown kind 'gen_event'" },
  { "{ children = { { id = 'x', module = 'stack', restart = 'sometimes' } } }", "invalid spec: children[1].restart: unknown restart 'sometimes'" },
  { "{ children = { { id = 'x', module = 'stack', restart = true } } }", "invalid spec: children[1].restart: expected a string, got boolean" },
  { "{ children = { { id = 'x', module = 'stack', type = 'manager' } } }", "invalid spec: children[1].type: unknown type 'manager'" },
  { "{ children = { { id = 'x', module = 'stack', shutdown = -1 } } }",
    "invalid spec: children[1].shutdown: expected a number >= 0, \"brutal_kill\" or \"infinity\", got -1" },
  { "{ children = { { id = 'x', module = 'stack', shutdown = 0/0 > 1 } } }",
    "invalid spec: children[1].shutdown: expected a number >= 0, \"brutal_kill\" or \"infinity\", got boolean" },
  { "{ children = { { id = 'x', module = 'stack', shutdown = 'soon' } } }", "invalid spec: children[1].shutdown: unknown shutdown 'soon'" },
  { "{ children = { { id = 'x', module = 'stack', name = {} } } }", "invalid spec: children[1].name: expected a string, got table" },
  { "{ children = { { id = 'x', module = 'stack', args = { f = print } } } }",
    "invalid spec: children[1].args: cannot send a function (at args.f)" },
  { "{ children = { { id = 'x', type = 'supervisor' } } }", "invalid spec: children[1].spec: expected a table, got nil" },
  { "{ children = { { id = 'x', type = 'supervisor', spec = 'one_for_one' } } }", "invalid spec: children[1].spec: expected a table, got string" },
  { "{ children = { { id = 'x', type = 'supervisor', module = 5, spec = {} } } }", "invalid spec: children[1].module: expected a string, got 5" },
  { "{ children = { { id = 'a', module = 'stack' }, { id = 'b', module = 'stack' },"
    "  { id = 'c', type = 'supervisor', spec = { children = { { id = 'd', module = 'nope' } } } } } }",
    "invalid spec: children[3].spec.children[1].module: module 'nope' not found" },
  { "{ children = { { id = 1, type = 'supervisor', spec = { children = { { module = 'stack' } } } } } }",
    "invalid spec: children[1].spec.children[1].id: expected a string or an integer, got nil" },
  { "{ children = { { id = 1, type = 'supervisor', spec = { strategy = 'x' } } } }",
    "invalid spec: children[1].spec.strategy: unknown strategy 'x'" },
  { "{ children = { { id = 1, type = 'supervisor', spec = { children = { { id = 1, module = 'stack' }, { id = 1, module = 'echo' } } } },"
    "  { id = 2, module = 'stack' } } }",
    "invalid spec: children[1].spec.children[2].id: duplicate id 1" },
  /* a metamethod that raises, raises something else, tries to yield, or gives a bad length */
  { "setmetatable({}, { __index = function() error('boom', 0) end })", "invalid spec: strategy: boom" },
  { "setmetatable({}, { __index = function() error({}) end })", "invalid spec: strategy: (error object is a table value)" },
  { "setmetatable({}, { __index = function() coroutine.yield() end })",
    "invalid spec: strategy: attempt to yield from outside a coroutine" },
  { "{ children = setmetatable({}, { __len = function() return 1.5 end }) }",
    "invalid spec: children: object length is not an integer" },
  { "{ children = setmetatable({}, { __len = function() return -1 end }) }",
    "invalid spec: children: not an array (its length is -1)" },
  { "{ children = setmetatable({}, { __len = function() return 3 end }) }",
    "invalid spec: children[1]: expected a table, got nil" },
  { "{ children = { { id = 'x', module = setmetatable({}, { __tostring = function() return 'stack' end }) } } }",
    "invalid spec: children[1].module: expected a string, got table" },
};

static const refusal child_refusals[] = {
  { "5", "invalid child spec: expected a table, got 5" },
  { "{}", "invalid child spec: module: expected a string, got nil" },
  { "{ module = 'nope' }", "invalid child spec: module: module 'nope' not found" },
  { "{ module = 'stack', restart = 'x' }", "invalid child spec: restart: unknown restart 'x'" },
  { "{ module = 'stack', id = true }", "invalid child spec: id: expected a string or an integer, got boolean" },
  { "{ module = 'stack', args = print }", "invalid child spec: args: cannot send a function (at args)" },
  { "{ type = 'supervisor' }", "invalid child spec: spec: expected a table, got nil" },
  { "{ type = 'supervisor', spec = { children = { { module = 'stack' } } } }",
    "invalid child spec: spec.children[1].id: expected a string or an integer, got nil" },
  { "{ type = 'supervisor', spec = { period = 0 } }", "invalid child spec: spec.period: expected a number > 0, got 0" },
};

static void check_refusals(const refusal *r, size_t n, int child) {
  fixture f;
  setup(&f);
  for (size_t i = 0; i < n; i++) {
    mb_buf b;
    char err[512];
    int rc = check_src(&f, r[i].src, child, &b, err, sizeof err);
    if (rc == 0) fprintf(stderr, "accepted: %s\n", r[i].src);
    CHECK(rc == -1);
    if (strcmp(err, r[i].err) != 0) fprintf(stderr, "%s\n", r[i].src);
    CHECK_EQ_STR(err, r[i].err);
    mb_buf_free(&b);
  }
  teardown(&f);
}

TEST(bad_specs_are_refused_with_exact_messages) {
  check_refusals(sup_refusals, sizeof sup_refusals / sizeof sup_refusals[0], 0);
}

TEST(bad_child_specs_are_refused_with_exact_messages) {
  check_refusals(child_refusals, sizeof child_refusals / sizeof child_refusals[0], 1);
}

/* A module that is found but does not compile: the compiler's message. */
TEST(a_module_that_does_not_compile_is_refused) {
  fixture f;
  setup(&f);
  mb_buf b;
  char err[512], want[256];
  CHECK(check_src(&f, "{ children = { { id = 1, module = 'broken' } } }", 0, &b, err, sizeof err) == -1);
  snprintf(want, sizeof want, "invalid spec: children[1].module: %s/broken.lua:", f.dir);
  if (strncmp(err, want, strlen(want)) != 0) fprintf(stderr, "%s\n", err);
  CHECK(strncmp(err, want, strlen(want)) == 0);
  CHECK(strstr(err, "expected") != NULL && strchr(err, '\n') == NULL);
  mb_buf_free(&b);
  teardown(&f);
}

/* The deepest nesting the normal form holds is checked and parses; one more
 * level is refused, and so is a spec that holds itself. */
TEST(nesting_is_bounded) {
  fixture f;
  setup(&f);
  lua_State *L = f.L;
  CHECK(luaL_dostring(L,
    "function nest(levels) local s = {} local top = s\n"
    "  for i = 1, levels do local t = {} s.children = { { id = i, type = 'supervisor', spec = t } } s = t end\n"
    "  return top end") == LUA_OK);
  char src[64];
  snprintf(src, sizeof src, "nest(%d)", MB_SUP_MAXNEST);
  mb_sup_spec *s = sup_of(&f, src);
  CHECK(s != NULL);
  int depth = 0;
  for (const mb_sup_spec *t = s; t->nchildren; t = t->children[0].spec) depth++;
  CHECK_EQ_INT(depth, MB_SUP_MAXNEST);
  mb_sup_spec_free(s);

  char err[1024], want[1024] = "invalid spec: ";
  mb_buf b;
  snprintf(src, sizeof src, "nest(%d)", MB_SUP_MAXNEST + 1);
  CHECK(check_src(&f, src, 0, &b, err, sizeof err) == -1);
  for (int i = 0; i <= MB_SUP_MAXNEST; i++) strcat(want, i ? ".children[1].spec" : "children[1].spec");
  strcat(want, ": nested too deeply");
  CHECK_EQ_STR(err, want);
  mb_buf_free(&b);

  CHECK(check_src(&f, "(function() local s = {} s.children = { { id = 1, type = 'supervisor', spec = s } } return s end)()",
                  0, &b, err, sizeof err) == -1);
  CHECK(strstr(err, ": nested too deeply") != NULL);
  mb_buf_free(&b);

  /* start_child's form: its spec is the first level */
  snprintf(src, sizeof src, "{ type = 'supervisor', spec = nest(%d) }", MB_SUP_MAXNEST - 1);
  mb_child_spec c;
  child_of(&f, src, &c);
  mb_child_spec_clear(&c);
  snprintf(src, sizeof src, "{ type = 'supervisor', spec = nest(%d) }", MB_SUP_MAXNEST);
  CHECK(check_src(&f, src, 1, &b, err, sizeof err) == -1);
  CHECK(strstr(err, ": nested too deeply") != NULL);
  mb_buf_free(&b);
  teardown(&f);
}

/* args over the node's message limit; a whole spec over the buffer's limit. */
TEST(sizes_are_bounded) {
  fixture f;
  setup_with(&f, 1000);
  mb_buf b;
  char err[512];
  CHECK(check_src(&f, "{ children = { { id = 1, module = 'stack', args = string.rep('x', 2000) } } }", 0, &b, err, sizeof err) == -1);
  CHECK_EQ_STR(err, "invalid spec: children[1].args: message too large");
  mb_buf_free(&b);
  CHECK(luaL_dostring(f.L, "return { name = string.rep('n', 300) }") == LUA_OK);
  CHECK(mb_buf_init(&b, MB_SIG_HDR, 100) == 0);
  CHECK(mb_l_sup_spec(f.L, f.n, -1, &b, err, sizeof err) == -1);
  CHECK_EQ_STR(err, "invalid spec: message too large");
  CHECK_EQ_INT(b.len, MB_SIG_HDR);
  mb_buf_free(&b);
  teardown(&f);
}

/* The normal form is appended after what the buffer holds; a refusal leaves that. */
TEST(appends_after_the_header_room) {
  fixture f;
  setup(&f);
  mb_buf b;
  char err[256];
  CHECK(mb_buf_init(&b, MB_SIG_HDR, 0) == 0);
  CHECK(luaL_dostring(f.L, "return { children = { { id = 1, module = 'stack' } } }, { strategy = 'no' }") == LUA_OK);
  CHECK(mb_l_sup_spec(f.L, f.n, 2, &b, err, sizeof err) == -1);
  CHECK_EQ_INT(b.len, MB_SIG_HDR);
  CHECK(mb_l_sup_spec(f.L, f.n, 1, &b, err, sizeof err) == 0);
  CHECK(b.len > MB_SIG_HDR);
  CHECK_EQ_INT(lua_gettop(f.L), 2);
  mb_sup_spec *s = mb_sup_spec_parse(b.data + MB_SIG_HDR, b.len - MB_SIG_HDR, err, sizeof err);
  CHECK(s != NULL && s->nchildren == 1);
  mb_sup_spec_free(s);
  mb_buf_free(&b);
  teardown(&f);
}

/* ---- memory: the one error that is raised ---- */

static int fail_allocs;   /* nonzero: every allocation that grows fails */

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) { free(ptr); return NULL; }
  if (fail_allocs && (!ptr || nsize > osize)) return NULL;
  return realloc(ptr, nsize);
}

static int l_check(lua_State *L) {
  fixture *f = lua_touserdata(L, 1);
  mb_buf *b = lua_touserdata(L, 2);
  char err[256];
  fail_allocs = 1;
  mb_l_sup_spec(L, f->n, 3, b, err, sizeof err);
  fail_allocs = 0;
  return 0;
}

TEST(memory_errors_are_raised) {
  fixture f;
  setup(&f);
  lua_close(f.L);
  f.L = lua_newstate(failing_alloc, NULL);
  CHECK(f.L != NULL);
  luaL_openlibs(f.L);
  mb_buf b;
  CHECK(mb_buf_init(&b, MB_SIG_HDR, 0) == 0);
  lua_pushcfunction(f.L, l_check);
  lua_pushlightuserdata(f.L, &f);
  lua_pushlightuserdata(f.L, &b);
  CHECK(luaL_dostring(f.L, "return { children = { { id = 1, module = 'stack' }, { id = 2, module = 'echo' } } }") == LUA_OK);
  int st = lua_pcall(f.L, 3, 0, 0);
  fail_allocs = 0;
  CHECK(st != LUA_OK);
  CHECK_EQ_STR(lua_tostring(f.L, -1), "not enough memory");
  CHECK_EQ_INT(b.len, MB_SIG_HDR);
  mb_buf_free(&b);
  teardown(&f);
}

TEST_MAIN(CHECK_CASE(an_empty_spec_gets_the_defaults), CHECK_CASE(children_get_the_defaults_for_their_type),
          CHECK_CASE(every_field_is_carried), CHECK_CASE(a_child_spec_may_leave_out_its_id),
          CHECK_CASE(fields_are_read_through_metamethods), CHECK_CASE(bad_specs_are_refused_with_exact_messages),
          CHECK_CASE(bad_child_specs_are_refused_with_exact_messages), CHECK_CASE(a_module_that_does_not_compile_is_refused),
          CHECK_CASE(nesting_is_bounded), CHECK_CASE(sizes_are_bounded), CHECK_CASE(appends_after_the_header_room),
          CHECK_CASE(memory_errors_are_raised))
