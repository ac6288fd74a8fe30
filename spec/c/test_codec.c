/* test_codec: the message codec, one behaviour per test. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "check.h"
#include "codec.h"
#include "luatab.h"
#include "sigblock.h"
#include "term.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK() CHECK(__lsan_do_recoverable_leak_check() == 0)
#else
#define LEAK_CHECK() ((void)0)
#endif

#define RESERVE 16

/* ------------------------------------------------------------ helpers */

/* Lua-side helpers: a deep equality that also checks sharing is preserved. */
static const char *prelude =
  "function deq(a, b, fwd, rev)\n"
  "  fwd, rev = fwd or {}, rev or {}\n"
  "  if type(a) ~= type(b) or math.type(a) ~= math.type(b) then return false end\n"
  "  if type(a) == 'number' then\n"
  "    if a ~= a then return b ~= b end\n"
  "    if a == 0 and b == 0 then return 1/a == 1/b end\n"
  "    return a == b\n"
  "  end\n"
  "  if type(a) ~= 'table' then return rawequal(a, b) end\n"
  "  if rawequal(a, b) then return false end -- a copy is never the original\n"
  "  if fwd[a] ~= nil or rev[b] ~= nil then return fwd[a] == b and rev[b] == a end\n"
  "  fwd[a], rev[b] = b, a\n"
  "  local n = 0\n"
  "  for k, v in pairs(a) do\n"
  "    n = n + 1\n"
  "    local kb = k\n"
  "    if type(k) == 'table' then\n"
  "      kb = fwd[k]\n"
  "      if kb == nil then\n"
  "        for k2 in pairs(b) do\n"
  "          if type(k2) == 'table' and rev[k2] == nil and deq(k, k2, {}, {}) then kb = k2 break end\n"
  "        end\n"
  "        if kb == nil or not deq(k, kb, fwd, rev) then return false end\n"
  "      end\n"
  "    end\n"
  "    if not deq(v, rawget(b, kb), fwd, rev) then return false end\n"
  "  end\n"
  "  for _ in pairs(b) do n = n - 1 end\n"
  "  return n == 0\n"
  "end\n";

/* rt(v): encode then decode v in the same state; raises with the encoder's message.
 * rtm(v): the same, decoding with the string cache's address kept between calls, as
 * a process's receive keeps it (mb_decode_in); one memo per state (new_state). */
static void *rt_memo;
static int rt_with(lua_State *L, void **memo) {
  mb_buf b;
  char err[256];
  lua_settop(L, 1);
  CHECK(mb_buf_init(&b, RESERVE, 0) == 0);
  int st = mb_encode(L, 1, &b, "msg", err, sizeof err);
  CHECK(lua_gettop(L) == 1);
  if (st != MB_ENC_OK) {
    mb_buf_free(&b);
    return luaL_error(L, "%s", err);
  }
  /* a decoder error raises out of here: the bytes go where a raise leaves nothing */
  size_t len = b.len - b.start;
  char *copy = lua_newuserdatauv(L, len, 0);
  memcpy(copy, b.data + b.start, len);
  mb_buf_free(&b);
  CHECK(mb_decode_in(L, copy, len, memo) == 0);
  CHECK(lua_gettop(L) == 3);
  return 1;
}
static int l_rt(lua_State *L) { return rt_with(L, NULL); }
static int l_rtm(lua_State *L) { return rt_with(L, &rt_memo); }

/* try_send(v): true, or nil, message, code. */
static int l_try_send(lua_State *L) {
  mb_buf b;
  char err[256];
  lua_settop(L, 1);
  CHECK(mb_buf_init(&b, RESERVE, 0) == 0);
  int st = mb_encode(L, 1, &b, "msg", err, sizeof err);
  CHECK(lua_gettop(L) == 1);
  CHECK(st != MB_ENC_OK || b.len > b.start);
  CHECK(st == MB_ENC_OK || b.len == b.start);
  mb_buf_free(&b);
  if (st == MB_ENC_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, err);
  lua_pushinteger(L, st);
  return 3;
}

/* every_way(v): v encodes to the same bytes read in place, read in place and then
 * again through the API (MB_INPLACE_DOUBT), and through the API, whatever the
 * probe said; and that encoding decodes to a deep copy of v. */
static int l_every_way(lua_State *L) {
  static const int modes[] = {1, MB_INPLACE_DOUBT, 0};
  mb_buf b[3];
  lua_settop(L, 1);
  for (int i = 0; i < 3; i++) {
    CHECK(mb_buf_init(&b[i], 0, 0) == 0);
    CHECK_EQ_INT(mb_encode_mode(L, 1, &b[i], modes[i]), MB_ENC_OK);
    CHECK_EQ_INT(lua_gettop(L), 1);
  }
  int same = b[0].len == b[2].len && memcmp(b[0].data, b[2].data, b[0].len) == 0 &&
             b[1].len == b[2].len && memcmp(b[1].data, b[2].data, b[1].len) == 0;
  lua_getglobal(L, "deq");
  lua_pushvalue(L, 1);
  CHECK_EQ_INT(mb_decode(L, b[2].data, b[2].len), 0);
  lua_call(L, 2, 1);
  for (int i = 0; i < 3; i++) mb_buf_free(&b[i]);
  lua_pushboolean(L, same && lua_toboolean(L, -1));
  return 1;
}

/* layout(t): after #t, alimit, the array part's size, how many of its slots past
 * alimit are in use, and how many nodes before the node of key #t hold a key
 * other than 1..#t (-1 when #t is not in the hash part). */
static int l_layout(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1), past = 0, before = 0;
  mb_luatab_view v;
  mb_luatab_view_of(L, 1, &v);
  for (lua_Unsigned k = v.keys; k < v.asize; k++) past += !mb_luatab_empty(v.array[k].tag);
  size_t j;
  for (j = 0; j < v.nnodes; j++) {
    const mb_luatab_node *nd = &v.nodes[j];
    if (mb_luatab_empty(nd->tag)) continue;
    if (nd->key_tag == MB_LUATAB_INT && nd->key.i == n) break;
    before += !(nd->key_tag == MB_LUATAB_INT && nd->key.i >= 1 && nd->key.i <= n);
  }
  lua_pushinteger(L, (lua_Integer)v.keys);
  lua_pushinteger(L, (lua_Integer)v.asize);
  lua_pushinteger(L, past);
  lua_pushinteger(L, j == v.nnodes ? -1 : before);
  return 4;
}

static int l_pid(lua_State *L) { mb_push_pid(L, (mb_pid)luaL_checkinteger(L, 1)); return 1; }
static int l_ref(lua_State *L) { mb_push_ref(L, (uint64_t)luaL_checkinteger(L, 1)); return 1; }

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  luaL_openlibs(L);
  mb_light_prepare(L);   /* a host state that renders pids (term.h) */
  lua_register(L, "rt", l_rt);
  lua_register(L, "rtm", l_rtm);
  rt_memo = NULL;
  lua_register(L, "try_send", l_try_send);
  lua_register(L, "pid", l_pid);
  lua_register(L, "ref", l_ref);
  lua_register(L, "every_way", l_every_way);
  lua_register(L, "layout", l_layout);
  CHECK(luaL_dostring(L, prelude) == LUA_OK);
  return L;
}

static void done(lua_State *L) {
  CHECK(lua_gettop(L) == 0);
  lua_close(L);
  LEAK_CHECK();
}

static void run(lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK) {
    fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
    CHECK(0);
  }
  lua_settop(L, 0);
}

/* Encode the top value into a fresh buffer; the stack must be unchanged. */
static int encode_top(lua_State *L, mb_buf *b, size_t limit, char *err, size_t errlen) {
  int top = lua_gettop(L);
  CHECK(mb_buf_init(b, RESERVE, limit) == 0);
  int st = mb_encode(L, -1, b, "msg", err, errlen);
  CHECK_EQ_INT(lua_gettop(L), top);
  if (st != MB_ENC_OK) CHECK_EQ_INT(b->len, b->start);
  return st;
}

/* Replace the top value by its round-tripped copy. */
static void round_trip_top(lua_State *L) {
  mb_buf b;
  char err[256] = "";
  int st = encode_top(L, &b, 0, err, sizeof err);
  if (st != MB_ENC_OK) fprintf(stderr, "encode: %s\n", err);
  CHECK_EQ_INT(st, MB_ENC_OK);
  int top = lua_gettop(L);
  CHECK_EQ_INT(mb_decode(L, b.data + b.start, b.len - b.start), 0);
  CHECK_EQ_INT(lua_gettop(L), top + 1);
  lua_remove(L, -2);
  mb_buf_free(&b);
}

/* The refusal of the value the Lua expression evaluates to. */
static void expect_refusal(lua_State *L, const char *expr, int code, const char *msg) {
  char chunk[512], err[256] = "";
  mb_buf b;
  snprintf(chunk, sizeof chunk, "return %s", expr);
  CHECK(luaL_dostring(L, chunk) == LUA_OK);
  CHECK_EQ_INT(encode_top(L, &b, 0, err, sizeof err), code);
  CHECK_EQ_STR(err, msg);
  mb_buf_free(&b);
  lua_pop(L, 1);
}

/* xorshift64*: a fixed-seed PRNG so failures reproduce. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

typedef struct blob { const char *p; size_t len; int values; } blob;

/* Decode under pcall: -1 leaves the stack alone, success pushes exactly one value
 * (or the count), and whatever decodes must be sendable again. */
static int l_decode_blob(lua_State *L) {
  blob *bl = lua_touserdata(L, 1);
  int top = lua_gettop(L);
  int r = bl->values ? mb_decode_values(L, bl->p, bl->len) : mb_decode(L, bl->p, bl->len);
  if (r < 0) {
    CHECK_EQ_INT(lua_gettop(L), top);
    lua_pushboolean(L, 0);
    return 1;
  }
  int n = bl->values ? r : 1;
  CHECK_EQ_INT(lua_gettop(L), top + n);
  mb_buf b;
  char err[256];
  CHECK(mb_buf_init(&b, 0, 0) == 0);
  int st = bl->values ? mb_encode_values(L, top + 1, n, &b, err, sizeof err)
                      : mb_encode(L, -1, &b, "msg", err, sizeof err);
  CHECK_EQ_INT(st, MB_ENC_OK);
  mb_buf_free(&b);
  CHECK_EQ_INT(lua_gettop(L), top + n);
  lua_pushboolean(L, 1);
  return 1;
}

static int decode_protected(lua_State *L, const char *p, size_t len, int values) {
  blob bl = {p, len, values};
  int top = lua_gettop(L);
  lua_pushcfunction(L, l_decode_blob);
  lua_pushlightuserdata(L, &bl);
  int st = lua_pcall(L, 1, 1, 0);
  if (st != LUA_OK) fprintf(stderr, "decode raised: %s\n", lua_tostring(L, -1));
  CHECK_EQ_INT(st, LUA_OK);
  int ok = lua_toboolean(L, -1);
  lua_settop(L, top);
  return ok;
}

/* A few valid encodings to cut up and mutate. */
static const char *samples[] = {
  "nil", "true", "-1", "math.mininteger", "1.5", "'hello\\0world'", "pid(7)", "ref(1 << 40)",
  "{}", "{1, 2, 3}", "{a = 1, b = {c = 'x'}, [1.5] = false, [true] = 'y'}",
  "(function() local s = {1} return {s, s, k = s, [s] = s} end)()",
  "(function() local t = {} for i = 1, 40 do t[i] = {i} t[-i] = t[i] end return t end)()",
  "{{{{{{{{'deep'}}}}}}}, {[{}] = {}, [pid(3)] = ref(4)}}",
};

/* Encode sample i (mb_encode, or mb_encode_values of two copies) into b. */
static void encode_sample(lua_State *L, int i, int values, mb_buf *b) {
  char chunk[512];
  snprintf(chunk, sizeof chunk, "return %s", samples[i]);
  CHECK(luaL_dostring(L, chunk) == LUA_OK);
  CHECK(mb_buf_init(b, 0, 0) == 0);
  if (values) {
    lua_pushvalue(L, -1);
    CHECK_EQ_INT(mb_encode_values(L, -2, 2, b, NULL, 0), MB_ENC_OK);
  } else {
    CHECK_EQ_INT(mb_encode(L, -1, b, "msg", NULL, 0), MB_ENC_OK);
  }
  lua_settop(L, 0);
}

#define NSAMPLES ((int)(sizeof samples / sizeof samples[0]))

/* ------------------------------------------------------------ round trips */

TEST(round_trips_nil_and_booleans) {
  lua_State *L = new_state();
  lua_pushnil(L);
  round_trip_top(L);
  CHECK(lua_isnil(L, -1));
  lua_pushboolean(L, 0);
  round_trip_top(L);
  CHECK(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
  lua_pushboolean(L, 1);
  round_trip_top(L);
  CHECK(lua_isboolean(L, -1) && lua_toboolean(L, -1));
  lua_settop(L, 0);
  done(L);
}

TEST(round_trips_integers) {
  static const lua_Integer ints[] = {
    0, 1, -1, 63, 64, -64, -65, 127, 128, 300, -300, 1 << 20, (lua_Integer)1 << 53,
    -((lua_Integer)1 << 53), LUA_MAXINTEGER, LUA_MININTEGER, LUA_MAXINTEGER - 1, LUA_MININTEGER + 1};
  lua_State *L = new_state();
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    lua_pushinteger(L, ints[i]);
    round_trip_top(L);
    CHECK(lua_isinteger(L, -1));
    CHECK(lua_tointeger(L, -1) == ints[i]);
    lua_pop(L, 1);
  }
  done(L);
}

TEST(small_integers_encode_in_two_bytes) {
  lua_State *L = new_state();
  mb_buf b;
  lua_pushinteger(L, -5);
  CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
  CHECK_EQ_INT(b.len - b.start, 3); /* header, tag, one varint byte */
  mb_buf_free(&b);
  lua_pop(L, 1);
  lua_pushinteger(L, LUA_MININTEGER);
  CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
  CHECK_EQ_INT(b.len - b.start, 12); /* the longest varint is 10 bytes */
  mb_buf_free(&b);
  lua_pop(L, 1);
  done(L);
}


/* mb_encode_scalar, the send path of a lone scalar, writes exactly mb_encode's bytes,
 * and declines (0) everything else: nil, tables, userdata, a string over its bound. */
TEST(scalar_encoding_is_the_encoders_and_declines_the_rest) {
  lua_State *L = new_state();
  static const lua_Integer ints[] = { 0, 1, -1, 63, 64, -65, 300, LUA_MAXINTEGER, LUA_MININTEGER };
  static const double floats[] = { 0.5, -0.0, 1e308, HUGE_VAL };
  for (int i = 0; i < (int)(sizeof ints / sizeof ints[0]) + (int)(sizeof floats / sizeof floats[0]) + 5; i++) {
    int ni = (int)(sizeof ints / sizeof ints[0]), nf = (int)(sizeof floats / sizeof floats[0]);
    if (i < ni) lua_pushinteger(L, ints[i]);
    else if (i < ni + nf) lua_pushnumber(L, floats[i - ni]);
    else if (i == ni + nf) lua_pushboolean(L, 1);
    else if (i == ni + nf + 1) lua_pushboolean(L, 0);
    else if (i == ni + nf + 2) lua_pushliteral(L, "");
    else if (i == ni + nf + 3) lua_pushliteral(L, "ping");
    else { char s[MB_SCALAR_STR]; memset(s, 'x', sizeof s); lua_pushlstring(L, s, sizeof s); }
    unsigned char out[MB_SCALAR_MAX];
    size_t n = mb_encode_scalar(L, -1, out);
    mb_buf b;
    CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
    CHECK_EQ_INT((int)n, (int)(b.len - b.start));
    CHECK(memcmp(out, b.data + b.start, n) == 0);
    mb_buf_free(&b);
    lua_pop(L, 1);
  }
  unsigned char out[MB_SCALAR_MAX];
  lua_pushnil(L);
  CHECK_EQ_INT((int)mb_encode_scalar(L, -1, out), 0);
  lua_newtable(L);
  CHECK_EQ_INT((int)mb_encode_scalar(L, -1, out), 0);
  lua_newuserdatauv(L, 8, 0);
  CHECK_EQ_INT((int)mb_encode_scalar(L, -1, out), 0);
  char s[MB_SCALAR_STR + 1];
  memset(s, 'y', sizeof s);
  lua_pushlstring(L, s, sizeof s);
  CHECK_EQ_INT((int)mb_encode_scalar(L, -1, out), 0);
  CHECK_EQ_INT(lua_gettop(L), 4);
  lua_settop(L, 0);
  done(L);
}

/* mb_encode_tuple, the send path of a short tuple, writes exactly mb_encode's bytes
 * for a table of 1..8 plain values that are all in its array part, and declines (0)
 * the rest; with the layout untrusted (MB_CODEC_PORTABLE) it declines everything. */
TEST(tuple_encoding_is_the_encoders_and_declines_the_rest) {
  lua_State *L = new_state();
  int trusted = mb_luatab_trusted() == 1;
  static const char *const tuples[] = {
    "return {'ping', pid(7), 1}", "return {1}", "return {true, false, 0.5, -0.0, 1e308, 0/0}",
    "return {'', 'x', string.rep('y', 40)}", "return {string.rep('z', 41), 2}",
    "return {ref(3), pid(2^40), -1, math.mininteger, math.maxinteger}",
    "return {1, 2, 3, 4, 5, 6, 7, 8}", "return setmetatable({'m', 1}, {__index = error, __len = error})",
  };
  for (size_t i = 0; i < sizeof tuples / sizeof tuples[0]; i++) {
    CHECK(luaL_dostring(L, tuples[i]) == LUA_OK);
    unsigned char out[MB_TUPLE_MAX];
    size_t n = mb_encode_tuple(L, -1, out);
    if (!trusted) {
      CHECK_EQ_INT((int)n, 0);
    } else {
      mb_buf b;
      CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
      if (n == 0 || (int)n != (int)(b.len - b.start) || memcmp(out, b.data + b.start, n) != 0) {
        fprintf(stderr, "tuple %s: %zu bytes, the encoder's %zu\n", tuples[i], n, b.len - b.start);
        CHECK(0);
      }
      mb_buf_free(&b);
    }
    lua_pop(L, 1);
  }
  static const char *const others[] = {
    "return {}", "return {1, nil, 3}", "local t = {1, 2, 3} t[3] = nil return t", "return {1, 2, x = 1}",
    "return {{1}}", "return {print}", "return {1, 2, 3, 4, 5, 6, 7, 8, 9}", "return {string.rep('q', 100)}",
    "return {coroutine.create(print)}", "return {io.stdout}", "return 'ping'", "return 7",
  };
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
    CHECK(luaL_dostring(L, others[i]) == LUA_OK);
    unsigned char out[MB_TUPLE_MAX];
    if (mb_encode_tuple(L, -1, out) != 0) {
      fprintf(stderr, "not a tuple, taken for one: %s\n", others[i]);
      CHECK(0);
    }
    lua_pop(L, 1);
  }
  int x;
  lua_createtable(L, 1, 0);
  lua_pushlightuserdata(L, &x);   /* a host's light userdata: neither pid nor ref */
  lua_rawseti(L, -2, 1);
  unsigned char out[MB_TUPLE_MAX];
  CHECK_EQ_INT((int)mb_encode_tuple(L, -1, out), 0);
  lua_pop(L, 1);
  done(L);
}

/* A short flat tuple is decoded by a path of its own (decode.c, dec_tuple): the
 * same values as the encoder was given, for every plain kind; every truncation
 * fails and leaves the stack as found; no byte changed anywhere crashes it. */
TEST(short_tuples_decode_to_what_was_sent) {
  lua_State *L = new_state();
  static const char *const tuples[] = {
    "return {'ping', pid(7), 1}", "return {1}", "return {true, false, 0.5, -0.0, 1e308, 0/0}",
    "return {'', 'x', string.rep('y', 40)}", "return {string.rep('z', 41), 2}",
    "return {ref(3), -1, math.mininteger, math.maxinteger}", "return {1, 2, 3, 4, 5, 6, 7, 8}",
    "return {'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'}", "return {pid(2^40), 'boxed'}",
  };
  for (size_t i = 0; i < sizeof tuples / sizeof tuples[0]; i++) {
    CHECK(luaL_dostring(L, tuples[i]) == LUA_OK);
    int src = lua_gettop(L);
    mb_buf b;
    CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
    const char *data = b.data + b.start;
    size_t len = b.len - b.start;
    CHECK(mb_decode(L, data, len) == 0);
    lua_getglobal(L, "deq");
    lua_pushvalue(L, src);
    lua_pushvalue(L, src + 1);
    lua_call(L, 2, 1);
    if (!lua_toboolean(L, -1) && !strstr(tuples[i], "2^40")) {   /* a boxed pid is another userdata */
      fprintf(stderr, "tuple %s decodes to something else\n", tuples[i]);
      CHECK(0);
    }
    lua_settop(L, src);
    for (size_t k = 0; k < len; k++) {
      CHECK(mb_decode(L, data, k) == -1);
      CHECK_EQ_INT(lua_gettop(L), src);
    }
    char mut[256];
    CHECK(len <= sizeof mut);
    for (size_t k = 0; k < len; k++)
      for (int x = 0; x < 256; x += 5) {
        memcpy(mut, data, len);
        mut[k] = (char)x;
        if (mb_decode(L, mut, len) == 0) lua_pop(L, 1);
        CHECK_EQ_INT(lua_gettop(L), src);
      }
    mb_buf_free(&b);
    lua_settop(L, src - 1);
  }
  done(L);
}

TEST(round_trips_floats_keeping_the_subtype) {
  const double floats[] = {0.0, -0.0, 1.5, -2.25, 3.0, 0.1, 1e308, -1e-308, DBL_MIN, DBL_MAX,
                           DBL_TRUE_MIN, HUGE_VAL, -HUGE_VAL, 9007199254740993.0};
  lua_State *L = new_state();
  for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
    lua_pushnumber(L, floats[i]);
    round_trip_top(L);
    CHECK(lua_type(L, -1) == LUA_TNUMBER && !lua_isinteger(L, -1));
    double d = lua_tonumber(L, -1);
    CHECK(memcmp(&d, &floats[i], sizeof d) == 0); /* bit-exact, so -0.0 keeps its sign */
    lua_pop(L, 1);
  }
  lua_pushnumber(L, NAN);
  round_trip_top(L);
  CHECK(!lua_isinteger(L, -1) && isnan(lua_tonumber(L, -1)));
  lua_pop(L, 1);
  run(L, "assert(math.type(rt(3)) == 'integer' and math.type(rt(3.0)) == 'float')\n"
         "assert(1/rt(-0.0) == -math.huge and rt(0/0) ~= rt(0/0))\n"
         "assert(math.type(rt(2^63)) == 'float' and rt(2^63) == 2^63)");
  done(L);
}

/* On this platform's Lua (Debian's 5.4) the layout probe must pass, or the codec
 * silently loses its fast path; MB_CODEC_PORTABLE turns it off on purpose. */
TEST(layout_probe_trusts_this_lua_unless_told_not_to) {
  const char *portable = getenv("MB_CODEC_PORTABLE");
  CHECK_EQ_INT(mb_luatab_trusted(), !(portable && *portable && strcmp(portable, "0") != 0));
}

static int tampered;
static void flip_the_fifth(mb_buf *b) {
  if (++tampered == 5) b->data[b->len - 1] ^= 1;
}

/* One in-place encoding of the probe's corpus that differs from the public API's
 * turns the reader off for the program; the codec then still works. */
TEST(a_mismatch_in_the_probe_turns_the_reader_off) {
  const char *portable = getenv("MB_CODEC_PORTABLE");
  CHECK_EQ_INT(mb_luatab_probe_tamper(flip_the_fifth), 0);
  CHECK_EQ_INT(mb_luatab_trusted(), 0);
  if (!(portable && *portable && strcmp(portable, "0") != 0)) CHECK(tampered >= 5);
  CHECK_EQ_INT(mb_luatab_probe_tamper(flip_the_fifth), -1); /* too late: it has run */
  lua_State *L = new_state();
  run(L, "local t = {1, 2.0, 'x', {y = true}, n = -1} assert(deq(t, rt(t)))");
  done(L);
}

/* Keys in the array part past alimit: 1..16, then 11, 12, 15 and 16 removed, so
 * #t finds the border 10 by binary search and alimit drops to it (flagged: the
 * array keeps 16 slots), leaving t[13] and t[14] past it. Read in place, they
 * must be found from the array's real size, not from alimit. */
TEST(keys_past_alimit_are_kept_every_way) {
  lua_State *L = new_state();
  run(L, "local function past_alimit(fill, t)\n"
         "  t = t or {} for i = 1, 16 do t[i] = fill(i) end\n"
         "  t[11], t[12], t[15], t[16] = nil, nil, nil, nil\n"
         "  local keys, asize, past = layout(t)\n"
         "  assert(#t == 10 and keys == 10 and asize == 16 and past == 2)\n"
         "  return t\n"
         "end\n"
         "local shapes = {\n"
         "  past_alimit(function(i) return i end),\n"
         "  past_alimit(function(i) return 'v' .. i end, {name = 'x', [-1] = 0.5}),\n"
         "  past_alimit(function(i) return {i} end, {name = 'x'}),\n" /* not plain: lua_next from n */
         "}\n"
         /* then t[13] read: alimit moves to 13, and #t finds 14 past it (binary search) */
         "local t = past_alimit(function(i) return i * 1.5 end) local _ = t[13]\n"
         "local keys, asize = layout(t) assert(keys == 14 and asize == 16) shapes[#shapes + 1] = t\n"
         /* 1..8, t[8] removed, then t[9]: a rehash, and alimit drops to 7 */
         "t = {} for i = 1, 8 do t[i] = i end t[8] = nil t[9] = 'x' shapes[#shapes + 1] = t\n"
         "t = {} for i = 1, 8 do t[i] = i end t[8] = nil _ = #t t[9] = 'x' shapes[#shapes + 1] = t\n"
         /* a flagged alimit that is a power of two: 5 by #t, then 8 by reading t[8] */
         "t = {} for i = 1, 8 do t[i] = i end t[6], t[7], t[8] = nil, nil, nil _ = #t _ = t[8]\n"
         "t[7] = 7 shapes[#shapes + 1] = t\n"
         "for i, s in ipairs(shapes) do\n"
         "  assert(every_way(s), 'shape ' .. i) assert(deq(s, rt(s)), 'shape ' .. i)\n"
         "end");
  done(L);
}

/* When the view does not account for a table the reader forgets what it wrote of
 * it, and the tables numbered in it, and reads it again through the API:
 * MB_INPLACE_DOUBT does that for every table, after nested and shared ones (more
 * than the 16 kept without a hash index) were numbered in place. */
TEST(a_table_read_again_through_the_api_is_written_once) {
  lua_State *L = new_state();
  run(L, "local s = {1, 'shared'}\n"
         "local many = {} for i = 1, 40 do many[i] = {i, s, name = 'n' .. i} end\n"
         "assert(every_way({s, many, {s, {s}}, k = s, list = many, last = {s}}))\n"
         "assert(every_way({[s] = s, x = {s, many[3]}, many[3]}))\n"
         "local t = {} for i = 1, 16 do t[i] = {i} end t[11], t[12], t[15], t[16] = nil, nil, nil, nil\n"
         "assert(#t == 10 and every_way(t))");
  done(L);
}

/* The public-API path cannot tell where t[n] lives, so it may not write t[1..n] by
 * index and then walk with lua_next from key n: when the array continues in the
 * hash part (#t found there), t[n] is a node and the pairs in the nodes before it
 * would never be visited. Here four integers fill the array part, the constructor
 * leaves free nodes, t[5] and t[6] take two of them, and false, true, 0 and -1
 * (placed by their hashes, which do not depend on the state's seed) sit in nodes
 * before t[6]'s. */
TEST(arrays_continued_in_the_hash_keep_the_keys_before_n) {
  lua_State *L = new_state();
  run(L, "local t = {1, 2, 3, 4, [false] = 0, [true] = 1, [0] = 0, [-1] = -1, [-2] = -2}\n"
         "t[5] = 5 t[6] = 6\n"
         "local keys, asize, past, before = layout(t)\n"
         "assert(#t == 6 and keys == 4 and asize == 4 and before > 0, 'not the shape meant')\n"
         "assert(every_way(t) and deq(t, rt(t)))\n"
         "local u = {1, 2, x = 'x', y = 'y', z = 'z', [1.5] = 1.5, [false] = false} u[3] = 3 u[4] = {4}\n"
         "assert(#u == 4 and every_way(u) and deq(u, rt(u)))");
  done(L);
}

/* Tables whose keys 1..n are not all in the array part, with other keys before and
 * after them in the hash part; and arrays mixing numbers with other values. */
TEST(round_trips_every_array_and_hash_layout) {
  lua_State *L = new_state();
  run(L, "local function same(a, b)\n"
         "  if type(a) ~= 'table' then return a == b and math.type(a) == math.type(b) end\n"
         "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
         "  for k in pairs(b) do if a[k] == nil then return false end end\n"
         "  return true\n"
         "end\n"
         "local shapes = {}\n"
         /* string keys first, then 1..n appended into free hash slots */
         "local t = {a = 1, b = 2, c = 3, d = 4, e = 5} t.a, t.b, t.c = nil, nil, nil\n"
         "for i = 1, 3 do t[i] = i * 10 end shapes[#shapes + 1] = t\n"
         /* n in the hash, n + 1 removed (a dead key), more keys around */
         "t = {x = 1, y = 2, z = 3, w = 4, v = 5, u = 6, s = 7}\n"
         "t.x, t.y, t.z, t.w, t.v = nil, nil, nil, nil, nil t[1], t[2], t[3] = 'a', 'b', 'c' t[3] = nil\n"
         "shapes[#shapes + 1] = t\n"
         /* array part plus hash-held continuation plus string keys */
         "t = {1, 2, 3, 4, k = 'v', j = 'w'} t[5] = 5 t[6] = 6 shapes[#shapes + 1] = t\n"
         /* built backwards: everything in the hash part */
         "t = {} for i = 40, 1, -1 do t[i] = i end t.name = 'back' shapes[#shapes + 1] = t\n"
         /* a long array mixing every kind, with keys past n and a hole after it */
         "t = {} for i = 1, 90 do t[i] = ({i, i + 0.5, 'str' .. i, {i}, true, false})[i % 6 + 1] end\n"
         "t[92] = 'past the hole' t.tag = 'mixed' t[-1] = 'negative' t[0] = 'zero' shapes[#shapes + 1] = t\n"
         /* exact-size constructors, and a table grown then shrunk */
         "shapes[#shapes + 1] = {1, 2, 3}\n"
         "t = {} for i = 1, 64 do t[i] = i end for i = 64, 10, -1 do t[i] = nil end shapes[#shapes + 1] = t\n"
         "for i, s in ipairs(shapes) do assert(same(s, rt(s)), 'shape ' .. i) end");
  done(L);
}

/* The decoder's string cache, both halves: repeated key sets and values,
 * colliding and evicted strings (more distinct ones than the cache holds), strings
 * with NUL bytes, at and past the short-string length, empty, a tuple's lone tag,
 * strings used as a key and a value at once, arrays of strings (filled in place
 * and packed), streams of distinct keys and of distinct values (which turn a half
 * off for a while, then on again) and full collections in between. */
static const char strings_workload[] =
  "local function check(t) assert(deq(t, RT(t))) end\n"
  "local rec = {type = 'call', from = 'me', id = 7, ['a\\0b'] = 1, [string.rep('k', 41)] = 2,\n"
  "             v1 = 'call', v2 = 'x\\0y', v3 = string.rep('v', 40), v4 = string.rep('w', 41), v5 = ''}\n"
  "local names = {} for i = 1, 200 do names[i] = 'name' .. i end\n"
  "for round = 1, 3 do\n"
  "  for i = 1, 600 do check(rec) check({'ping', i}) check({'tag', 'me', 'call', i}) end\n"
  "  for i = 1, 600 do check({['key' .. i] = i, ['other' .. (i % 7)] = -i, type = 'x'}) end\n"
  "  for i = 1, 600 do check({a = 'val' .. i, b = 'val' .. (i + 1), c = names[i % 200 + 1]}) end\n"
  "  for i = 1, 300 do\n"
  "    local t = {} for j = 1, 20 do t[j] = names[(i * 7 + j) % 200 + 1] end\n"
  "    check(t) check({names[i % 200 + 1], names[(i + 3) % 200 + 1]})\n"
  "  end\n"
  "  collectgarbage() collectgarbage()\n"
  "  for i = 1, 600 do check(rec) check({s = names[i % 200 + 1], [names[i % 200 + 1]] = i}) end\n"
  "end\n"
  "local r = RT(rec) assert(r['a\\0b'] == 1 and r[string.rep('k', 41)] == 2 and r.type == 'call')\n"
  "assert(r.v2 == 'x\\0y' and r.v3 == string.rep('v', 40) and r.v4 == string.rep('w', 41) and r.v5 == '')";

TEST(strings_decode_right_through_the_string_cache) {
  lua_State *L = new_state();
  run(L, "RT = rt");
  run(L, strings_workload);
  done(L);
}

/* The registry's value that is a userdata at the address p (the string cache). */
static int registry_holds(lua_State *L, const void *p) {
  int found = 0;
  lua_pushnil(L);
  while (lua_next(L, LUA_REGISTRYINDEX)) {
    found |= lua_type(L, -1) == LUA_TUSERDATA && lua_touserdata(L, -1) == p;
    lua_pop(L, 1);
  }
  return found;
}

/* The same, with the cache's address kept by the caller (mb_decode_in, as a
 * process's receive does): the tuple path then takes the strings of {"ping", ...}
 * from the cache into the array's slots. The workload above; then tuples of
 * strings sent twice (the second from the cache), evicted while the decoded
 * tables live, with GC steps at every allocation in incremental mode and in
 * generational mode; and a cache the registry no longer holds is an error, not a
 * read of a stale one. (The case where the new table is black and its string
 * white is driven step by step in the next test: here the sender's table still
 * holds the string while it is decoded.) */
TEST(strings_decode_right_with_the_cache_kept_by_the_caller) {
  lua_State *L = new_state();
  run(L, "RT = rtm");
  run(L, strings_workload);
  CHECK(rt_memo != NULL);
  CHECK(registry_holds(L, rt_memo));
  /* each fresh string is sent twice: the first joins the cache, the second comes
   * from it into a new table, perhaps black already; the sender's string is dropped,
   * and later strings evict it, so the kept table is what holds it then */
  run(L, "for _, mode in ipairs({'incremental', 'generational'}) do\n"
         "  collectgarbage(mode)\n"
         "  if mode == 'incremental' then collectgarbage('setpause', 0) collectgarbage('setstepmul', 1000) end\n"
         "  local kept = {}\n"
         "  for i = 1, 20000 do\n"
         "    local s = string.format('u%d', i)\n"
         "    assert(rtm({'k', s, i})[2] == s)\n"
         "    local t = rtm({'k', s, i})\n"
         "    assert(t[1] == 'k' and t[2] == s and t[3] == i and #t == 3)\n"
         "    s = nil\n"
         "    kept[i % 97 + 1] = t\n"
         "    if i % 100 == 0 then\n"
         "      for _, k in pairs(kept) do assert(k[2] == 'u' .. k[3] and k[1] == 'k') end\n"
         "    end\n"
         "  end\n"
         "  collectgarbage()\n"
         "  for _, k in pairs(kept) do assert(k[2] == 'u' .. k[3]) end\n"
         "end\n"
         "collectgarbage('incremental') collectgarbage('setpause', 200) collectgarbage('setstepmul', 100)");
  CHECK(registry_holds(L, rt_memo));
  done(L);
  /* the registry's cache swapped for another userdata (the old one kept alive): a
   * string the cache would have to take now raises, in a tuple and in a map (a
   * fresh state: the halves above ended bypassed, and a bypassed half takes nothing) */
  L = new_state();
  run(L, "for i = 1, 3 do assert(rtm({'ping', i})[1] == 'ping' and rtm({a = i, b = 'x'}).b == 'x') end");
  CHECK(rt_memo != NULL);
  run(L, "local reg = debug.getregistry()\n"
         "for k, v in pairs(reg) do\n"
         "  if type(k) == 'userdata' and type(v) == 'userdata' and v ~= io.stdout then\n"
         "    CACHE_KEY, CACHE = k, v reg[k] = io.stdout\n"
         "  end\n"
         "end\n"
         "assert(CACHE)\n"
         "local ok, err = pcall(rtm, {'never seen before', 1})\n"
         "assert(not ok and err:find('string cache was replaced'), err)\n"
         "ok, err = pcall(rtm, {['never seen as a key'] = 1})\n"
         "assert(not ok and err:find('string cache was replaced'), err)\n"
         "reg[CACHE_KEY] = CACHE\n"
         "assert(rtm({'never seen before', 1})[1] == 'never seen before')");
  done(L);
}

/* The cache's memory of where a message's n-th string was in the last one (the
 * slot tried before the hash, decode.c's `at`), as a process's receive uses it:
 * one shape again and again (every string found by its place); those places
 * taken over by other strings of the same lengths (the try must compare the
 * bytes); two shapes taking turns, with a key's rank moving; a message with more
 * strings than places are kept; tuples whose tag changes; and the halves each
 * bypassed by a stream of distinct strings in between. Each decoded value is
 * checked against what was sent. */
TEST(strings_decode_right_when_the_last_messages_places_change) {
  lua_State *L = new_state();
  run(L, "local function check(t) assert(deq(t, rtm(t))) end\n"
         "local rec = {alpha = 'one', beta = 'two', gamma = 'three', delta = 'fours'}\n"
         "for round = 1, 4 do\n"
         "  for _ = 1, 20 do check(rec) end\n"
         "  for i = 1, 400 do\n"   /* same lengths as rec's keys and values */
         "    local k, v = string.format('x%04d', i), string.format('%03d', i)\n"
         "    check({[k] = v, [string.format('y%04d', i)] = string.format('v%04d', i)})\n"
         "    check({k, v})\n"
         "  end\n"
         "  local r = rtm(rec)\n"
         "  assert(r.alpha == 'one' and r.beta == 'two' and r.gamma == 'three' and r.delta == 'fours')\n"
         "  for i = 1, 50 do\n"
         "    check({a = 'p', b = 'q'}) check({b = 'p', c = 'q', a = 'r'}) check({c = i, a = 'q'})\n"
         "    check({'ping', 'a', i}) check({'pong', 'a', 'ping'}) check({'a', 'ping', 'pong'})\n"
         "  end\n"
         "  local big = {} for i = 1, 100 do big['key' .. i] = 'value' .. i end\n"
         "  check(big) check(big)\n"
         "  local list = {} for i = 1, 100 do list[i] = 'item' .. (i % 70) end\n"
         "  check(list) check({list = list, big = big}) check(list)\n"
         "  if round % 2 == 0 then\n"   /* both halves bypassed for a while, then back */
         "    for i = 1, 600 do check({['distinct' .. i .. '_' .. round] = 'value' .. i .. '_' .. round}) end\n"
         "  end\n"
         "  collectgarbage()\n"
         "end\n"
         "local r = rtm(rec)\n"
         "assert(r.alpha == 'one' and r.beta == 'two' and r.gamma == 'three' and r.delta == 'fours')");
  done(L);
}

/* Hash pairs of a cached key and a plain value are written into the table's nodes
 * directly (luatab.c, mb_luatab_newkey): colliding keys, every kind of value,
 * mixed with pairs Lua inserts (other keys, nested tables), tables Lua then grows,
 * full collections and generational mode in between (where old tables are black),
 * a metamethod written so (the table's cache of absent metamethods is cleared),
 * and a message that names a key twice (the later value wins, one key). */
TEST(hash_pairs_written_in_place_read_back_as_lua_would_make_them) {
  lua_State *L = new_state();
  run(L, "for i = 1, 3 do\n"   /* first: before the cache's key half meets the keys below and turns off */
         "  local ok, err = pcall(function() return #setmetatable({}, rt({__len = true, n = 1})) end)\n"
         "  assert(not ok and err:find('call'), 'a __len written in place is seen: ' .. tostring(err))\n"
         "end\n"
         "local function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end\n"
         "local function check(t) local r = rt(t) assert(deq(t, r) and count(r) == count(t)) return r end\n"
         "local big = {} for i = 1, 300 do big['key' .. i] = ({i, i + 0.5, true, false, 'v' .. (i % 9)})[i % 5 + 1] end\n"
         "local mixed = {a = 1, b = 'x', [7] = 'seven', [2.5] = true, c = {1, 2}, d = {e = 'f'}, [false] = 0, g = 1.5}\n"
         "for round = 1, 6 do\n"
         "  if round == 4 then collectgarbage('generational') end\n"
         "  for i = 1, 200 do\n"
         "    check(big) check(mixed) check({type = 'call', id = i, ok = i % 2 == 0, x = i / 3})\n"
         "    local r = check({k1 = 1, k2 = 2, k3 = 3}) for j = 1, 50 do r['n' .. j] = j end\n"
         "    assert(r.k1 == 1 and r.k3 == 3 and r.n50 == 50 and count(r) == 53)\n"
         "  end\n"
         "  collectgarbage() collectgarbage()\n"
         "end\n"
         "collectgarbage('incremental')");
  /* {a = 1, a = 2} and {a = "x", a = "y"} as bytes, decoded again and again (the keys
   * come from the cache; the strings are new to it the first time), in a state
   * whose key cache the keys above have not turned off */
  done(L);
  L = new_state();
  static const char dup[] = "\x01\x08\x00\x02\x00\x00\x00\x05\x01" "a\x03\x02\x05\x01" "a\x03\x04";
  static const char dups[] = "\x01\x08\x00\x02\x00\x00\x00\x05\x01" "a\x05\x02" "x1\x05\x01" "a\x05\x02" "y2";
  for (int i = 0; i < 10; i++) {
    lua_settop(L, 0);
    CHECK(mb_decode(L, i % 2 ? dups : dup, (i % 2 ? sizeof dups : sizeof dup) - 1) == 0);
    if (i % 2) CHECK(lua_getfield(L, 1, "a") == LUA_TSTRING && strcmp(lua_tostring(L, -1), "y2") == 0);
    else CHECK(lua_getfield(L, 1, "a") == LUA_TNUMBER && lua_tointeger(L, -1) == 2);
    lua_pop(L, 1);
    lua_pushnil(L);
    CHECK(lua_next(L, 1));   /* one key, then none */
    lua_pop(L, 1);
    CHECK(lua_next(L, 1) == 0);
    lua_settop(L, 0);
  }
  done(L);
}

/* The per-thread scratch buffer: lent to one buffer at a time, detached into a
 * block of the exact length, given back after growing past what is kept. */
TEST(scratch_buffers_are_lent_once_and_detached_exactly) {
  lua_State *L = new_state();
  mb_buf a, b;
  CHECK(mb_buf_init_scratch(&a, RESERVE, 0) == 0 && a.scratch);
  CHECK(mb_buf_init_scratch(&b, RESERVE, 0) == 0 && !b.scratch); /* busy: a buffer of its own */
  CHECK(luaL_dostring(L, "return {1, 2, 'three', x = {4}}") == LUA_OK);
  CHECK(mb_encode(L, -1, &a, "msg", NULL, 0) == MB_ENC_OK);
  CHECK(mb_encode(L, -1, &b, "msg", NULL, 0) == MB_ENC_OK);
  CHECK(a.len == b.len && memcmp(a.data + RESERVE, b.data + RESERVE, a.len - RESERVE) == 0);
  char *lent = a.data;
  /* a small one goes into a signal block (sigblock.h), a larger one is cut to size */
  CHECK(mb_buf_detach(&a) == 0 && !a.scratch && a.data != lent &&
        a.cap == (mb_sigblock_class(a.len) ? mb_sigblock_size(mb_sigblock_class(a.len)) : a.len) &&
        a.block == mb_sigblock_class(a.len));
  CHECK(mb_buf_detach(&b) == 0 && !b.scratch);
  CHECK(memcmp(a.data + RESERVE, b.data + RESERVE, a.len - RESERVE) == 0);
  mb_buf_free(&a);
  mb_buf_free(&b);
  /* free again once a is done with it; a large message grows it, then it is let go */
  CHECK(luaL_dostring(L, "return string.rep('x', 200000)") == LUA_OK);
  CHECK(mb_buf_init_scratch(&a, RESERVE, 0) == 0 && a.scratch);
  CHECK(mb_encode(L, -1, &a, "msg", NULL, 0) == MB_ENC_OK && a.len > 200000);
  mb_buf_free(&a);
  CHECK(mb_buf_init_scratch(&a, RESERVE, 0) == 0 && a.scratch && a.cap < 200000);
  CHECK(mb_encode(L, 1, &a, "msg", NULL, 0) == MB_ENC_OK);
  CHECK(mb_buf_detach(&a) == 0);
  CHECK(mb_decode(L, a.data + RESERVE, a.len - RESERVE) == 0);
  lua_getglobal(L, "deq");
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -3);
  lua_call(L, 2, 1);
  CHECK(lua_toboolean(L, -1)); /* the detached copy decodes to the table sent */
  mb_buf_free(&a);
  lua_settop(L, 0);
  done(L);
}

static void *encode_on_a_thread(void *arg) {
  lua_State *L = arg;
  mb_buf b;
  CHECK(mb_buf_init_scratch(&b, RESERVE, 0) == 0 && b.scratch);
  CHECK(mb_encode(L, 1, &b, "msg", NULL, 0) == MB_ENC_OK);
  CHECK(mb_buf_detach(&b) == 0);
  mb_buf_free(&b);
  return NULL;
}

/* A thread that sent and ended leaves no scratch buffer behind (the ASan build's
 * leak check fails otherwise). */
TEST(scratch_buffers_are_freed_when_their_thread_ends) {
  lua_State *L = new_state();
  CHECK(luaL_dostring(L, "return {1, 2, 'three'}") == LUA_OK);
  for (int i = 0; i < 4; i++) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, encode_on_a_thread, L) == 0);
    CHECK(pthread_join(t, NULL) == 0);
  }
  lua_settop(L, 0);
  done(L);
}

TEST(integral_floats_stay_floats_in_every_table_position) {
  lua_State *L = new_state();
  run(L, "local small, big, m = {3.0, 4}, {}, {x = 2.0, [5] = 1.0}\n"
         "for i = 1, 70 do big[i] = i % 2 == 0 and i + 0.0 or i end\n"
         "local rs, rb, rm = rt(small), rt(big), rt(m)\n"
         "assert(math.type(rs[1]) == 'float' and math.type(rs[2]) == 'integer')\n"
         "for i = 1, 70 do assert(math.type(rb[i]) == math.type(big[i]) and rb[i] == big[i]) end\n"
         "assert(math.type(rm.x) == 'float' and math.type(rm[5]) == 'float')");
  done(L);
}

TEST(round_trips_strings_with_any_bytes) {
  lua_State *L = new_state();
  char all[256];
  for (int i = 0; i < 256; i++) all[i] = (char)i;
  lua_pushlstring(L, all, sizeof all);
  round_trip_top(L);
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  CHECK(n == sizeof all && memcmp(s, all, n) == 0);
  lua_pop(L, 1);
  run(L, "for _, s in ipairs{'', 'a', 'a\\0b', '\\0', ('x'):rep(127), ('y'):rep(128),\n"
         "                   ('z\\0'):rep(100000)} do\n"
         "  local c = rt(s) assert(c == s and #c == #s)\n"
         "end");
  done(L);
}

TEST(numbers_are_not_converted_to_strings) {
  lua_State *L = new_state();
  run(L, "local t = rt{1, 2.5, '3'}\n"
         "assert(math.type(t[1]) == 'integer' and math.type(t[2]) == 'float' and type(t[3]) == 'string')");
  lua_pushinteger(L, 42);
  mb_buf b;
  CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
  CHECK(lua_isinteger(L, -1) && lua_type(L, -1) == LUA_TNUMBER); /* still a number on the stack */
  mb_buf_free(&b);
  lua_pop(L, 1);
  done(L);
}

TEST(round_trips_nested_tables) {
  lua_State *L = new_state();
  run(L, "local t = {1, 'two', 3.0, {4, {5, {6}}}, name = 'x', sub = {a = {b = {c = true}}},\n"
         "           list = {{}, {{}}, {1, {2, {3}}}}}\n"
         "local c = rt(t)\n"
         "assert(deq(t, c))\n"
         "assert(c[4][2][2][1] == 6 and c.sub.a.b.c == true and #c.list == 3)");
  done(L);
}

TEST(round_trips_mixed_keys) {
  lua_State *L = new_state();
  run(L, "local tk, p, r = {k = 1}, pid(12), ref(99)\n"
         "local t = {10, 20, 30, [0] = 'zero', [-1] = 'neg', [1.5] = 'f', [true] = 't', [false] = 'f',\n"
         "           [tk] = 'table key', [p] = 'pid key', [r] = 'ref key', ['a b'] = 1, [''] = 2,\n"
         "           [math.maxinteger] = 'max', [math.mininteger] = 'min', [2^70] = 'bigf',\n"
         "           [-0.5] = {}, [100] = 'sparse'}\n"
         "local c = rt(t)\n"
         "assert(deq(t, c))\n"
         "assert(c[1] == 10 and c[3] == 30 and c[0] == 'zero' and c[1.5] == 'f' and c[true] == 't')\n"
         "assert(c[p] == 'pid key' and c[r] == 'ref key' and c[100] == 'sparse' and c[2^70] == 'bigf')\n"
         "local found for k, v in pairs(c) do if type(k) == 'table' then found = k end end\n"
         "assert(found and found ~= tk and found.k == 1 and c[found] == 'table key')");
  done(L);
}

TEST(round_trips_arrays_with_holes) {
  lua_State *L = new_state();
  run(L, "local t = {1, nil, 3}\n"
         "local c = rt(t)\n"
         "assert(c[1] == 1 and c[2] == nil and c[3] == 3)\n"
         "local u = {} for i = 1, 100 do u[i] = i end for i = 1, 100, 3 do u[i] = nil end\n"
         "assert(deq(u, rt(u)))\n"
         "local v = {n = 0} for i = 1, 1000 do v[i * i] = i end\n"
         "assert(deq(v, rt(v)))");
  done(L);
}

TEST(round_trips_arrays_kept_in_the_hash_part) {
  lua_State *L = new_state();
  /* built backwards, so 1..n live in the hash part and lua_next meets them in any order */
  run(L, "local t = {} for i = 50, 1, -1 do t[i] = i * 10 end t.x = 'x' t[-1] = -1\n"
         "local c = rt(t)\n"
         "assert(deq(t, c) and #c == 50 and c[50] == 500 and c.x == 'x')\n"
         "local u = {x = 1, y = 2, z = 3} for i = 1, 20 do u[i] = i end u[21] = nil\n"
         "assert(deq(u, rt(u)))\n"
         "local v = {} v.a = 1 v[2] = 2 v[1] = 1 v.b = 2 v[3] = 3\n"
         "assert(deq(v, rt(v)))\n"
         "local w = {} for i = 30, 1, -1 do w[i] = {i} end w.s = w[7]\n"
         "local cw = rt(w) assert(deq(w, cw) and rawequal(cw.s, cw[7]))");
  expect_refusal(L, "(function() local t = {} for i = 5, 1, -1 do t[i] = i end t[3] = print t.k = 1 return t end)()",
                 MB_ENC_BADVALUE, "cannot send a function (at msg[3])");
  expect_refusal(L, "{1, 2, nil, {f = print}}", MB_ENC_BADVALUE, "cannot send a function (at msg[4].f)");
  done(L);
}

TEST(pids_and_refs_keep_identity) {
  lua_State *L = new_state();
  mb_push_pid(L, 42);
  round_trip_top(L);
  mb_push_pid(L, 42);
  CHECK(lua_rawequal(L, -1, -2));
  mb_pid pid = 0;
  CHECK(mb_test_pid(L, -1, &pid) && pid == 42);
  lua_settop(L, 0);
  mb_push_ref(L, UINT64_MAX);
  round_trip_top(L);
  mb_push_ref(L, UINT64_MAX);
  CHECK(lua_rawequal(L, -1, -2));
  uint64_t ref = 0;
  CHECK(mb_test_ref(L, -1, &ref) && ref == UINT64_MAX);
  CHECK(!mb_test_pid(L, -1, NULL)); /* a ref is not a pid */
  lua_settop(L, 0);
  run(L, "local t = rt{pid(1), ref(1), [pid(2)] = ref(2)}\n"
         "assert(rawequal(t[1], pid(1)) and rawequal(t[2], ref(1)) and rawequal(t[pid(2)], ref(2)))");
  done(L);
}

TEST(pids_decode_into_another_state) {
  lua_State *L = new_state(), *L2 = new_state();
  mb_buf b;
  /* ids below 2^48 are light userdata; larger ones are interned boxes */
  CHECK(luaL_dostring(L, "return {pid(5), ref(6), 'x', pid(1 << 50), ref(1 << 48), ref((1 << 48) - 1)}") == LUA_OK);
  CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
  lua_pop(L, 1);
  CHECK_EQ_INT(mb_decode(L2, b.data + b.start, b.len - b.start), 0);
  CHECK(lua_rawgeti(L2, 1, 1) == LUA_TLIGHTUSERDATA);
  mb_push_pid(L2, 5);
  CHECK(lua_rawequal(L2, -1, -2));
  CHECK(lua_rawgeti(L2, 1, 2) == LUA_TLIGHTUSERDATA);
  mb_push_ref(L2, 6);
  CHECK(lua_rawequal(L2, -1, -2));
  CHECK(lua_rawgeti(L2, 1, 4) == LUA_TUSERDATA);
  mb_push_pid(L2, (mb_pid)1 << 50);
  CHECK(lua_rawequal(L2, -1, -2));
  CHECK(lua_rawgeti(L2, 1, 5) == LUA_TUSERDATA);
  mb_push_ref(L2, (uint64_t)1 << 48);
  CHECK(lua_rawequal(L2, -1, -2));
  CHECK(lua_rawgeti(L2, 1, 6) == LUA_TLIGHTUSERDATA);
  uint64_t id = 0;
  CHECK(mb_test_ref(L2, -1, &id) && id == ((uint64_t)1 << 48) - 1 && !mb_test_pid(L2, -1, NULL));
  lua_settop(L2, 0);
  /* tostring of either form, and of a light userdata that is no pid */
  CHECK(luaL_dostring(L2, "return tostring(pid(5)), tostring(pid(1 << 50)), tostring(ref(6))") == LUA_OK);
  CHECK_EQ_STR(lua_tostring(L2, 1), "<0.5>");
  CHECK_EQ_STR(lua_tostring(L2, 2), "<0.1125899906842624>");
  CHECK_EQ_STR(lua_tostring(L2, 3), "#Ref<0.6>");
  lua_settop(L2, 0);
  lua_pushlightuserdata(L2, &b);
  char want[64];
  snprintf(want, sizeof want, "userdata: %p", (void *)&b);
  CHECK_EQ_STR(luaL_tolstring(L2, -1, NULL), want);
  lua_settop(L2, 0);
  mb_buf_free(&b);
  done(L2);
  done(L);
}

/* The decoder writes an array's integers, floats, booleans and light pids and refs
 * into the new table's slots when the layout is trusted (and through the API under
 * MB_CODEC_PORTABLE=1): every kind, holes, runs cut by other kinds, integers of
 * every varint length, boxed ids, a nested table twice (a back-reference) read
 * back alike, through the API and after a full GC. */
TEST(arrays_decode_every_kind_of_element) {
  lua_State *L = new_state();
  run(L, "local big = {}\n"
         "for i = 1, 300 do big[i] = i * 37 - 5000 end\n"
         "big[150] = 'cut'; big[151] = 1.5; big[152] = true; big[153] = false\n"
         "big[154] = pid(9); big[155] = ref(10); big[156] = pid(1 << 50); big[157] = ref(1 << 60)\n"
         "big[158] = math.mininteger; big[159] = math.maxinteger; big[160] = -0.0; big[161] = 0/0\n"
         "big[162] = {1, 2, {3}}; big[163] = 64; big[164] = -65; big[165] = 8191; big[166] = -8193\n"
         "big[170] = nil; big[171] = nil\n"
         "big[172] = big[162]\n"
         "local c = rt(big)\n"
         "collectgarbage(); collectgarbage()\n"
         "assert(rawlen(c) == rawlen(big), rawlen(c))\n"
         "for i = 1, 300 do\n"
         "  local a, b = big[i], c[i]\n"
         "  if i == 161 then assert(b ~= b)\n"
         "  elseif i == 162 then assert(b[1] == 1 and b[2] == 2 and b[3][1] == 3 and b ~= a)\n"
         "  elseif i == 172 then assert(rawequal(b, c[162]))\n"
         "  elseif i == 160 then assert(b == 0 and 1 / b < 0 and math.type(b) == 'float')\n"
         "  else assert(rawequal(a, b) and math.type(a) == math.type(b), i) end\n"
         "end\n"
         "local n = 0\n"
         "for k in pairs(c) do n = n + 1 end\n"
         "assert(n == 298, n)\n"
         "assert(rawequal(c[154], pid(9)) and rawequal(c[156], pid(1 << 50)) and tostring(c[155]) == '#Ref<0.10>')\n"
         "local only = rt({pid(3), ref(4), true, false, 7, 8.5, -1, 2})\n"   /* all in place */
         "assert(rawequal(only[1], pid(3)) and tostring(only[1]) == '<0.3>' and rawequal(only[2], ref(4)))\n"
         "assert(only[3] == true and only[4] == false and only[5] == 7 and only[6] == 8.5 and #only == 8)");
  done(L);
}

TEST(metatables_are_not_copied) {
  lua_State *L = new_state();
  run(L, "local t = setmetatable({1, x = 2}, {__index = function() return 'mt' end,\n"
         "                                     __len = function() return 99 end,\n"
         "                                     __pairs = function() error('no') end})\n"
         "local c = rt(t)\n"
         "assert(getmetatable(c) == nil and c[1] == 1 and c.x == 2 and c.y == nil and #c == 1)");
  done(L);
}

TEST(deep_equality_of_a_generated_message) {
  lua_State *L = new_state();
  run(L, "math.randomseed(7)\n"
         "local pool = {}\n"
         "local function gen(d)\n"
         "  local r = math.random(10)\n"
         "  if d > 3 or r <= 4 then\n"
         "    local s = math.random(8)\n"
         "    if s == 1 then return math.random(-1e9, 1e9) elseif s == 2 then return math.random() * 1e6\n"
         "    elseif s == 3 then return ('s'):rep(math.random(0, 40)) .. math.random(100)\n"
         "    elseif s == 4 then return math.random(2) == 1 elseif s == 5 then return pid(math.random(50))\n"
         "    elseif s == 6 then return ref(math.random(50)) elseif s == 7 and #pool > 0 then return pool[math.random(#pool)]\n"
         "    else return math.mininteger end\n"
         "  end\n"
         "  local t = {}\n"
         "  for i = 1, math.random(0, 6) do t[i] = gen(d + 1) end\n"
         "  for i = 1, math.random(0, 6) do\n"
         "    local k = gen(99)\n"
         "    -- table keys get distinct contents, so deq can pair them up unambiguously\n"
         "    if type(k) == 'table' then uid = (uid or 0) + 1 k = {uid, gen(d + 1)} end\n"
         "    t[k] = gen(d + 1)\n"
         "  end\n"
         "  if math.random(4) == 1 then pool[#pool + 1] = t end\n"
         "  return t\n"
         "end\n"
         "for i = 1, 200 do local v = gen(0) assert(deq(v, rt(v)), i) end");
  done(L);
}

/* ------------------------------------------------------------ sharing and cycles */

TEST(shared_subtables_stay_shared) {
  lua_State *L = new_state();
  run(L, "local s = {1, 2}\n"
         "local t = {a = s, b = s, list = {s, s}, [s] = s}\n"
         "local c = rt(t)\n"
         "assert(c.a ~= s and c.a[2] == 2)\n"
         "assert(rawequal(c.a, c.b) and rawequal(c.a, c.list[1]) and rawequal(c.a, c.list[2]))\n"
         "assert(rawequal(c[c.a], c.a))\n"
         "local n = 0 for k in pairs(c) do n = n + 1 end assert(n == 4)\n"
         "local d = {x = {}, y = {}} assert(not rawequal(rt(d).x, rt(d).y))");
  done(L);
}

TEST(shared_subtables_stay_shared_with_many_tables) {
  lua_State *L = new_state();
  /* Past the small array the seen set is a hash set; both paths must agree. */
  run(L, "local t, leaves = {}, {}\n"
         "for i = 1, 2000 do leaves[i] = {i} end\n"
         "for i = 1, 2000 do t[i] = {leaves[i], leaves[(i * 7) % 2000 + 1]} end\n"
         "local c = rt(t)\n"
         "assert(deq(t, c))\n"
         "for i = 1, 2000 do assert(rawequal(c[i][2], c[(i * 7) % 2000 + 1][1])) end");
  done(L);
}

TEST(header_flags_back_references_only_when_present) {
  lua_State *L = new_state();
  mb_buf b;
  CHECK(luaL_dostring(L, "return {{}, {}}") == LUA_OK);
  CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
  unsigned char plain = (unsigned char)b.data[b.start];
  mb_buf_free(&b);
  lua_pop(L, 1);
  CHECK(luaL_dostring(L, "local s = {} return {s, s}") == LUA_OK);
  CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
  unsigned char shared = (unsigned char)b.data[b.start];
  mb_buf_free(&b);
  lua_pop(L, 1);
  CHECK(plain != shared);
  CHECK((plain & 0x80) == 0 && (shared & 0x80) != 0);
  done(L);
}

TEST(cycles_are_refused_with_the_path) {
  lua_State *L = new_state();
  expect_refusal(L, "(function() local t = {} t.self = t return t end)()", MB_ENC_BADVALUE,
                 "cannot send a cycle (at msg.self)");
  expect_refusal(L, "(function() local t = {a = {1, {}}} t.a[2].back = t return t end)()",
                 MB_ENC_BADVALUE, "cannot send a cycle (at msg.a[2].back)");
  expect_refusal(L, "(function() local t = {} t[1] = {t} return t end)()", MB_ENC_BADVALUE,
                 "cannot send a cycle (at msg[1][1])");
  expect_refusal(L, "(function() local t = {} t[t] = 1 return t end)()", MB_ENC_BADVALUE,
                 "cannot send a cycle (at msg[table])");
  /* deep in the hash-set regime */
  expect_refusal(L, "(function() local t = {} for i = 1, 100 do t[i] = {} end t[100].up = t return t end)()",
                 MB_ENC_BADVALUE, "cannot send a cycle (at msg[100].up)");
  CHECK_EQ_INT(lua_gettop(L), 0);
  done(L);
}

/* ------------------------------------------------------------ refusals */

TEST(functions_are_refused_with_the_path) {
  lua_State *L = new_state();
  expect_refusal(L, "{1, {cb = print}}", MB_ENC_BADVALUE, "cannot send a function (at msg[2].cb)");
  expect_refusal(L, "print", MB_ENC_BADVALUE, "cannot send a function (at msg)");
  expect_refusal(L, "{[print] = 1}", MB_ENC_BADVALUE, "cannot send a function (at msg[function])");
  expect_refusal(L, "{a = {b = {c = {function() end}}}}", MB_ENC_BADVALUE,
                 "cannot send a function (at msg.a.b.c[1])");
  done(L);
}

TEST(coroutines_are_refused_with_the_path) {
  lua_State *L = new_state();
  expect_refusal(L, "{co = coroutine.create(print)}", MB_ENC_BADVALUE,
                 "cannot send a coroutine (at msg.co)");
  expect_refusal(L, "{coroutine.running()}", MB_ENC_BADVALUE, "cannot send a coroutine (at msg[1])");
  done(L);
}

TEST(foreign_userdata_is_refused_with_the_path) {
  lua_State *L = new_state();
  expect_refusal(L, "{x = io.stdout}", MB_ENC_BADVALUE, "cannot send a userdata (at msg.x)");
  mb_buf b;
  char err[256];
  lua_createtable(L, 0, 2);
  lua_newuserdatauv(L, 8, 0); /* same size as a pid, but no pid metatable */
  lua_setfield(L, -2, "x");
  CHECK_EQ_INT(encode_top(L, &b, 0, err, sizeof err), MB_ENC_BADVALUE);
  CHECK_EQ_STR(err, "cannot send a userdata (at msg.x)");
  mb_buf_free(&b);
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushlightuserdata(L, &b);
  lua_setfield(L, -2, "light");
  CHECK_EQ_INT(encode_top(L, &b, 0, err, sizeof err), MB_ENC_BADVALUE);
  CHECK_EQ_STR(err, "cannot send a userdata (at msg.light)");
  mb_buf_free(&b);
  lua_pop(L, 1);
  /* in the array part (read in place) too, and small integers made pointers:
   * only the two tags of term.h are pids and refs */
  void *foreign[] = { &b, (void *)1, (void *)5, (void *)(uintptr_t)UINT64_MAX,
                      (void *)(uintptr_t)(MB_LIGHT_PID - 1), (void *)(uintptr_t)(MB_LIGHT_REF << 1) };
  for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, 1);
    lua_rawseti(L, -2, 1);
    lua_pushlightuserdata(L, foreign[i]);
    lua_rawseti(L, -2, 2);
    CHECK_EQ_INT(encode_top(L, &b, 0, err, sizeof err), MB_ENC_BADVALUE);
    CHECK_EQ_STR(err, "cannot send a userdata (at msg[2])");
    mb_buf_free(&b);
    lua_rawgeti(L, -1, 2);
    CHECK(!mb_test_pid(L, -1, NULL) && !mb_test_ref(L, -1, NULL));
    lua_pop(L, 2);
  }
  done(L);
}

TEST(error_paths_quote_keys_like_lua) {
  lua_State *L = new_state();
  expect_refusal(L, "{['a b'] = print}", MB_ENC_BADVALUE, "cannot send a function (at msg[\"a b\"])");
  expect_refusal(L, "{['end'] = print}", MB_ENC_BADVALUE, "cannot send a function (at msg[\"end\"])");
  expect_refusal(L, "{['1x'] = print}", MB_ENC_BADVALUE, "cannot send a function (at msg[\"1x\"])");
  expect_refusal(L, "{_ok9 = print}", MB_ENC_BADVALUE, "cannot send a function (at msg._ok9)");
  expect_refusal(L, "{['q\"\\\\\\n\\0\\1'] = print}", MB_ENC_BADVALUE,
                 "cannot send a function (at msg[\"q\\\"\\\\\\n\\0\\1\"])");
  expect_refusal(L, "{[1.5] = print}", MB_ENC_BADVALUE, "cannot send a function (at msg[1.5])");
  expect_refusal(L, "{[-3] = print}", MB_ENC_BADVALUE, "cannot send a function (at msg[-3])");
  expect_refusal(L, "{[true] = print}", MB_ENC_BADVALUE, "cannot send a function (at msg[true])");
  expect_refusal(L, "{[pid(1)] = print}", MB_ENC_BADVALUE, "cannot send a function (at msg[userdata])");
  expect_refusal(L, "{[{}] = print}", MB_ENC_BADVALUE, "cannot send a function (at msg[table])");
  expect_refusal(L, "{[{f = print}] = 1}", MB_ENC_BADVALUE, "cannot send a function (at msg[table].f)");
  done(L);
}

TEST(error_messages_are_truncated_to_errlen) {
  lua_State *L = new_state();
  mb_buf b;
  char err[16];
  memset(err, 'Z', sizeof err);
  CHECK(luaL_dostring(L, "return {a = {b = {c = print}}}") == LUA_OK);
  CHECK_EQ_INT(encode_top(L, &b, 0, err, 10), MB_ENC_BADVALUE);
  CHECK_EQ_STR(err, "cannot se");
  CHECK(err[10] == 'Z');
  mb_buf_free(&b);
  CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_BADVALUE); /* no err buffer at all */
  mb_buf_free(&b);
  lua_pop(L, 1);
  done(L);
}

TEST(failures_leave_stack_and_buffer_as_found) {
  lua_State *L = new_state();
  const char *bad[] = {
    "{1, 2, {3, {4, print}}}", "{a = {b = {c = {d = coroutine.create(print)}}}}",
    "(function() local t = {} for i = 1, 50 do t['k' .. i] = {{}} end t.k25[1].x = io.stdout return t end)()",
    "(function() local t = {} t[{1, {t}}] = 1 return t end)()",
    "(function() local t = {} local c = t for i = 1, 150 do c.n = {} c = c.n end return t end)()",
    "{('x'):rep(5000)}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char chunk[256];
    snprintf(chunk, sizeof chunk, "return 'below', %s", bad[i]);
    CHECK(luaL_dostring(L, chunk) == LUA_OK);
    CHECK_EQ_INT(lua_gettop(L), 2);
    mb_buf b;
    CHECK(mb_buf_init(&b, RESERVE, 1000) == 0);
    CHECK_EQ_INT(mb_encode(L, 1, &b, "msg", NULL, 0), MB_ENC_OK); /* something already in the buffer */
    size_t len = b.len;
    char err[256];
    CHECK(mb_encode(L, 2, &b, "msg", err, sizeof err) != MB_ENC_OK);
    CHECK_EQ_INT(lua_gettop(L), 2);
    CHECK_EQ_INT(b.len, len);
    CHECK(lua_type(L, 1) == LUA_TSTRING && lua_type(L, 2) == LUA_TTABLE);
    mb_buf_free(&b);
    lua_settop(L, 0);
  }
  done(L);
}

TEST(too_large_is_refused) {
  lua_State *L = new_state();
  mb_buf b;
  char err[256];
  lua_pushlstring(L, "0123456789", 10); /* header, tag, length, 10 bytes: 13 */
  CHECK_EQ_INT(encode_top(L, &b, 12, err, sizeof err), MB_ENC_TOOBIG);
  CHECK_EQ_STR(err, "message too large");
  mb_buf_free(&b);
  CHECK_EQ_INT(encode_top(L, &b, 13, err, sizeof err), MB_ENC_OK); /* exactly at the limit */
  CHECK_EQ_INT(b.len - b.start, 13);
  mb_buf_free(&b);
  lua_pop(L, 1);
  lua_pushinteger(L, 1); /* a short value must not be refused for a varint's worst case */
  CHECK_EQ_INT(encode_top(L, &b, 3, err, sizeof err), MB_ENC_OK);
  mb_buf_free(&b);
  lua_pop(L, 1);
  done(L);
}

TEST(too_large_fails_before_allocating_it_all) {
  lua_State *L = new_state();
  mb_buf b;
  char err[256];
  CHECK(luaL_dostring(L, "local t = {} for i = 1, 200000 do t[i] = ('v'):rep(20) .. i end return t") == LUA_OK);
  CHECK_EQ_INT(encode_top(L, &b, 4096, err, sizeof err), MB_ENC_TOOBIG);
  CHECK_EQ_STR(err, "message too large");
  CHECK(b.cap <= b.start + 4096);
  mb_buf_free(&b);
  CHECK_EQ_INT(encode_top(L, &b, 0, err, sizeof err), MB_ENC_OK); /* unbounded it fits */
  CHECK(b.len - b.start > 4000000);
  mb_buf_free(&b);
  lua_pop(L, 1);
  done(L);
}

TEST(too_deep_is_refused) {
  lua_State *L = new_state();
  mb_buf b;
  char err[512];
  char chunk[256];
  snprintf(chunk, sizeof chunk,
           "local t = {} local c = t for i = 2, %d do c[1] = {} c = c[1] end c[1] = 'leaf' return t",
           MB_CODEC_MAXDEPTH);
  CHECK(luaL_dostring(L, chunk) == LUA_OK);
  CHECK_EQ_INT(encode_top(L, &b, 0, err, sizeof err), MB_ENC_OK);
  CHECK_EQ_INT(mb_decode(L, b.data + b.start, b.len - b.start), 0); /* the decoder takes the same depth */
  mb_buf_free(&b);
  lua_settop(L, 0);
  snprintf(chunk, sizeof chunk,
           "local t = {} local c = t for i = 2, %d do c.d = {} c = c.d end return t", MB_CODEC_MAXDEPTH + 1);
  CHECK(luaL_dostring(L, chunk) == LUA_OK);
  CHECK_EQ_INT(encode_top(L, &b, 0, err, sizeof err), MB_ENC_DEEP);
  CHECK(strncmp(err, "message nested too deeply (at msg.d.d.d", 39) == 0);
  CHECK(err[strlen(err) - 1] == ')');
  mb_buf_free(&b);
  lua_settop(L, 0);
  done(L);
}

/* ------------------------------------------------------------ values, strings, reasons */

TEST(encode_values_keeps_nils_and_the_count) {
  lua_State *L = new_state();
  mb_buf b;
  char err[256];
  lua_pushnil(L);
  lua_pushinteger(L, 1);
  lua_pushnil(L);
  lua_pushnil(L);
  CHECK(mb_buf_init(&b, RESERVE, 0) == 0);
  CHECK_EQ_INT(mb_encode_values(L, 1, 4, &b, err, sizeof err), MB_ENC_OK);
  CHECK_EQ_INT(lua_gettop(L), 4);
  lua_settop(L, 0);
  CHECK_EQ_INT(mb_decode_values(L, b.data + b.start, b.len - b.start), 4);
  CHECK_EQ_INT(lua_gettop(L), 4);
  CHECK(lua_isnil(L, 1) && lua_tointeger(L, 2) == 1 && lua_isnil(L, 3) && lua_isnil(L, 4));
  CHECK_EQ_INT(mb_decode(L, b.data + b.start, b.len - b.start), -1); /* not a single value */
  lua_settop(L, 0);
  mb_buf_free(&b);

  CHECK(mb_buf_init(&b, 0, 0) == 0);
  CHECK_EQ_INT(mb_encode_values(L, 1, 0, &b, err, sizeof err), MB_ENC_OK);
  CHECK_EQ_INT(mb_decode_values(L, b.data, b.len), 0);
  CHECK_EQ_INT(lua_gettop(L), 0);
  mb_buf_free(&b);
  done(L);
}

TEST(encode_values_names_args_in_paths) {
  lua_State *L = new_state();
  mb_buf b;
  char err[256];
  CHECK(luaL_dostring(L, "return 1, {f = print}") == LUA_OK);
  CHECK(mb_buf_init(&b, RESERVE, 0) == 0);
  CHECK_EQ_INT(mb_encode_values(L, -2, 2, &b, err, sizeof err), MB_ENC_BADVALUE);
  CHECK_EQ_STR(err, "cannot send a function (at args[2].f)");
  CHECK_EQ_INT(lua_gettop(L), 2);
  CHECK_EQ_INT(b.len, b.start);
  lua_settop(L, 0);
  lua_pushcfunction(L, l_pid);
  CHECK_EQ_INT(mb_encode_values(L, 1, 1, &b, err, sizeof err), MB_ENC_BADVALUE);
  CHECK_EQ_STR(err, "cannot send a function (at args[1])");
  lua_settop(L, 0);
  mb_buf_free(&b);
  done(L);
}

TEST(encode_values_shares_tables_across_values) {
  lua_State *L = new_state();
  mb_buf b;
  CHECK(luaL_dostring(L, "local s = {1} return s, {s}, s") == LUA_OK);
  CHECK(mb_buf_init(&b, 0, 0) == 0);
  CHECK_EQ_INT(mb_encode_values(L, 1, 3, &b, NULL, 0), MB_ENC_OK);
  lua_settop(L, 0);
  CHECK_EQ_INT(mb_decode_values(L, b.data, b.len), 3);
  CHECK(lua_rawgeti(L, 2, 1) == LUA_TTABLE);
  CHECK(lua_rawequal(L, 1, -1) && lua_rawequal(L, 1, 3));
  lua_settop(L, 0);
  mb_buf_free(&b);
  done(L);
}

TEST(encode_string_writes_a_string_value) {
  lua_State *L = new_state();
  mb_buf b;
  CHECK(mb_buf_init(&b, RESERVE, 0) == 0);
  for (int i = 0; i < RESERVE; i++) CHECK(b.data[i] == 0);
  CHECK_EQ_INT(mb_encode_string(&b, "noproc", 6), MB_ENC_OK);
  CHECK(mb_encoded_is_string(b.data + b.start, b.len - b.start, "noproc"));
  CHECK(!mb_encoded_is_string(b.data + b.start, b.len - b.start, "noproc2"));
  CHECK(!mb_encoded_is_string(b.data + b.start, b.len - b.start, "noprod"));
  CHECK(!mb_encoded_is_string(b.data + b.start, b.len - b.start - 1, "noproc"));
  CHECK_EQ_INT(mb_decode(L, b.data + b.start, b.len - b.start), 0);
  CHECK_EQ_STR(lua_tostring(L, -1), "noproc");
  lua_pop(L, 1);
  mb_buf_free(&b);
  CHECK(mb_buf_init(&b, 0, 4) == 0);
  CHECK_EQ_INT(mb_encode_string(&b, "toolong", 7), MB_ENC_TOOBIG);
  CHECK_EQ_INT(b.len, 0);
  CHECK_EQ_INT(mb_encode_string(&b, NULL, 0), MB_ENC_OK);
  CHECK(mb_encoded_is_string(b.data, b.len, ""));
  mb_buf_free(&b);
  lua_pushliteral(L, "noproc");
  CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
  CHECK(mb_encoded_is_string(b.data + b.start, b.len - b.start, "noproc"));
  mb_buf_free(&b);
  lua_pop(L, 1);
  done(L);
}

TEST(reason_is_normal_cases) {
  static const struct { const char *expr; int normal; } cases[] = {
    {"'normal'", 1}, {"'shutdown'", 1}, {"{'shutdown', 5}", 1}, {"{'shutdown', {why = {1, 2}}}", 1},
    {"{'shutdown', 'x'}", 1}, {"{'shutdown', pid(3)}", 1},
    {"(function() local s = {} return {'shutdown', {s, s}} end)()", 1},
    {"'killed'", 0}, {"'Normal'", 0}, {"'normal\\0'", 0}, {"'shutdow'", 0}, {"{'shutdown'}", 0},
    {"{'shutdown', 1, 2}", 0}, {"{'shutdown', 1, k = 1}", 0}, {"{'normal', 1}", 0},
    {"{'shutdown', nil, 1}", 0}, {"{shutdown = 1}", 0}, {"5", 0}, {"nil", 0}, {"true", 0},
    {"{{'shutdown', 1}}", 0},
  };
  lua_State *L = new_state();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char chunk[256];
    mb_buf b;
    snprintf(chunk, sizeof chunk, "return %s", cases[i].expr);
    CHECK(luaL_dostring(L, chunk) == LUA_OK);
    CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
    if (mb_reason_is_normal(b.data + b.start, b.len - b.start) != cases[i].normal) {
      fprintf(stderr, "reason %s\n", cases[i].expr);
      CHECK(0);
    }
    /* never true on a cut or padded encoding */
    for (size_t n = 0; n < b.len - b.start; n++) CHECK(!mb_reason_is_normal(b.data + b.start, n));
    mb_buf_free(&b);
    lua_pop(L, 1);
  }
  CHECK(!mb_reason_is_normal(NULL, 0));
  done(L);
}

/* ------------------------------------------------------------ hostile input */

TEST(decoder_rejects_malformed_encodings) {
  static const struct { const char *bytes; size_t len; } bad[] = {
    {"", 0},                                   /* empty */
    {"\x02\x00", 2},                           /* unknown version */
    {"\x41\x00", 2},                           /* unknown flag */
    {"\x01", 1},                               /* no value */
    {"\x01\x00\x00", 3},                       /* trailing garbage */
    {"\x01\x0a", 2},                           /* unknown tag */
    {"\x01\xff", 2},                           /* unknown tag */
    {"\x01\x03\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", 13}, /* varint over 10 bytes */
    {"\x01\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 11}, /* varint over 64 bits */
    {"\x01\x05\x05" "abcd", 7},                /* string longer than the buffer */
    {"\x01\x05\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12}, /* huge string length */
    {"\x01\x04\x00\x00\x00", 5},               /* short float */
    {"\x01\x08\x05\x00\x00\x00\x00\x00", 8},   /* array count past the end */
    {"\x01\x08\x00\xff\xff\xff\x7f", 7},       /* hash count past the end */
    {"\x01\x08\x00\x01\x00\x00\x00\x00\x02", 9},  /* nil key */
    {"\x01\x08\x00\x01\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\xf8\x7f\x02", 17}, /* NaN key */
    {"\x01\x08\x01\x00\x00\x00\x00\x09\x00", 9},  /* back-reference without the flag */
    {"\x81\x08\x01\x00\x00\x00\x00\x09\x00", 9},  /* back-reference to its own ancestor */
    {"\x81\x08\x01\x00\x00\x00\x00\x09\x01", 9},  /* back-reference past the tables seen */
    {"\x81\x09\x00", 3},                          /* back-reference before any table */
  };
  lua_State *L = new_state();
  lua_pushliteral(L, "sentinel");
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (mb_decode(L, bad[i].bytes, bad[i].len) != -1) {
      fprintf(stderr, "case %zu decoded\n", i);
      CHECK(0);
    }
    CHECK_EQ_INT(lua_gettop(L), 1);
  }
  /* and the well-formed neighbours of a few of them decode */
  CHECK_EQ_INT(mb_decode(L, "\x01\x08\x00\x01\x00\x00\x00\x02\x00", 9), 0); /* {[true] = nil} */
  CHECK_EQ_INT(mb_decode(L, "\x81\x08\x02\x00\x00\x00\x00\x08\x00\x00\x00\x00\x00\x09\x01", 15), 0);
  CHECK(lua_rawgeti(L, -1, 1) == LUA_TTABLE && lua_rawgeti(L, -2, 2) == LUA_TTABLE);
  CHECK(lua_rawequal(L, -1, -2));
  lua_settop(L, 1);
  CHECK_EQ_INT(mb_decode_values(L, "\x01\x05\x00", 3), -1); /* count past the end */
  CHECK_EQ_INT(mb_decode_values(L, "\x01\x01\x00\x00", 4), -1); /* trailing garbage */
  CHECK_EQ_INT(lua_gettop(L), 1);
  lua_settop(L, 0);
  done(L);
}

TEST(decoder_rejects_nesting_past_the_limit) {
  lua_State *L = new_state();
  /* MAXDEPTH + 1 nested one-element arrays, written by hand */
  size_t n = MB_CODEC_MAXDEPTH + 1, len = 1 + 6 * n + 1;
  char *p = malloc(len), *w = p;
  *w++ = 0x01;
  for (size_t i = 0; i < n; i++) {
    memcpy(w, "\x08\x01\x00\x00\x00\x00", 6);
    w += 6;
  }
  *w++ = 0x00;
  CHECK_EQ_INT(mb_decode(L, p, len), -1);
  CHECK_EQ_INT(lua_gettop(L), 0);
  /* p + 6 is the last byte of the outermost table: made a header, one level fewer follows */
  CHECK_EQ_INT(mb_decode(L, p + 6, len - 6), -1);
  p[6] = 0x01;
  CHECK_EQ_INT(mb_decode(L, p + 6, len - 6), 0); /* one level fewer is fine */
  lua_settop(L, 0);
  free(p);
  done(L);
}

TEST(decoder_survives_every_prefix) {
  lua_State *L = new_state();
  for (int values = 0; values <= 1; values++)
    for (int i = 0; i < NSAMPLES; i++) {
      mb_buf b;
      encode_sample(L, i, values, &b);
      for (size_t n = 0; n < b.len; n++) {
        char *copy = malloc(n ? n : 1); /* exact size, so ASan sees any overread */
        memcpy(copy, b.data, n);
        CHECK(!decode_protected(L, copy, n, values));
        free(copy);
      }
      CHECK(decode_protected(L, b.data, b.len, values));
      mb_buf_free(&b);
    }
  done(L);
}

TEST(decoder_survives_random_buffers) {
  lua_State *L = new_state();
  int decoded = 0;
  for (int i = 0; i < 200000; i++) {
    size_t len = rnd() % 64;
    char *p = malloc(len ? len : 1);
    for (size_t j = 0; j < len; j++) p[j] = (char)rnd();
    /* mostly a valid header and small tags, so the walk gets past the first byte */
    if (len && rnd() % 4) p[0] = (rnd() & 1) ? 0x01 : (char)0x81;
    if (rnd() % 2)
      for (size_t j = 1; j < len; j++)
        if (rnd() % 3) p[j] = (char)(rnd() % 11);
    decoded += decode_protected(L, p, len, (int)(rnd() % 5 == 0));
    free(p);
  }
  CHECK(decoded > 0);
  lua_settop(L, 0);
  done(L);
}

TEST(decoder_survives_single_byte_mutations) {
  lua_State *L = new_state();
  for (int values = 0; values <= 1; values++)
    for (int i = 0; i < NSAMPLES; i++) {
      mb_buf b;
      encode_sample(L, i, values, &b);
      char *copy = malloc(b.len);
      for (size_t pos = 0; pos < b.len; pos++) {
        int tries = b.len < 64 ? 256 : 8;
        for (int t = 0; t < tries; t++) {
          memcpy(copy, b.data, b.len);
          copy[pos] = (char)(tries == 256 ? t : (int)rnd());
          decode_protected(L, copy, b.len, values);
        }
      }
      free(copy);
      mb_buf_free(&b);
    }
  done(L);
}

/* An allocator with a budget, to make Lua fail mid-decode. */
typedef struct budget { size_t used, max; } budget;
static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  budget *bu = ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    bu->used -= old;
    free(ptr);
    return NULL;
  }
  if (nsize > old && bu->used + (nsize - old) > bu->max) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) bu->used = bu->used - old + nsize;
  return p;
}

TEST(decoder_raises_cleanly_when_memory_runs_out) {
  lua_State *L = new_state();
  mb_buf b;
  CHECK(luaL_dostring(L, "local t = {} for i = 1, 2000 do t[i] = {('x'):rep(100) .. i, k = i} end return t") == LUA_OK);
  CHECK_EQ_INT(encode_top(L, &b, 0, NULL, 0), MB_ENC_OK);
  lua_settop(L, 0);
  budget bu = {0, 1 << 30};
  lua_State *L2 = lua_newstate(budget_alloc, &bu);
  CHECK(L2 != NULL);
  luaL_openlibs(L2);
  lua_gc(L2, LUA_GCCOLLECT);
  bu.max = bu.used + 64 * 1024; /* far less than the decoded copy needs */
  blob bl = {b.data + b.start, b.len - b.start, 0};
  lua_pushcfunction(L2, l_decode_blob);
  lua_pushlightuserdata(L2, &bl);
  CHECK_EQ_INT(lua_pcall(L2, 1, 1, 0), LUA_ERRMEM);
  lua_settop(L2, 0);
  bu.max = 1 << 30;
  lua_pushcfunction(L2, l_decode_blob);
  lua_pushlightuserdata(L2, &bl);
  CHECK_EQ_INT(lua_pcall(L2, 1, 1, 0), LUA_OK); /* and works again with room */
  CHECK(lua_toboolean(L2, -1));
  lua_settop(L2, 0);
  mb_buf_free(&b);
  done(L2);
  done(L);
}

/* ---- the tuple path's black check (dec_tuple) ----
 * A string the cache holds goes into a new tuple's array slot without a barrier
 * only while the table is not black. This drives Lua 5.4's incremental collector
 * so that the step run inside the tuple's lua_createtable traverses the decoding
 * thread and then the new table (black) while the string is white (only the cache
 * holds it); then the string leaves the cache and the cycle ends. With the check,
 * lua_rawseti's barrier keeps the string; without it the table keeps a freed string.
 * Freed blocks are poisoned and kept until the state closes, so a freed string
 * reads back wrong, with or without ASan. */
typedef struct { void **v; size_t n, cap; } quarantine;
static void *q_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  quarantine *q = ud;
  if (nsize == 0) {
    if (!p) return NULL;
    memset(p, 0xAA, osize);
    if (q->n == q->cap) {
      size_t cap = q->cap ? 2 * q->cap : 4096;
      void **v = realloc(q->v, cap * sizeof *v);
      if (!v) { free(p); return NULL; }   /* no room to keep it: freed at once */
      q->v = v;
      q->cap = cap;
    }
    q->v[q->n++] = p;
    return NULL;
  }
  if (!p) return malloc(nsize);
  void *np = malloc(nsize);   /* a move is a free of the old block: it too is kept, poisoned */
  if (!np) return NULL;
  memcpy(np, p, osize < nsize ? osize : nsize);
  q_alloc(ud, p, osize, 0);
  return np;
}

/* Encode the tuple {s} (s[0..n)) into a fresh buffer: its bytes and length. */
static char *tuple_of(lua_State *L, const char *s, size_t n, size_t *len) {
  mb_buf b;
  char err[256];
  lua_createtable(L, 1, 0);
  lua_pushlstring(L, s, n);
  lua_rawseti(L, -2, 1);
  CHECK(mb_buf_init(&b, RESERVE, 0) == 0);
  CHECK(mb_encode(L, -1, &b, "msg", err, sizeof err) == MB_ENC_OK);
  lua_pop(L, 1);
  *len = b.len - b.start;
  char *out = malloc(*len);
  CHECK(out != NULL);
  memcpy(out, b.data + b.start, *len);
  mb_buf_free(&b);
  return out;
}

static const char black_key = 0;

TEST(a_cached_string_never_goes_into_a_black_tuple_without_a_barrier) {
  if (mb_luatab_trusted() != 1) return;   /* no tuple path (MB_CODEC_PORTABLE) */
  quarantine q = { NULL, 0, 0 };
  lua_State *L = lua_newstate(q_alloc, &q);
  CHECK(L != NULL);
  void *memo = NULL;
  static const char s[] = "only the cache holds this";
  size_t len, n;
  char *msg;
  /* the cache, made by a first string */
  msg = tuple_of(L, "warm", 4, &len);
  CHECK(mb_decode_in(L, msg, len, &memo) == 0 && memo != NULL);
  lua_pop(L, 1);
  free(msg);
  /* ballast, traversed one table per step: the cycle stays in its propagate phase */
  lua_createtable(L, 20000, 0);
  for (int i = 1; i <= 20000; i++) { lua_createtable(L, 1, 0); lua_rawseti(L, -2, i); }
  int ballast = luaL_ref(L, LUA_REGISTRYINDEX);
  /* a userdata without user values: black as soon as the registry is traversed */
  lua_newuserdatauv(L, 1, 0);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &black_key);
  msg = tuple_of(L, s, sizeof s - 1, &len);
  /* steps of one object each (stepsize 2^1 bytes: no credit), run only by hand */
  lua_gc(L, LUA_GCCOLLECT, 0);
  lua_gc(L, LUA_GCINC, 200, 100, 1);
  lua_gc(L, LUA_GCSTOP, 0);
  for (int i = 0; i < 5000; i++) lua_gc(L, LUA_GCSTEP, 0);   /* a new cycle: the registry, part of the ballast */
  /* s joins the cache after the cycle began: white, and only the cache holds it */
  CHECK(mb_decode_in(L, msg, len, &memo) == 0);
  lua_pop(L, 1);
  /* m = {co}, made the userdata's metatable: the forward barrier puts m on top of
   * the gray list, so the next step traverses m, then co, then co's new table */
  lua_State *co = lua_newthread(L);
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &black_key);
  lua_pushvalue(L, -2);
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  /* the step runs inside dec_tuple's lua_createtable: the table is black when s,
   * a cache hit, is to be written */
  lua_gc(L, LUA_GCRESTART, 0);
  CHECK(mb_decode_in(co, msg, len, &memo) == 0);
  lua_gc(L, LUA_GCSTOP, 0);
  lua_xmove(co, L, 1);   /* L: co, m, t */
  /* s leaves the cache: a few hundred other strings (under the hit rate's window) */
  for (int i = 0; i < 200; i++) {
    char other[32];
    int k = snprintf(other, sizeof other, "%d: evict", i * 7919);
    char *e = tuple_of(L, other, (size_t)k, &n);
    CHECK(mb_decode_in(L, e, n, &memo) == 0);
    lua_pop(L, 1);
    free(e);
  }
  /* the cycle ends, step by step (a full collection would start afresh) */
  while (!lua_gc(L, LUA_GCSTEP, 0)) {}
  lua_rawgeti(L, -1, 1);
  const char *got = lua_tolstring(L, -1, &n);
  CHECK(n == sizeof s - 1 && memcmp(got, s, n) == 0);
  lua_pushlstring(L, s, sizeof s - 1);
  CHECK(lua_rawequal(L, -1, -2));   /* still the interned string */
  lua_settop(L, 0);
  luaL_unref(L, LUA_REGISTRYINDEX, ballast);
  free(msg);
  lua_close(L);
  for (size_t i = 0; i < q.n; i++) free(q.v[i]);
  free(q.v);
}

TEST_MAIN(
  CHECK_CASE(round_trips_nil_and_booleans),
  CHECK_CASE(round_trips_integers),
  CHECK_CASE(small_integers_encode_in_two_bytes),
  CHECK_CASE(scalar_encoding_is_the_encoders_and_declines_the_rest),
  CHECK_CASE(tuple_encoding_is_the_encoders_and_declines_the_rest),
  CHECK_CASE(short_tuples_decode_to_what_was_sent),
  CHECK_CASE(round_trips_floats_keeping_the_subtype),
  CHECK_CASE(integral_floats_stay_floats_in_every_table_position),
  CHECK_CASE(layout_probe_trusts_this_lua_unless_told_not_to),
  CHECK_CASE(a_mismatch_in_the_probe_turns_the_reader_off),
  CHECK_CASE(keys_past_alimit_are_kept_every_way),
  CHECK_CASE(a_table_read_again_through_the_api_is_written_once),
  CHECK_CASE(round_trips_every_array_and_hash_layout),
  CHECK_CASE(strings_decode_right_through_the_string_cache),
  CHECK_CASE(strings_decode_right_with_the_cache_kept_by_the_caller),
  CHECK_CASE(strings_decode_right_when_the_last_messages_places_change),
  CHECK_CASE(a_cached_string_never_goes_into_a_black_tuple_without_a_barrier),
  CHECK_CASE(hash_pairs_written_in_place_read_back_as_lua_would_make_them),
  CHECK_CASE(scratch_buffers_are_lent_once_and_detached_exactly),
  CHECK_CASE(scratch_buffers_are_freed_when_their_thread_ends),
  CHECK_CASE(round_trips_strings_with_any_bytes),
  CHECK_CASE(numbers_are_not_converted_to_strings),
  CHECK_CASE(round_trips_nested_tables),
  CHECK_CASE(round_trips_mixed_keys),
  CHECK_CASE(round_trips_arrays_with_holes),
  CHECK_CASE(round_trips_arrays_kept_in_the_hash_part),
  CHECK_CASE(arrays_continued_in_the_hash_keep_the_keys_before_n),
  CHECK_CASE(pids_and_refs_keep_identity),
  CHECK_CASE(pids_decode_into_another_state),
  CHECK_CASE(arrays_decode_every_kind_of_element),
  CHECK_CASE(metatables_are_not_copied),
  CHECK_CASE(deep_equality_of_a_generated_message),
  CHECK_CASE(shared_subtables_stay_shared),
  CHECK_CASE(shared_subtables_stay_shared_with_many_tables),
  CHECK_CASE(header_flags_back_references_only_when_present),
  CHECK_CASE(cycles_are_refused_with_the_path),
  CHECK_CASE(functions_are_refused_with_the_path),
  CHECK_CASE(coroutines_are_refused_with_the_path),
  CHECK_CASE(foreign_userdata_is_refused_with_the_path),
  CHECK_CASE(error_paths_quote_keys_like_lua),
  CHECK_CASE(error_messages_are_truncated_to_errlen),
  CHECK_CASE(failures_leave_stack_and_buffer_as_found),
  CHECK_CASE(too_large_is_refused),
  CHECK_CASE(too_large_fails_before_allocating_it_all),
  CHECK_CASE(too_deep_is_refused),
  CHECK_CASE(encode_values_keeps_nils_and_the_count),
  CHECK_CASE(encode_values_names_args_in_paths),
  CHECK_CASE(encode_values_shares_tables_across_values),
  CHECK_CASE(encode_string_writes_a_string_value),
  CHECK_CASE(reason_is_normal_cases),
  CHECK_CASE(decoder_rejects_malformed_encodings),
  CHECK_CASE(decoder_rejects_nesting_past_the_limit),
  CHECK_CASE(decoder_survives_every_prefix),
  CHECK_CASE(decoder_survives_random_buffers),
  CHECK_CASE(decoder_survives_single_byte_mutations),
  CHECK_CASE(decoder_raises_cleanly_when_memory_runs_out))
