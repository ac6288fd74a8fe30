/* test_cterm: the C writer, reader and renderer of encoded terms (core/cterm.c)
 * against the Lua codec — values encoded by mb_encode read in C, values written in
 * C decoded by mb_decode — and corrupt input that must never crash (run under ASan). */
#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "codec.h"
#include "cterm.h"
#include "term.h"

static lua_State *state(void) {
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  luaL_openlibs(L);
  mb_light_prepare(L);   /* a host state that renders pids (term.h) */
  mb_push_pid(L, 77);
  lua_setglobal(L, "P");
  mb_push_ref(L, 9);
  lua_setglobal(L, "R");
  return L;
}

/* Encode the value of the Lua expression src. */
static mb_buf encode_lua(lua_State *L, const char *src) {
  char chunk[4096];
  snprintf(chunk, sizeof chunk, "return %s", src);
  CHECK(luaL_dostring(L, chunk) == LUA_OK);
  mb_buf b;
  CHECK(mb_buf_init(&b, 0, 0) == 0);
  char err[128];
  CHECK(mb_encode(L, -1, &b, "msg", err, sizeof err) == MB_ENC_OK);
  lua_pop(L, 1);
  return b;
}

/* The renderer the core used to run in a Lua state of its own (spawn.c before
 * cterm.c), kept here as the reference for the shapes of the C one. */
static const char lua_render[] =
  "local function render(v, depth)\n"
  "  if type(v) == 'string' and depth > 0 then return string.format('%q', v) end\n"
  "  if type(v) ~= 'table' then return tostring(v) end\n"
  "  if depth > 4 then return '{...}' end\n"
  "  local n, parts = rawlen(v), {}\n"
  "  for i = 1, n do parts[#parts + 1] = render(rawget(v, i), depth + 1) end\n"
  "  for k, x in next, v do\n"
  "    if not (math.type(k) == 'integer' and k >= 1 and k <= n) then\n"
  "      parts[#parts + 1] = '[' .. render(k, depth + 1) .. '] = ' .. render(x, depth + 1)\n"
  "    end\n"
  "  end\n"
  "  return '{' .. table.concat(parts, ', ') .. '}'\n"
  "end\n"
  "return render(..., 0)\n";

static const char *const samples[] = {
  "'normal'", "'a \"quoted\"\\n line\\\\ \\0 \\1x \\0019 \\127 \\200 end'", "42", "-7", "0",
  "math.mininteger", "math.maxinteger", "1.5", "-0.0", "1e300", "2^63", "1/0", "-1/0", "3.0",
  "true", "false", "nil", "P", "R", "{}", "{1, 2, 3}", "{'shutdown', 'x'}",
  "{'bad', 1, {why = 'x'}}", "{{{{{{{1}}}}}}}", "{ [1.5] = 'f' }", "{ x = { y = { 'z' } } }",
  "{ P, R, true, false, 0.25 }", "{ ['key with \"q\"'] = '\\n' }", "{ [true] = 1 }",
  "(function() local t = {1} return {t, t, {t}} end)()",
  "{ string.rep('x', 300), { 7, deep = string.rep('z', 100) } }",
};

TEST(lua_encoded_values_render_as_the_lua_renderer_did) {
  lua_State *L = state();
  for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
    mb_buf b = encode_lua(L, samples[i]);
    char *c = mb_reason_render(b.data, b.len, 1 << 16);
    CHECK(c != NULL);
    CHECK(luaL_loadstring(L, lua_render) == LUA_OK);
    CHECK(mb_decode(L, b.data, b.len) == 0);
    CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK);
    if (strcmp(c, lua_tostring(L, -1)) != 0) {
      fprintf(stderr, "sample %s:\n  C:   %s\n  Lua: %s\n", samples[i], c, lua_tostring(L, -1));
      CHECK(0);
    }
    lua_pop(L, 1);
    free(c);
    mb_buf_free(&b);
  }
  lua_close(L);
}

TEST(the_reader_walks_lua_encoded_values) {
  lua_State *L = state();
  mb_buf b = encode_lua(L, "{ 'call', P, { 1, 2.5 }, R, n = 3 }");
  mb_tr r;
  uint64_t narr, narr2;
  uint32_t nh, nh2;
  const char *s;
  size_t len;
  mb_pid pid;
  uint64_t ref;
  int64_t i;
  double d;
  CHECK(mb_tr_open(&r, b.data, b.len) == 0);
  CHECK_EQ_INT(mb_tr_type(&r), MB_TT_TABLE);
  CHECK(mb_tr_int(&r, &i) == -1);   /* wrong type: nothing moves */
  CHECK(mb_tr_enter(&r, &narr, &nh) == 0);
  CHECK_EQ_INT(narr, 4);
  CHECK_EQ_INT(nh, 1);
  CHECK_EQ_INT(mb_tr_left(&r), 6);
  CHECK(mb_tr_is_string(&r, "cast") == 0);
  CHECK(mb_tr_is_string(&r, "call") == 1);
  CHECK(mb_tr_pid(&r, &pid) == 0 && pid == 77);
  CHECK(mb_tr_enter(&r, &narr2, &nh2) == 0 && narr2 == 2 && nh2 == 0);
  CHECK(mb_tr_int(&r, &i) == 0 && i == 1);
  CHECK(mb_tr_number(&r, &d) == 0 && d == 2.5);
  CHECK_EQ_INT(mb_tr_type(&r), MB_TT_NONE);
  CHECK(mb_tr_skip(&r) == -1);
  CHECK(mb_tr_leave(&r) == 0);
  CHECK(mb_tr_ref(&r, &ref) == 0 && ref == 9);
  CHECK(mb_tr_string(&r, &s, &len) == 0 && len == 1 && s[0] == 'n');
  CHECK(mb_tr_int(&r, &i) == 0 && i == 3);
  CHECK(mb_tr_leave(&r) == 0);
  CHECK(mb_tr_leave(&r) == -1);
  CHECK_EQ_INT(mb_tr_type(&r), MB_TT_NONE);
  mb_tr_close(&r);
  mb_buf_free(&b);

  /* back-references read as their tables; leaving one returns after it */
  b = encode_lua(L, "(function() local t = { 5, 'x' } return { t, { t }, t, 9 } end)()");
  CHECK((unsigned char)b.data[0] & 0x80);
  CHECK(mb_tr_open(&r, b.data, b.len) == 0);
  CHECK(mb_tr_enter(&r, &narr, &nh) == 0 && narr == 4);
  for (int k = 0; k < 3; k++) {
    CHECK(mb_tr_enter(&r, &narr2, &nh2) == 0);
    if (k == 1) CHECK(mb_tr_enter(&r, &narr2, &nh2) == 0);
    CHECK(mb_tr_int(&r, &i) == 0 && i == 5);
    if (k == 2) CHECK(mb_tr_is_string(&r, "x"));
    CHECK(mb_tr_leave(&r) == 0);
    if (k == 1) CHECK(mb_tr_leave(&r) == 0);
  }
  CHECK(mb_tr_int(&r, &i) == 0 && i == 9);
  CHECK(mb_tr_leave(&r) == 0);
  mb_tr_close(&r);
  mb_buf_free(&b);
  lua_close(L);
}

/* A value written in C, decoded in Lua, is what the Lua expression expect builds. */
static void check_written(lua_State *L, mb_buf *b, const char *expect) {
  char chunk[2048];
  snprintf(chunk, sizeof chunk,
    "local got = ...\n"
    "local function same(a, b)\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then return a == b or (a ~= a and b ~= b) end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "return same(got, %s)", expect);
  CHECK(luaL_loadstring(L, chunk) == LUA_OK);
  CHECK(mb_decode(L, b->data, b->len) == 0);
  CHECK(lua_pcall(L, 1, 1, 0) == LUA_OK);
  if (!lua_toboolean(L, -1)) { fprintf(stderr, "not %s\n", expect); CHECK(0); }
  lua_pop(L, 1);
}

TEST(written_values_decode_in_lua) {
  lua_State *L = state();
  mb_buf b;
  mb_tw w;
  CHECK(mb_buf_init(&b, 0, 0) == 0);
  mb_tw_begin(&w, &b);
  mb_tw_table(&w, 5);
  mb_tw_string(&w, "reply");
  mb_tw_pid(&w, 77);
  mb_tw_ref(&w, 9);
  mb_tw_int(&w, INT64_MIN);
  mb_tw_table(&w, 0);
  mb_tw_end(&w);
  mb_tw_string(&w, "ok");
  mb_tw_bool(&w, 1);
  mb_tw_float(&w, 2.5);
  mb_tw_lstring(&w, "a\0b", 3);
  mb_tw_int(&w, 6);
  mb_tw_table(&w, 2);
  mb_tw_nil(&w);
  mb_tw_bool(&w, 0);
  mb_tw_end(&w);
  mb_tw_end(&w);
  CHECK_EQ_INT(mb_tw_finish(&w), 0);
  check_written(L, &b, "{ 'reply', P, R, math.mininteger, {}, ok = true, [2.5] = 'a\\0b', [6] = { nil, false } }");
  mb_buf_free(&b);

  CHECK(mb_buf_init(&b, 0, 0) == 0);
  mb_tw_begin(&w, &b);
  mb_tw_string(&w, "normal");
  CHECK_EQ_INT(mb_tw_finish(&w), 0);
  CHECK(mb_encoded_is_string(b.data, b.len, "normal"));
  CHECK(mb_reason_is_normal(b.data, b.len));
  mb_buf_free(&b);
  lua_close(L);
}

TEST(writer_errors_leave_the_buffer_as_it_was) {
  mb_buf b;
  mb_tw w;
  CHECK(mb_buf_init(&b, 8, 0) == 0);
  /* a nil key, a half pair, a short array, two values, an unclosed table, too deep */
  for (int k = 0; k < 6; k++) {
    mb_tw_begin(&w, &b);
    switch (k) {
    case 0: mb_tw_table(&w, 0); mb_tw_nil(&w); mb_tw_int(&w, 1); mb_tw_end(&w); break;
    case 1: mb_tw_table(&w, 0); mb_tw_string(&w, "k"); mb_tw_end(&w); break;
    case 2: mb_tw_table(&w, 2); mb_tw_int(&w, 1); mb_tw_end(&w); break;
    case 3: mb_tw_int(&w, 1); mb_tw_int(&w, 2); break;
    case 4: mb_tw_table(&w, 0); break;
    case 5:
      for (int i = 0; i < 101; i++) mb_tw_table(&w, 1);
      for (int i = 0; i < 101; i++) mb_tw_end(&w);
      break;
    }
    CHECK_EQ_INT(mb_tw_finish(&w), k == 5 ? MB_ENC_DEEP : MB_ENC_BADVALUE);
    CHECK_EQ_INT(b.len, 8);
  }
  /* a NaN key */
  mb_tw_begin(&w, &b);
  mb_tw_table(&w, 0);
  mb_tw_float(&w, NAN);
  mb_tw_int(&w, 1);
  mb_tw_end(&w);
  CHECK_EQ_INT(mb_tw_finish(&w), MB_ENC_BADVALUE);
  mb_buf_free(&b);
  /* the limit */
  CHECK(mb_buf_init(&b, 8, 100) == 0);
  mb_tw_begin(&w, &b);
  char big[200];
  memset(big, 'x', sizeof big);
  mb_tw_lstring(&w, big, sizeof big);
  CHECK_EQ_INT(mb_tw_finish(&w), MB_ENC_TOOBIG);
  CHECK_EQ_INT(b.len, 8);
  mb_buf_free(&b);
}

TEST(render_is_bounded_and_depth_limited) {
  lua_State *L = state();
  mb_buf b = encode_lua(L, "{ string.rep('x', 5000) }");
  char *t = mb_reason_render(b.data, b.len, 100);
  CHECK(t != NULL);
  CHECK_EQ_INT(strlen(t), 100);
  CHECK(strncmp(t, "{\"xxx", 5) == 0);
  CHECK(strcmp(t + 97, "...") == 0);
  free(t);
  mb_buf_free(&b);
  /* a wide tree of back-references renders fast and bounded */
  b = encode_lua(L, "(function() local t = {} for i = 1, 3000 do t[i] = i end "
                    "local u = {} for i = 1, 200 do u[i] = {{{{{t}}}}} end "
                    "local v = {} for i = 1, 200 do v[i] = u end return v end)()");
  t = mb_reason_render(b.data, b.len, 4096);
  CHECK(t != NULL && strlen(t) == 4096);
  free(t);
  mb_buf_free(&b);
  t = mb_reason_render("\x01\x09", 2, 64);
  CHECK_EQ_STR(t, "<corrupt>");
  free(t);
  lua_close(L);
}

/* Walk everything the reader offers over an encoding, depth first. */
static void walk_all(mb_tr *r, int depth) {
  while (mb_tr_type(r) != MB_TT_NONE) {
    const char *s;
    size_t len;
    int64_t i;
    double d;
    uint64_t u, narr;
    uint32_t nh;
    int bo;
    switch (mb_tr_type(r)) {
    case MB_TT_NIL: CHECK(mb_tr_nil(r) == 0); break;
    case MB_TT_BOOL: CHECK(mb_tr_bool(r, &bo) == 0); break;
    case MB_TT_INT: CHECK(mb_tr_int(r, &i) == 0); break;
    case MB_TT_FLOAT: CHECK(mb_tr_float(r, &d) == 0); break;
    case MB_TT_STR: CHECK(mb_tr_string(r, &s, &len) == 0); break;
    case MB_TT_PID: CHECK(mb_tr_pid(r, &u) == 0); break;
    case MB_TT_REF: CHECK(mb_tr_ref(r, &u) == 0); break;
    case MB_TT_HANDLE: CHECK(mb_tr_handle(r, &bo, &u) == 0); break;
    case MB_TT_TABLE:
      if (depth >= 20 || (depth & 1)) { CHECK(mb_tr_skip(r) == 0); break; }
      CHECK(mb_tr_enter(r, &narr, &nh) == 0);
      walk_all(r, depth + 1);
      CHECK(mb_tr_leave(r) == 0);
      break;
    }
  }
}

/* Random and mutated encodings: the reader accepts exactly what the decoder
 * accepts, walks what it accepts, and the renderer never fails on either. */
TEST(corrupt_input_never_crashes_and_agrees_with_the_decoder) {
  lua_State *L = state();
  mb_buf seeds[sizeof samples / sizeof samples[0]];
  size_t ns = sizeof samples / sizeof samples[0];
  for (size_t i = 0; i < ns; i++) seeds[i] = encode_lua(L, samples[i]);
  srand(12345);
  unsigned char buf[512];
  for (int round = 0; round < 200000; round++) {
    size_t len;
    if (round % 4 == 0) {
      len = (size_t)(rand() % 40);
      for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)(rand() % 12);
      if (len) buf[0] = (unsigned char)(rand() % 2 ? 0x01 : 0x81);
    } else {
      mb_buf *s = &seeds[(size_t)rand() % ns];
      len = s->len < sizeof buf ? s->len : sizeof buf;
      memcpy(buf, s->data, len);
      int edits = 1 + rand() % 3;
      for (int e = 0; e < edits && len; e++) {
        size_t at = (size_t)rand() % len;
        switch (rand() % 3) {
        case 0: buf[at] = (unsigned char)rand(); break;
        case 1: buf[at] = (unsigned char)(rand() % 10); break;
        case 2: len = at; break;   /* cut */
        }
      }
    }
    /* a copy of its own, so ASan sees any read past the end */
    char *p = malloc(len ? len : 1);
    memcpy(p, buf, len);
    mb_tr r;
    int ok = mb_tr_open(&r, p, len) == 0;
    int top = lua_gettop(L);
    int dec = mb_decode(L, p, len) == 0;
    lua_settop(L, top);
    if (ok != dec) {
      /* a handle id this state already holds with another kind is refused by
       * the decoder alone (the reader knows no state): judge in a fresh one */
      lua_State *F = luaL_newstate();
      dec = mb_decode(F, p, len) == 0;
      lua_close(F);
    }
    if (ok != dec) {
      fprintf(stderr, "reader %d decoder %d on:", ok, dec);
      for (size_t i = 0; i < len; i++) fprintf(stderr, " %02x", (unsigned char)p[i]);
      fprintf(stderr, "\n");
      CHECK(0);
    }
    if (ok) { walk_all(&r, 0); mb_tr_close(&r); }
    char *t = mb_reason_render(p, len, 256);
    CHECK(t != NULL && strlen(t) <= 256);
    free(t);
    free(p);
  }
  for (size_t i = 0; i < ns; i++) mb_buf_free(&seeds[i]);
  lua_close(L);
}

TEST_MAIN(CHECK_CASE(lua_encoded_values_render_as_the_lua_renderer_did),
          CHECK_CASE(the_reader_walks_lua_encoded_values), CHECK_CASE(written_values_decode_in_lua),
          CHECK_CASE(writer_errors_leave_the_buffer_as_it_was), CHECK_CASE(render_is_bounded_and_depth_limited),
          CHECK_CASE(corrupt_input_never_crashes_and_agrees_with_the_decoder))
