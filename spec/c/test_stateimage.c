/* test_stateimage: copies of the node's image of a bare Lua state (core/stateimage.c)
 * behave as states lua_newstate made: they run Lua code that needs the interned
 * names, collect, close, count the same bytes, live side by side at many addresses
 * and hand their blocks back to the arena one by one. */
#include <lauxlib.h>
#include <lualib.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include "nodecheck.h"
#include "alloc.h"
#include "node.h"
#include "statepool.h"
#include "luaface.h"
#include "spawn.h"
#include "stateimage.h"

#ifdef MB_ALLOC_PLAIN
/* The ASan build: every block is a malloc of its own, so there is no image (every
 * state is made by lua_newstate, the way the whole ASan suite then runs). */
TEST(no_image_when_each_block_is_a_malloc) { CHECK(mb_stateimage_new(NULL, 0) == NULL); }

TEST_MAIN(CHECK_CASE(no_image_when_each_block_is_a_malloc))
#else

/* A state's allocator on an arena and one cache, counting its bytes. */
typedef struct { mb_arena *a; mb_acache *c; int64_t bytes; } counted;

static void *counted_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  counted *k = ud;
  size_t old = ptr ? osize : 0;
  void *np = mb_arena_realloc(k->a, k->c, ptr, old, nsize);
  if (np || nsize == 0) k->bytes += (int64_t)nsize - (int64_t)old;
  return np;
}

static int64_t lua_count(lua_State *L) {
  return (int64_t)lua_gc(L, LUA_GCCOUNT) * 1024 + lua_gc(L, LUA_GCCOUNTB);
}

/* A copy in the arena, on a counting allocator that starts at the image's bytes. */
static lua_State *copy_in(const mb_stateimage *im, counted *k) {
  void *dst = mb_arena_alloc_run(k->a, k->c, mb_stateimage_size(im));
  CHECK(dst != NULL);
  lua_State *L = mb_stateimage_copy(im, dst);
  k->bytes = mb_stateimage_bytes(im);
  lua_setallocf(L, counted_alloc, k);
  return L;
}

/* Every reserved word and metamethod name, a string made at run time against its
 * interned twin, a to-be-closed variable, finalizers and full collections. */
static const char WORK[] =
  "local id = ...\n"
  "local log = {}\n"
  "local mt = {}\n"
  "for _, e in ipairs { 'add', 'sub', 'mul', 'div', 'mod', 'pow', 'unm', 'idiv', 'band', 'bor',\n"
  "                     'bxor', 'shl', 'shr', 'bnot', 'concat', 'len', 'eq', 'lt', 'le', 'call' } do\n"
  "  mt['__' .. e] = function() log[#log + 1] = e; return e == 'eq' or e == 'lt' or e == 'le' or e end\n"
  "end\n"
  "mt.__index = function(_, k) return k .. id end\n"
  "mt.__newindex = function(_, k) log[#log + 1] = 'newindex ' .. k end\n"
  "local a, b = setmetatable({}, mt), setmetatable({}, mt)\n"
  "local r = { a + b, a - b, a * b, a / b, a % b, a ^ b, -a, a // b, a & b, a | b, a ~ b, a << b,\n"
  "            a >> b, ~a, a .. b, #a, a == b, a < b, a <= b, a() }\n"
  "assert(#r == 20 and r[1] == 'add' and r[20] == 'call' and #log == 20, 'metamethods')\n"
  "assert(a.x == 'x' .. id, '__index')\n"
  "a.y = 1\n"
  "assert(log[21] == 'newindex y', '__newindex')\n"
  "local s = 'fun'\n"
  "assert(rawequal(s .. 'ction', 'function'), 'interned')\n"
  "local src = 'local t = {} for i = 1, 3 do if i == 2 then goto c elseif i == 3 then break end ::c:: end '\n"
  "  .. 'while false do end repeat until true local f = function() return nil, true, false end '\n"
  "  .. 'for _ in pairs(t) do end return not (1 and 2 or 3)'\n"
  "local f, err = load(src)\n"
  "assert(f, err)\n"
  "assert(f() == false, 'reserved words')\n"
  "local closed\n"
  "do local c <close> = setmetatable({}, { __close = function() closed = true end }) end\n"
  "assert(closed, '__close')\n"
  "local gcs = 0\n"
  "for i = 1, 200 do setmetatable({}, { __gc = function() gcs = gcs + 1 end }) end\n"
  "collectgarbage()\n"
  "collectgarbage()\n"
  "assert(gcs == 200, '__gc ' .. gcs)\n"
  "local big = {}\n"
  "for i = 1, 2000 do big[('k%d'):format(i)] = i end\n"
  "big = nil\n"
  "collectgarbage()\n"
  "x_of_this_state = id\n"
  "return id\n";

static void run_work(lua_State *L, int id) {
  luaL_openlibs(L);
  CHECK_EQ_INT(luaL_loadbufferx(L, WORK, sizeof WORK - 1, "=work", "t"), LUA_OK);
  lua_pushinteger(L, id);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "copy %d: %s\n", id, lua_tostring(L, -1));
    CHECK(0);
  }
  CHECK_EQ_INT(lua_tointeger(L, -1), id);
  lua_pop(L, 1);
}

/* An image, and an arena with one cache for states' blocks. */
typedef struct { mb_stateimage *im; mb_arena a; mb_acache c; } fixture;

static void fixture_open(fixture *f) {
  f->im = mb_stateimage_new(NULL, 0);
  CHECK(f->im != NULL);
  mb_arena_init(&f->a);
  memset(&f->c, 0, sizeof f->c);
}

static void fixture_close(fixture *f) {
  mb_arena_free(&f->a);
  mb_stateimage_free(f->im);
}

/* A copy counts what lua_newstate and mb_spawn_prepare leave in a new state, by
 * Lua's count and by its allocator's. */
TEST(a_copy_counts_what_a_new_state_counts) {
  static fixture f;
  fixture_open(&f);
  counted fresh = { &f.a, &f.c, 0 };
  lua_State *F = lua_newstate(counted_alloc, &fresh);
  CHECK(F != NULL);
  mb_spawn_prepare(F);
  counted k = { &f.a, &f.c, 0 };
  lua_State *L = copy_in(f.im, &k);
  CHECK_EQ_INT(mb_stateimage_bytes(f.im), fresh.bytes);
  CHECK_EQ_INT(lua_count(L), lua_count(F));
  CHECK_EQ_INT(lua_count(L), k.bytes);
  CHECK(mb_stateimage_size(f.im) >= (size_t)fresh.bytes && mb_stateimage_size(f.im) < (size_t)fresh.bytes + 512);
  run_work(L, 1);
  run_work(F, 1);
  CHECK_EQ_INT(k.bytes, lua_count(L));
  lua_close(L);
  CHECK_EQ_INT(k.bytes, 0);   /* every block handed back, each with its own size */
  lua_close(F);
  fixture_close(&f);
}

/* A copy is the image's bytes with each word that pointed into the image moved by
 * the distance between the two, and none pointing into the image left: a copy that
 * still read or wrote through one would share the image with every other copy. */
TEST(a_copy_holds_no_pointer_into_the_image) {
  mb_stateimage *im = mb_stateimage_new(NULL, 0);
  CHECK(im != NULL);
  size_t size = mb_stateimage_size(im), words = size / sizeof(uintptr_t);
  const uintptr_t *img = mb_stateimage_region(im);
  uintptr_t lo = (uintptr_t)img, hi = lo + size;
  for (int shift = 0; shift < 3; shift++) {   /* at three addresses */
    char *buf = aligned_alloc(64, size + 4096 * 3);
    CHECK(buf != NULL);
    const uintptr_t *w = (const uintptr_t *)(buf + 4096 * shift);
    mb_stateimage_copy(im, (void *)w);
    uintptr_t delta = (uintptr_t)w - lo;
    size_t moved = 0;
    for (size_t i = 0; i < words; i++) {
      CHECK(!(w[i] >= lo && w[i] <= hi));
      if (img[i] >= lo && img[i] <= hi) { CHECK(w[i] == img[i] + delta); moved++; }
      else CHECK(w[i] == img[i]);
    }
    CHECK(moved > 100);   /* a state's lists, its tables' parts, its strings' chains */
    free(buf);
  }
  mb_stateimage_free(im);
}

#define COPIES 64

/* Many copies alive at once at different addresses: each runs the work, keeps its
 * own globals, and closes in an order of its own, its blocks going to the free
 * lists one by one; then the same again, beside the blocks they left (which the
 * new copies' own allocations take). */
TEST(copies_live_side_by_side_and_close_in_any_order) {
  static fixture f;
  fixture_open(&f);
  static counted k[COPIES];
  static lua_State *L[COPIES];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < COPIES; i++) {
      k[i] = (counted){ &f.a, &f.c, 0 };
      L[i] = copy_in(f.im, &k[i]);
      if (i % 2) run_work(L[i], i);   /* half run before the rest exist */
    }
    for (int i = 0; i < COPIES; i += 2) run_work(L[i], i);
    for (int i = 0; i < COPIES; i++) {
      CHECK_EQ_INT(lua_getglobal(L[i], "x_of_this_state"), LUA_TNUMBER);
      CHECK_EQ_INT(lua_tointeger(L[i], -1), i);
      lua_pop(L[i], 1);
      CHECK_EQ_INT(k[i].bytes, lua_count(L[i]));
    }
    for (int i = 0; i < COPIES; i++) {
      int j = (i * 37 + round) % COPIES;   /* a permutation: 37 is prime to 64 */
      lua_close(L[j]);
      CHECK_EQ_INT(k[j].bytes, 0);
    }
  }
  fixture_close(&f);
}

/* A process started on a copy of the image counts what one started on a state
 * lua_newstate made counts: by Lua's count, and by mb.info's once it waits. Two nodes
 * of one scheduler without a state pool (its states are made by lua_newstate), one
 * without its image; each writes what its child counted to a file. */
static void child_counts(int with_image, char *out, size_t outlen) {
  char path[] = "/tmp/mb_image_counts_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);
  char src[1024];
  snprintf(src, sizeof src,
    "local mb = require 'moonbeam'\n"
    "local function child(parent)\n"
    "  local mb = require 'moonbeam'\n"
    "  mb.send(parent, collectgarbage('count') * 1024)\n"
    "  mb.receive()\n"
    "end\n"
    "local c = mb.spawn(child, mb.self())\n"
    "local lua_bytes = assert(mb.receive(10000), 'the child did not report')\n"
    "local f = assert(io.open('%s', 'w'))\n"
    "f:write(('%%d %%d'):format(lua_bytes, mb.info(c).memory))\n"
    "f:close()\n"
    "mb.exit(c, 'kill')\n", path);
  mb_node *n = check_quiet_node(1);
  mb_statepool_free(n->statepool);
  n->statepool = NULL;
  CHECK(n->stateimage != NULL);
  if (!with_image) {
    mb_stateimage_free(n->stateimage);
    n->stateimage = NULL;
  }
  CHECK_EQ_INT(check_run_on(n, src), 0);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  CHECK(fgets(out, (int)outlen, f) != NULL);
  fclose(f);
  unlink(path);
}

TEST(a_process_on_a_copy_counts_what_one_on_a_new_state_counts) {
  char copied[64], fresh[64];
  child_counts(1, copied, sizeof copied);
  child_counts(0, fresh, sizeof fresh);
  CHECK_EQ_STR(copied, fresh);
}

/* The node's image for Lua bodies holds the moonbeam module (made at start, when the
 * preloads are known); a host's own preload named moonbeam is opened with each
 * process instead, so that node has the environment's image alone. Each script
 * checks it got the module it should. */
static int open_wrapped(lua_State *L) {
  luaopen_moonbeam(L);
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "wrapped");
  return 1;
}

static void run_and_check_lua_image(mb_node *n, const char *src, int has_lua_image) {
  char path[] = "/tmp/mb_image_lua_XXXXXX.lua";
  check_write_script(path, src);
  mb_pid pid;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  CHECK_EQ_INT(mb_node_run(n), 0);
  CHECK(n->stateimage != NULL);   /* made: the trial passed, and no block left a hole */
  CHECK_EQ_INT(n->stateimage_lua != NULL, has_lua_image);
  /* the image for Lua bodies was made from the preloads: none may come after */
  CHECK_EQ_INT(mb_node_preload(n, "late", open_wrapped), MB_ESTATE);
  mb_node_free(n);
  unlink(path);
}

TEST(lua_bodies_get_an_image_with_the_module_unless_the_host_has_its_own) {
  static const char child[] =
    "local mb = require 'moonbeam'\n"
    "local function child(parent) local mb = require 'moonbeam'; mb.send(parent, mb.wrapped or false) end\n"
    "mb.spawn(child, mb.self())\n";
  char src[1024];
  snprintf(src, sizeof src, "%sassert(mb.receive(10000) == false)\n", child);
  run_and_check_lua_image(check_quiet_node(1), src, 1);
  mb_node *n = check_quiet_node(1);
  CHECK_EQ_INT(mb_node_preload(n, "moonbeam", open_wrapped), 0);
  snprintf(src, sizeof src, "%sassert(mb.receive(10000) == true)\n", child);
  run_and_check_lua_image(n, src, 0);
}

static size_t arena_chunks(mb_node *n) {
  size_t k = 0;
  pthread_mutex_lock(&n->arena.lock);
  for (struct mb_chunk *c = n->arena.chunks; c; c = *(struct mb_chunk **)c) k++;
  pthread_mutex_unlock(&n->arena.lock);
  return k;
}

/* Processes that end give their states' blocks back, and the states of the ones
 * spawned after them take those blocks (made block by block while a closed state's
 * blocks wait on the free lists): 20,000 processes, 500 alive at a time (~3.5 MB),
 * fit in a few chunks of the arena (2 or 3, measured); copied from the image each, they took 114. */
static void churn(int schedulers, size_t max_chunks) {
  mb_node *n = check_quiet_node(schedulers);
  char path[] = "/tmp/mb_image_churn_XXXXXX.lua";
  check_write_script(path,
    "local mb = require 'moonbeam'\n"
    "local me = mb.self()\n"
    "for round = 1, 40 do\n"
    "  for i = 1, 500 do mb.spawn(function(parent) require('moonbeam').send(parent, 'up') end, me) end\n"
    "  for i = 1, 500 do assert(mb.receive(10000) == 'up', 'a child did not report') end\n"
    "end\n");
  mb_pid pid;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  CHECK_EQ_INT(mb_node_run(n), 0);
  size_t chunks = arena_chunks(n);
  if (chunks > max_chunks || getenv("MB_CHUNKS")) fprintf(stderr, "%zu chunks of the arena\n", chunks);
  CHECK(chunks <= max_chunks);
  mb_node_free(n);
  unlink(path);
}

TEST(a_node_that_spawns_and_ends_processes_reuses_their_memory) { churn(1, 10); }

/* The same on two schedulers, where a process may start on one and end on the
 * other: states made by the one whose lists the closed states' blocks are on (new,
 * or pooled while it idles) take them back. */
TEST(on_two_schedulers_too) { churn(2, 20); }

TEST_MAIN(CHECK_CASE(a_copy_counts_what_a_new_state_counts),
          CHECK_CASE(a_node_that_spawns_and_ends_processes_reuses_their_memory),
          CHECK_CASE(on_two_schedulers_too),
          CHECK_CASE(lua_bodies_get_an_image_with_the_module_unless_the_host_has_its_own),
          CHECK_CASE(a_process_on_a_copy_counts_what_one_on_a_new_state_counts),
          CHECK_CASE(a_copy_holds_no_pointer_into_the_image),
          CHECK_CASE(copies_live_side_by_side_and_close_in_any_order))
#endif
