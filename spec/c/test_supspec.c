/* test_supspec: the parser of supervisor specs' normal form (core/supspec.c) —
 * normal forms written with the C term writer read back field by field, deep
 * copies and freeing (leak-checked under ASan), and malformed input of every
 * kind, down to truncated and mutated bytes, which must never crash. */
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "codec.h"
#include "cterm.h"
#include "supspec.h"

/* ---- writing normal forms with mb_tw ---- */

static void kv_int(mb_tw *w, const char *k, int64_t v) { mb_tw_string(w, k); mb_tw_int(w, v); }
static void kv_str(mb_tw *w, const char *k, const char *v, size_t len) { mb_tw_string(w, k); mb_tw_lstring(w, v, len); }

/* The encoding of {1, 2, x = "y"}, as args. */
static mb_buf args_encoding(void) {
  mb_buf a;
  mb_tw w;
  CHECK(mb_buf_init(&a, 0, 0) == 0);
  mb_tw_begin(&w, &a);
  mb_tw_table(&w, 2);
  mb_tw_int(&w, 1);
  mb_tw_int(&w, 2);
  kv_str(&w, "x", "y", 1);
  mb_tw_end(&w);
  CHECK(mb_tw_finish(&w) == 0);
  return a;
}

/* A spec with every field: three children, one a supervisor whose own spec has a
 * child; unknown fields and a non-string key on the way, to be skipped. */
static void write_full(mb_tw *w, const mb_buf *args) {
  mb_tw_table(w, 0);
  kv_int(w, "strategy", MB_SUP_REST_FOR_ONE);
  kv_int(w, "intensity", 3);
  mb_tw_string(w, "period");
  mb_tw_float(w, 2.5);
  kv_str(w, "name", "app\0sup", 7);
  mb_tw_string(w, "unknown");
  mb_tw_table(w, 1);
  mb_tw_string(w, "ignored");
  mb_tw_end(w);
  mb_tw_int(w, 42);        /* a non-string key */
  mb_tw_bool(w, 1);
  mb_tw_string(w, "children");
  mb_tw_table(w, 3);
  /* 1: every field */
  mb_tw_table(w, 0);
  kv_str(w, "id", "stack", 5);
  kv_str(w, "module", "stack", 5);
  kv_str(w, "args", args->data, args->len);
  kv_str(w, "name", "stack_srv", 9);
  kv_int(w, "kind", MB_CHILD_GEN_SERVER);
  kv_int(w, "restart", MB_RESTART_PERMANENT);
  kv_int(w, "shutdown", 5000);
  kv_int(w, "type", MB_TYPE_WORKER);
  mb_tw_end(w);
  /* 2: an integer id, no args, no name, fields in another order */
  mb_tw_table(w, 0);
  kv_int(w, "type", MB_TYPE_WORKER);
  kv_int(w, "shutdown", MB_SHUTDOWN_BRUTAL);
  kv_int(w, "id", -7);
  kv_int(w, "restart", MB_RESTART_TRANSIENT);
  kv_int(w, "kind", MB_CHILD_PROCESS);
  kv_str(w, "module", "echo", 4);
  kv_str(w, "extra", "x", 1);
  mb_tw_end(w);
  /* 3: a supervisor child with its spec (an integer period, no name) */
  mb_tw_table(w, 0);
  kv_str(w, "id", "sub", 3);
  kv_str(w, "module", "supervisor", 10);
  kv_int(w, "kind", MB_CHILD_GEN_SERVER);
  kv_int(w, "restart", MB_RESTART_TEMPORARY);
  kv_int(w, "shutdown", MB_SHUTDOWN_INFINITY);
  kv_int(w, "type", MB_TYPE_SUPERVISOR);
  mb_tw_string(w, "spec");
  mb_tw_table(w, 0);
  kv_int(w, "strategy", MB_SUP_ONE_FOR_ALL);
  kv_int(w, "intensity", 0);
  kv_int(w, "period", 1);
  mb_tw_string(w, "children");
  mb_tw_table(w, 1);
  mb_tw_table(w, 0);
  kv_int(w, "id", 0);
  kv_str(w, "module", "leaf", 4);
  kv_int(w, "kind", MB_CHILD_GEN_SERVER);
  kv_int(w, "restart", MB_RESTART_PERMANENT);
  kv_int(w, "shutdown", 0);
  kv_int(w, "type", MB_TYPE_WORKER);
  mb_tw_end(w);
  mb_tw_end(w);
  mb_tw_end(w);
  mb_tw_end(w);
  mb_tw_end(w);   /* children */
  mb_tw_end(w);   /* spec */
}

static mb_buf full_encoding(void) {
  mb_buf args = args_encoding(), b;
  mb_tw w;
  CHECK(mb_buf_init(&b, 0, 0) == 0);
  mb_tw_begin(&w, &b);
  write_full(&w, &args);
  CHECK(mb_tw_finish(&w) == 0);
  mb_buf_free(&args);
  return b;
}

static void check_full(const mb_sup_spec *s) {
  mb_buf args = args_encoding();
  CHECK(s != NULL);
  CHECK_EQ_INT(s->strategy, MB_SUP_REST_FOR_ONE);
  CHECK_EQ_INT(s->intensity, 3);
  CHECK(s->period == 2.5);
  CHECK_EQ_INT(s->name_len, 7);
  CHECK(memcmp(s->name, "app\0sup", 8) == 0);
  CHECK_EQ_INT(s->nchildren, 3);

  const mb_child_spec *c = &s->children[0];
  CHECK(!c->id_is_int);
  CHECK_EQ_INT(c->id_len, 5);
  CHECK_EQ_STR(c->id, "stack");
  CHECK_EQ_STR(c->module, "stack");
  CHECK_EQ_INT(c->args_len, args.len);
  CHECK(memcmp(c->args, args.data, args.len) == 0);
  CHECK_EQ_STR(c->name, "stack_srv");
  CHECK_EQ_INT(c->name_len, 9);
  CHECK_EQ_INT(c->kind, MB_CHILD_GEN_SERVER);
  CHECK_EQ_INT(c->restart, MB_RESTART_PERMANENT);
  CHECK_EQ_INT(c->shutdown, 5000);
  CHECK_EQ_INT(c->type, MB_TYPE_WORKER);
  CHECK(c->spec == NULL);

  c = &s->children[1];
  CHECK(c->id_is_int);
  CHECK_EQ_INT(c->id_int, -7);
  CHECK(c->id == NULL);
  CHECK_EQ_STR(c->module, "echo");
  CHECK(c->args == NULL && c->args_len == 0);
  CHECK(c->name == NULL && c->name_len == 0);
  CHECK_EQ_INT(c->kind, MB_CHILD_PROCESS);
  CHECK_EQ_INT(c->restart, MB_RESTART_TRANSIENT);
  CHECK_EQ_INT(c->shutdown, MB_SHUTDOWN_BRUTAL);
  CHECK(c->spec == NULL);

  c = &s->children[2];
  CHECK_EQ_STR(c->id, "sub");
  CHECK_EQ_STR(c->module, "supervisor");
  CHECK_EQ_INT(c->restart, MB_RESTART_TEMPORARY);
  CHECK_EQ_INT(c->shutdown, MB_SHUTDOWN_INFINITY);
  CHECK_EQ_INT(c->type, MB_TYPE_SUPERVISOR);
  const mb_sup_spec *sub = c->spec;
  CHECK(sub != NULL);
  CHECK_EQ_INT(sub->strategy, MB_SUP_ONE_FOR_ALL);
  CHECK_EQ_INT(sub->intensity, 0);
  CHECK(sub->period == 1.0);
  CHECK(sub->name == NULL);
  CHECK_EQ_INT(sub->nchildren, 1);
  CHECK(sub->children[0].id_is_int && sub->children[0].id_int == 0);
  CHECK_EQ_STR(sub->children[0].module, "leaf");
  CHECK_EQ_INT(sub->children[0].shutdown, 0);
  mb_buf_free(&args);
}

TEST(parses_every_field_of_a_nested_spec) {
  mb_buf b = full_encoding();
  char err[128] = "";
  mb_sup_spec *s = mb_sup_spec_parse(b.data, b.len, err, sizeof err);
  if (!s) fprintf(stderr, "%s\n", err);
  check_full(s);
  mb_sup_spec_free(s);
  mb_buf_free(&b);
  check_no_leaks();
}

/* {children = {}, period = 5.0, intensity = 1, strategy = one_for_one} */
static mb_buf empty_encoding(void) {
  mb_buf b;
  mb_tw w;
  CHECK(mb_buf_init(&b, 0, 0) == 0);
  mb_tw_begin(&w, &b);
  mb_tw_table(&w, 0);
  mb_tw_string(&w, "children");
  mb_tw_table(&w, 0);
  mb_tw_end(&w);
  mb_tw_string(&w, "period");
  mb_tw_float(&w, 5);
  kv_int(&w, "intensity", 1);
  kv_int(&w, "strategy", MB_SUP_ONE_FOR_ONE);
  mb_tw_end(&w);
  CHECK(mb_tw_finish(&w) == 0);
  return b;
}

TEST(parses_a_spec_with_no_children_and_no_name) {
  mb_buf b = empty_encoding();
  char err[128];
  mb_sup_spec *s = mb_sup_spec_parse(b.data, b.len, err, sizeof err);
  CHECK(s != NULL);
  CHECK_EQ_INT(s->strategy, MB_SUP_ONE_FOR_ONE);
  CHECK_EQ_INT(s->intensity, 1);
  CHECK(s->period == 5.0);
  CHECK(s->name == NULL && s->name_len == 0);
  CHECK_EQ_INT(s->nchildren, 0);
  CHECK(s->children == NULL);
  mb_sup_spec *d = mb_sup_spec_copy(s);
  CHECK(d != NULL && d->nchildren == 0 && d->children == NULL && d->name == NULL);
  mb_sup_spec_free(d);
  mb_sup_spec_free(s);
  mb_buf_free(&b);
  check_no_leaks();
}

/* A worker's child spec without an id (start_child's form). */
static mb_buf child_encoding(void) {
  mb_buf b;
  mb_tw w;
  CHECK(mb_buf_init(&b, 0, 0) == 0);
  mb_tw_begin(&w, &b);
  mb_tw_table(&w, 0);
  kv_str(&w, "module", "stack", 5);
  kv_int(&w, "kind", MB_CHILD_GEN_SERVER);
  kv_int(&w, "restart", MB_RESTART_PERMANENT);
  kv_int(&w, "shutdown", 5000);
  kv_int(&w, "type", MB_TYPE_WORKER);
  mb_tw_end(&w);
  CHECK(mb_tw_finish(&w) == 0);
  return b;
}

TEST(parses_a_child_spec_without_an_id) {
  mb_buf b = child_encoding();
  mb_child_spec c;
  char err[128];
  CHECK(mb_child_spec_parse(b.data, b.len, &c, err, sizeof err) == 0);
  CHECK(!c.id_is_int && c.id == NULL && c.id_len == 0);
  CHECK_EQ_STR(c.module, "stack");
  CHECK(c.args == NULL && c.name == NULL && c.spec == NULL);
  CHECK_EQ_INT(c.shutdown, 5000);
  mb_child_spec d;
  CHECK(mb_child_spec_copy(&c, &d) == 0);
  CHECK(d.module != c.module);
  CHECK_EQ_STR(d.module, "stack");
  mb_child_spec_clear(&c);
  CHECK(c.module == NULL);
  mb_child_spec_clear(&d);
  mb_child_spec_clear(&d);   /* cleared twice: a no-op */
  mb_buf_free(&b);
  check_no_leaks();
}

/* A copy owns everything it points to: it outlives its source, shares nothing. */
TEST(a_deep_copy_is_equal_and_independent) {
  mb_buf b = full_encoding();
  char err[128];
  mb_sup_spec *s = mb_sup_spec_parse(b.data, b.len, err, sizeof err);
  CHECK(s != NULL);
  mb_sup_spec *d = mb_sup_spec_copy(s);
  CHECK(d != NULL && d != s);
  CHECK(d->name != s->name && d->children != s->children);
  CHECK(d->children[0].args != s->children[0].args);
  CHECK(d->children[2].spec != s->children[2].spec);
  mb_buf_free(&b);   /* nothing points into the encoding either */
  mb_sup_spec_free(s);
  check_full(d);

  mb_child_spec c;
  CHECK(mb_child_spec_copy(&d->children[2], &c) == 0);
  mb_sup_spec_free(d);
  CHECK_EQ_STR(c.id, "sub");
  CHECK(c.spec != NULL && c.spec->nchildren == 1);
  CHECK_EQ_STR(c.spec->children[0].module, "leaf");
  mb_child_spec_clear(&c);
  mb_sup_spec_free(NULL);
  CHECK(mb_sup_spec_copy(NULL) == NULL);
  check_no_leaks();
}

/* ---- malformed normal forms, written as Lua tables and encoded ---- */

static lua_State *lstate(void) {
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  luaL_openlibs(L);
  return L;
}

/* Encode the value of the Lua expression src; `enc(v)` there is v's encoding. */
static int l_enc(lua_State *L) {
  mb_buf b;
  char err[128];
  CHECK(mb_buf_init(&b, 0, 0) == 0);
  CHECK(mb_encode(L, 1, &b, "v", err, sizeof err) == MB_ENC_OK);
  lua_pushlstring(L, b.data, b.len);
  mb_buf_free(&b);
  return 1;
}

static mb_buf encode_lua(lua_State *L, const char *src) {
  char chunk[8192];
  lua_register(L, "enc", l_enc);
  CHECK(luaL_dostring(L,
    "W = function(t) local c = { module = 'm', kind = 0, restart = 0, shutdown = 5000, type = 0 }\n"
    "  for k, v in pairs(t) do c[k] = v end\n"
    "  for k, v in pairs(t) do if v == 'nil' then c[k] = nil end end\n"
    "  return c end\n"
    "S = function(t) local s = { strategy = 0, intensity = 1, period = 5.0, children = {} }\n"
    "  for k, v in pairs(t) do s[k] = v end\n"
    "  for k, v in pairs(t) do if v == 'nil' then s[k] = nil end end\n"
    "  return s end\n") == LUA_OK);
  snprintf(chunk, sizeof chunk, "return %s", src);
  if (luaL_dostring(L, chunk) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", src, lua_tostring(L, -1));
    CHECK(0);
  }
  mb_buf b;
  char err[128];
  CHECK(mb_buf_init(&b, 0, 0) == 0);
  CHECK(mb_encode(L, -1, &b, "v", err, sizeof err) == MB_ENC_OK);
  lua_pop(L, 1);
  return b;
}

/* S{...} is a good spec with fields replaced ('nil' removes one), W{...} a good
 * child spec the same way. */
static const char *const good_specs[] = {
  "S{}", "S{children = {W{id = 1}, W{id = 'x', name = 'n', args = enc({1, 2})}}}",
  "S{name = 'sup', period = 1}",
  "S{children = {W{id = 's', type = 1, spec = S{children = {W{}}}}}}",
};

static const char *const bad_specs[] = {
  "42", "'spec'", "{}", "S{strategy = 3}", "S{strategy = -1}", "S{strategy = 'one_for_one'}",
  "S{strategy = 1.0}", "S{intensity = -1}", "S{intensity = 1.5}", "S{intensity = '1'}",
  "S{period = 0}", "S{period = -1.0}", "S{period = 0/0}", "S{period = '5'}", "S{name = 5}",
  "S{name = {}}", "S{strategy = 'nil'}", "S{intensity = 'nil'}", "S{period = 'nil'}",
  "S{children = 'nil'}", "S{children = 5}", "S{children = {a = W{}}}", "S{children = {5}}",
  "S{children = {{}}}", "S{children = {{W{}}}}", "S{[1] = 2}",
  "S{children = {W{module = 'nil'}}}", "S{children = {W{module = 5}}}",
  "S{children = {W{module = 'a\\0b'}}}", "S{children = {W{kind = 'nil'}}}",
  "S{children = {W{kind = 2}}}", "S{children = {W{restart = 3}}}",
  "S{children = {W{restart = 'nil'}}}", "S{children = {W{type = 2}}}",
  "S{children = {W{type = 'nil'}}}", "S{children = {W{shutdown = 'nil'}}}",
  "S{children = {W{shutdown = -3}}}", "S{children = {W{shutdown = 1.5}}}",
  "S{children = {W{shutdown = 'infinity'}}}", "S{children = {W{id = 1.5}}}",
  "S{children = {W{id = {}}}}", "S{children = {W{id = true}}}",
  "S{children = {W{name = 1}}}", "S{children = {W{args = 5}}}", "S{children = {W{args = 'xx'}}}",
  "S{children = {W{args = ''}}}", "S{children = {W{type = 1}}}",
  "S{children = {W{spec = S{}}}}", "S{children = {W{type = 1, spec = 5}}}",
  "S{children = {W{type = 1, spec = S{strategy = 9}}}}",
  "S{children = {W{id = 1}, {1, module = 'm', kind = 0, restart = 0, shutdown = 0, type = 0}}}",
};

TEST(malformed_specs_are_refused_with_a_reason) {
  lua_State *L = lstate();
  char err[128];
  for (size_t i = 0; i < sizeof good_specs / sizeof good_specs[0]; i++) {
    mb_buf b = encode_lua(L, good_specs[i]);
    mb_sup_spec *s = mb_sup_spec_parse(b.data, b.len, err, sizeof err);
    if (!s) fprintf(stderr, "%s: %s\n", good_specs[i], err);
    CHECK(s != NULL);
    mb_sup_spec_free(s);
    mb_buf_free(&b);
  }
  for (size_t i = 0; i < sizeof bad_specs / sizeof bad_specs[0]; i++) {
    mb_buf b = encode_lua(L, bad_specs[i]);
    err[0] = '\0';
    mb_sup_spec *s = mb_sup_spec_parse(b.data, b.len, err, sizeof err);
    if (s) fprintf(stderr, "accepted: %s\n", bad_specs[i]);
    CHECK(s == NULL);
    CHECK(strncmp(err, "malformed spec: ", 16) == 0);
    mb_buf_free(&b);
  }
  lua_close(L);
  check_no_leaks();
}

TEST(malformed_child_specs_are_refused) {
  lua_State *L = lstate();
  static const char *const bad[] = {
    "5", "S{}", "W{module = 'nil'}", "W{type = 1}", "W{type = 1, spec = S{children = {W{kind = 5}}}}",
    "W{id = 0.5}", "W{restart = -1}", "W{args = enc(1)..'x'}", "W{module = 'a\\0'}",
  };
  char err[128];
  mb_child_spec c;
  mb_buf b = encode_lua(L, "W{type = 1, spec = S{}, id = 'x'}");
  CHECK(mb_child_spec_parse(b.data, b.len, &c, err, sizeof err) == 0);
  CHECK(c.spec != NULL && c.spec->nchildren == 0);
  mb_child_spec_clear(&c);
  mb_buf_free(&b);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    b = encode_lua(L, bad[i]);
    memset(&c, 0xff, sizeof c);
    int rc = mb_child_spec_parse(b.data, b.len, &c, err, sizeof err);
    if (rc == 0) fprintf(stderr, "accepted: %s\n", bad[i]);
    CHECK(rc == -1);
    CHECK(strncmp(err, "malformed spec: ", 16) == 0);
    CHECK(c.module == NULL && c.spec == NULL && c.id == NULL && c.args == NULL);   /* left cleared */
    mb_child_spec_clear(&c);
    mb_buf_free(&b);
  }
  lua_close(L);
  check_no_leaks();
}

/* A spec inside a spec inside ...: specs down to level MB_SUP_MAXNEST parse, one
 * deeper does not (only start_child's form, a child at the top, can hold one:
 * the reader's own bound stops a spec's form first). */
static void w_child_open(mb_tw *w, int id) {
  mb_tw_table(w, 0);
  kv_int(w, "id", id);
  kv_str(w, "module", "supervisor", 10);
  kv_int(w, "kind", 0);
  kv_int(w, "restart", 0);
  kv_int(w, "shutdown", MB_SHUTDOWN_INFINITY);
  kv_int(w, "type", MB_TYPE_SUPERVISOR);
  mb_tw_string(w, "spec");
}

static void w_sup_open(mb_tw *w, int nchildren) {
  mb_tw_table(w, 0);
  kv_int(w, "strategy", 0);
  kv_int(w, "intensity", 1);
  kv_int(w, "period", 5);
  mb_tw_string(w, "children");
  mb_tw_table(w, (uint64_t)nchildren);
}

/* Specs at levels 0..levels (top_child: a child at the top, specs at 1..levels). */
static mb_buf nested(int levels, int top_child) {
  mb_buf b;
  mb_tw w;
  int first = top_child ? 1 : 0;
  CHECK(mb_buf_init(&b, 0, 0) == 0);
  mb_tw_begin(&w, &b);
  if (top_child) w_child_open(&w, 0);
  for (int i = first; i <= levels; i++) {
    w_sup_open(&w, i < levels);
    if (i < levels) w_child_open(&w, i + 1);
  }
  for (int i = levels; i >= first; i--) {
    mb_tw_end(&w);   /* children */
    mb_tw_end(&w);   /* spec */
    if (i > first || top_child) mb_tw_end(&w);   /* the child holding it */
  }
  int rc = mb_tw_finish(&w);
  if (rc) fprintf(stderr, "levels %d: rc %d\n", levels, rc);
  CHECK(rc == 0);
  return b;
}

static int depth_of(const mb_sup_spec *s) {
  int d = 0;
  for (; s->nchildren; s = s->children[0].spec) d++;
  return d;
}

TEST(nesting_is_bounded) {
  char err[128];
  mb_buf b = nested(MB_SUP_MAXNEST, 0);
  mb_sup_spec *s = mb_sup_spec_parse(b.data, b.len, err, sizeof err);
  CHECK(s != NULL);
  CHECK_EQ_INT(depth_of(s), MB_SUP_MAXNEST);
  mb_sup_spec *d = mb_sup_spec_copy(s);
  CHECK(d != NULL);
  CHECK_EQ_INT(depth_of(d), MB_SUP_MAXNEST);
  mb_sup_spec_free(d);
  mb_sup_spec_free(s);
  mb_buf_free(&b);

  mb_child_spec c;
  b = nested(MB_SUP_MAXNEST, 1);
  CHECK(mb_child_spec_parse(b.data, b.len, &c, err, sizeof err) == 0);
  CHECK_EQ_INT(1 + depth_of(c.spec), MB_SUP_MAXNEST);
  mb_child_spec_clear(&c);
  mb_buf_free(&b);
  b = nested(MB_SUP_MAXNEST + 1, 1);
  CHECK(mb_child_spec_parse(b.data, b.len, &c, err, sizeof err) == -1);
  CHECK_EQ_STR(err, "malformed spec: nested too deeply");
  CHECK(c.spec == NULL);
  mb_buf_free(&b);
  check_no_leaks();
}

/* Encodings with back-references are no normal form (the writer never shares a
 * table): refused before they could make the parser expand a shared table again
 * and again. */
TEST(shared_tables_are_refused) {
  lua_State *L = lstate();
  mb_buf b = encode_lua(L, "(function() local w = W{} w.id = 1 local c = {w} "
                           "return S{children = c, unknown = c} end)()");
  CHECK(((unsigned char)b.data[0] & 0x80) != 0);
  char err[128];
  CHECK(mb_sup_spec_parse(b.data, b.len, err, sizeof err) == NULL);
  CHECK_EQ_STR(err, "malformed spec: not a normal form");
  mb_child_spec c;
  CHECK(mb_child_spec_parse(b.data, b.len, &c, err, sizeof err) == -1);
  CHECK(mb_sup_spec_parse(NULL, 0, err, sizeof err) == NULL);
  CHECK(mb_sup_spec_parse("", 0, err, sizeof err) == NULL);
  CHECK(mb_sup_spec_parse("\x02\x00", 2, NULL, 0) == NULL);   /* no room for err: fine */
  mb_buf_free(&b);
  lua_close(L);
  check_no_leaks();
}

TEST(every_truncation_is_refused) {
  mb_buf b = full_encoding();
  char err[128];
  for (size_t n = 0; n < b.len; n++) {
    char *p = malloc(n ? n : 1);   /* exactly n bytes: ASan sees a read past them */
    CHECK(p != NULL);
    memcpy(p, b.data, n);
    CHECK(mb_sup_spec_parse(p, n, err, sizeof err) == NULL);
    free(p);
  }
  mb_buf_free(&b);
  check_no_leaks();
}

/* A parsed spec holds only values the supervisor can run on. */
static void check_sane(const mb_sup_spec *s, int depth);

static void check_child_sane(const mb_child_spec *c, int depth) {
  CHECK(c->module != NULL);
  CHECK(!c->id || (!c->id_is_int && c->id[c->id_len] == '\0'));
  CHECK(!c->name || c->name[c->name_len] == '\0');
  CHECK(c->kind >= 0 && c->kind <= MB_CHILD_PROCESS);
  CHECK(c->restart >= 0 && c->restart <= MB_RESTART_TEMPORARY);
  CHECK(c->shutdown >= MB_SHUTDOWN_INFINITY);
  CHECK((c->type == MB_TYPE_SUPERVISOR) == (c->spec != NULL));
  if (c->args) {
    mb_tr r;
    CHECK(mb_tr_open(&r, c->args, c->args_len) == 0);
    mb_tr_close(&r);
  }
  if (c->spec) check_sane(c->spec, depth + 1);
}

static void check_sane(const mb_sup_spec *s, int depth) {
  CHECK(depth <= MB_SUP_MAXNEST);
  CHECK(s->strategy >= MB_SUP_ONE_FOR_ONE && s->strategy <= MB_SUP_REST_FOR_ONE);
  CHECK(s->intensity >= 0 && s->period > 0);
  CHECK(!s->name || s->name[s->name_len] == '\0');
  CHECK(s->nchildren >= 0 && (s->nchildren == 0 || s->children));
  for (int i = 0; i < s->nchildren; i++) check_child_sane(&s->children[i], depth);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint32_t rnd(void) {   /* xorshift64*: the same run every time */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 0x2545f4914f6cdd1du) >> 32);
}

/* Valid encodings, mutated: a few bytes changed, a run cut out or repeated. Every result parses to NULL or to a sane spec, and copies and frees. */
TEST(mutated_encodings_never_crash) {
  mb_buf seeds[6] = { full_encoding(), empty_encoding(), child_encoding(), nested(4, 0), nested(3, 1),
                      args_encoding() };   /* written in C: the same bytes, the same run, every time */
  static const unsigned char interesting[] = { 0, 1, 2, 3, 4, 5, 8, 9, 10, 0x7f, 0x80, 0xff };
  int parsed = 0, refused = 0;
  char err[128];
  for (int iter = 0; iter < 60000; iter++) {
    const mb_buf *seed = &seeds[rnd() % 6];
    size_t cap = seed->len * 2 + 16, n = seed->len;
    unsigned char *p = malloc(cap);
    CHECK(p != NULL);
    memcpy(p, seed->data, n);
    int edits = 1 + (int)(rnd() % 4);
    for (int e = 0; e < edits && n > 1; e++) {
      size_t at = 1 + rnd() % (n - 1), len = 1 + rnd() % 8;
      switch (rnd() % 5) {
      case 0: p[at] = (unsigned char)rnd(); break;
      case 1: p[at] = interesting[rnd() % sizeof interesting]; break;
      case 2:   /* cut a run out */
        if (len > n - at) len = n - at;
        memmove(p + at, p + at + len, n - at - len);
        n -= len;
        break;
      case 3:   /* repeat a run */
        if (len > n - at) len = n - at;
        if (n + len > cap) break;
        memmove(p + at + len, p + at, n - at);
        n += len;
        break;
      default: p[at] ^= (unsigned char)(1u << (rnd() % 8)); break;
      }
    }
    char *exact = malloc(n ? n : 1);   /* exactly n bytes, for ASan */
    CHECK(exact != NULL);
    memcpy(exact, p, n);
    free(p);
    mb_sup_spec *s = mb_sup_spec_parse(exact, n, err, sizeof err);
    if (s) {
      parsed++;
      check_sane(s, 0);
      mb_sup_spec *d = mb_sup_spec_copy(s);
      CHECK(d != NULL);
      mb_sup_spec_free(s);
      check_sane(d, 0);
      mb_sup_spec_free(d);
    } else {
      refused++;
      CHECK(err[0] != '\0');
    }
    mb_child_spec c;
    if (mb_child_spec_parse(exact, n, &c, err, sizeof err) == 0) {
      check_child_sane(&c, 0);
      mb_child_spec_clear(&c);
    }
    free(exact);
  }
  printf("  %d mutants parsed, %d refused\n", parsed, refused);
  CHECK(parsed > 0 && refused > 0);   /* the mutations reach both sides */
  for (int i = 0; i < 6; i++) mb_buf_free(&seeds[i]);
  check_no_leaks();
}

TEST_MAIN(CHECK_CASE(parses_every_field_of_a_nested_spec), CHECK_CASE(parses_a_spec_with_no_children_and_no_name),
          CHECK_CASE(parses_a_child_spec_without_an_id), CHECK_CASE(a_deep_copy_is_equal_and_independent),
          CHECK_CASE(malformed_specs_are_refused_with_a_reason), CHECK_CASE(malformed_child_specs_are_refused),
          CHECK_CASE(nesting_is_bounded), CHECK_CASE(shared_tables_are_refused),
          CHECK_CASE(every_truncation_is_refused), CHECK_CASE(mutated_encodings_never_crash))
