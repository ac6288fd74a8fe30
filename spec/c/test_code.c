/* test_code: the code cache (core/code.c) — generations, reload, staleness, and
 * gets racing reloads. Each test makes a node whose search path is a fresh temp
 * directory and writes modules there; the node is never started. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "nodecheck.h"
#include <lauxlib.h>
#include "moonbeam.h"
#include "code.h"

typedef struct { char dir[64]; mb_node *n; } fixture;

static void setup(fixture *f) { f->n = check_node_in_tempdir(f->dir, sizeof f->dir, "mb_test_code", 0); }

/* Free the node, remove the directory, and (under ASan) fail on any leak. */
static void teardown(fixture *f) {
  mb_node_free(f->n);
  check_remove_dir(f->dir);
  check_no_leaks();
}

/* Replace dir/name.lua with src in one step (write aside, rename). */
static void write_module(fixture *f, const char *name, const char *src) {
  char tmp[128], path[128];
  snprintf(tmp, sizeof tmp, "%s/.%s.tmp", f->dir, name);
  snprintf(path, sizeof path, "%s/%s.lua", f->dir, name);
  FILE *fp = fopen(tmp, "w");
  CHECK(fp != NULL);
  fputs(src, fp);
  CHECK(fclose(fp) == 0);
  CHECK(rename(tmp, path) == 0);
}

/* Load c into a fresh state and run it: the integer it returns. */
static long long run(const mb_code *c) {
  lua_State *L = luaL_newstate();
  CHECK(L != NULL);
  CHECK_EQ_INT(mb_code_load(L, c), LUA_OK);
  CHECK_EQ_INT(lua_pcall(L, 0, 1, 0), LUA_OK);
  CHECK(lua_isinteger(L, -1));
  long long v = lua_tointeger(L, -1);
  lua_close(L);
  return v;
}

/* mb_code_get or mb_code_reload, which must succeed. */
static mb_code *fetch(fixture *f, const char *name, int reload) {
  char err[512];
  mb_code *c = (reload ? mb_code_reload : mb_code_get)(f->n, name, err, sizeof err);
  if (!c) fprintf(stderr, "%s %s: %s\n", reload ? "reload" : "get", name, err);
  CHECK(c != NULL);
  return c;
}
static mb_code *get(fixture *f, const char *name) { return fetch(f, name, 0); }
static mb_code *reload(fixture *f, const char *name) { return fetch(f, name, 1); }

/* Module m becomes "return v"; reload it: the new entry. */
static mb_code *edit_and_reload(fixture *f, int v) {
  char src[32];
  snprintf(src, sizeof src, "return %d", v);
  write_module(f, "m", src);
  return reload(f, "m");
}

/* A fresh node whose module m ("return 1") is cached: the entry (+1 ref). */
static mb_code *start(fixture *f) {
  setup(f);
  write_module(f, "m", "return 1");
  return get(f, "m");
}

TEST(first_get_is_gen_1_and_cached) {
  fixture f;
  mb_code *a = start(&f), *b = get(&f, "m");
  CHECK(a == b);
  CHECK_EQ_INT(a->gen, 1);
  CHECK(!mb_code_superseded(a));
  CHECK_EQ_INT(run(a), 1);
  mb_code_unref(a);
  mb_code_unref(b);
  teardown(&f);
}

TEST(reload_makes_a_new_generation_and_old_holders_keep_theirs) {
  fixture f;
  mb_code *old = start(&f);
  mb_code *new = edit_and_reload(&f, 2);
  CHECK(new != old);
  CHECK_EQ_INT(new->gen, 2);
  CHECK(mb_code_superseded(old));
  CHECK(!mb_code_superseded(new));
  /* the cache dropped its reference to the old entry; we hold the last one */
  CHECK_EQ_INT(atomic_load(&old->refs), 1);
  CHECK_EQ_INT(atomic_load(&new->refs), 2);
  mb_code *again = get(&f, "m");
  CHECK(again == new);
  CHECK_EQ_INT(run(old), 1);
  CHECK_EQ_INT(run(new), 2);
  mb_code_unref(again);
  mb_code_unref(new);
  mb_code_unref(old);
  /* and a third */
  mb_code *third = edit_and_reload(&f, 3);
  CHECK_EQ_INT(third->gen, 3);
  CHECK_EQ_INT(run(third), 3);
  mb_code_unref(third);
  teardown(&f);
}

TEST(reload_with_a_syntax_error_changes_nothing) {
  fixture f;
  mb_code *c = start(&f);
  write_module(&f, "m", "return (");
  char err[512] = "";
  CHECK(mb_code_reload(f.n, "m", err, sizeof err) == NULL);
  CHECK(strstr(err, "m.lua:1:") != NULL);  /* the compiler's message */
  CHECK(!mb_code_superseded(c));
  mb_code *same = get(&f, "m");
  CHECK(same == c);
  CHECK_EQ_INT(same->gen, 1);
  mb_code_unref(same);
  /* once fixed, the next reload is gen 2 */
  mb_code *fixed = edit_and_reload(&f, 2);
  CHECK_EQ_INT(fixed->gen, 2);
  CHECK(mb_code_superseded(c));
  mb_code_unref(fixed);
  mb_code_unref(c);
  teardown(&f);
}

TEST(reload_of_a_missing_module_fails_and_of_an_unloaded_one_is_gen_1) {
  fixture f;
  setup(&f);
  char err[512] = "";
  CHECK(mb_code_reload(f.n, "nope", err, sizeof err) == NULL);
  CHECK(strstr(err, "module 'nope' not found:") != NULL);
  write_module(&f, "m", "return 1");
  mb_code *c = reload(&f, "m");
  CHECK_EQ_INT(c->gen, 1);
  mb_code *g = get(&f, "m");
  CHECK(g == c);
  mb_code_unref(g);
  mb_code_unref(c);
  /* the file went away: the reload fails, the cached entry stays */
  char path[128];
  snprintf(path, sizeof path, "%s/m.lua", f.dir);
  CHECK(unlink(path) == 0);
  CHECK(mb_code_reload(f.n, "m", err, sizeof err) == NULL);
  g = get(&f, "m");
  CHECK_EQ_INT(g->gen, 1);
  CHECK(!mb_code_superseded(g));
  mb_code_unref(g);
  teardown(&f);
}

/* A holder polls its own pointer; once stale, one get gives the newest. */
TEST(a_stale_holder_learns_it_and_fetches_the_newest) {
  fixture f;
  mb_code *held = start(&f);
  for (int i = 2; i <= 5; i++) mb_code_unref(edit_and_reload(&f, i));
  CHECK(mb_code_superseded(held));
  char err[512];
  mb_code *cur = mb_code_get(f.n, held->name, err, sizeof err);
  CHECK(cur != NULL);
  CHECK_EQ_INT(cur->gen, 5);
  CHECK(!mb_code_superseded(cur));
  CHECK_EQ_INT(run(cur), 5);
  mb_code_unref(held);
  mb_code_unref(cur);
  teardown(&f);
}

/* Two reloads overlap: A starts first but its read of the file is held open
 * (the module is a FIFO) while B starts, reads newer source and finishes.
 * When A finishes, the cache must keep B's compile: the one that started last. */
typedef struct { fixture *f; mb_code *out; } reload_arg;

static void *reload_thread(void *p) {
  reload_arg *a = p;
  char err[512];
  a->out = mb_code_reload(a->f->n, "m", err, sizeof err);
  if (!a->out) fprintf(stderr, "reload A: %s\n", err);
  return NULL;
}

TEST(overlapping_reloads_keep_the_one_started_last) {
  fixture f;
  mb_code *first = start(&f);
  char path[128];
  snprintf(path, sizeof path, "%s/m.lua", f.dir);
  CHECK(unlink(path) == 0);
  CHECK(mkfifo(path, 0600) == 0);
  /* we hold the FIFO open both ways: A's opens do not block and its read sees no
   * end of file until we close */
  int fd = open(path, O_RDWR);
  CHECK(fd >= 0);
  const char *src_a = "return 2";
  CHECK_EQ_INT(write(fd, src_a, strlen(src_a)), (long long)strlen(src_a));
  reload_arg a = { &f, NULL };
  pthread_t t;
  CHECK(pthread_create(&t, NULL, reload_thread, &a) == 0);
  /* A has taken its ticket and is compiling once it has drained the pipe */
  for (int waited_ms = 0;; waited_ms++) {
    int avail = -1;
    CHECK(ioctl(fd, FIONREAD, &avail) == 0);
    if (avail == 0) break;
    CHECK(waited_ms < 20000);
    nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
  }
  write_module(&f, "m", "return 3");  /* replaces the FIFO's name; A keeps reading it */
  mb_code *b = reload(&f, "m");
  CHECK_EQ_INT(b->gen, 2);
  CHECK_EQ_INT(run(b), 3);
  CHECK(close(fd) == 0);  /* A reads end of file, compiles "return 2", finds B newer */
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(a.out == b);
  mb_code *cur = get(&f, "m");
  CHECK(cur == b);
  CHECK_EQ_INT(cur->gen, 2);
  CHECK(!mb_code_superseded(b));
  CHECK(mb_code_superseded(first));
  mb_code_unref(cur);
  mb_code_unref(a.out);
  mb_code_unref(b);
  mb_code_unref(first);
  teardown(&f);
}

/* Readers call get in a loop while one thread reloads M times: every get gives a
 * valid entry, generations never go back for one reader, an entry newer than the
 * one held means the held one is marked superseded, and each new generation runs
 * and returns its own number. */
#define READERS 4
#define RELOADS 200

typedef struct { fixture *f; _Atomic int *done; long long gets; } reader_arg;

static void *reader(void *p) {
  reader_arg *a = p;
  mb_code *held = get(a->f, "m");
  for (;;) {
    int done = atomic_load(a->done);  /* read before the get: then the last get is current */
    mb_code *c = get(a->f, "m");
    a->gets++;
    CHECK(c->gen >= held->gen);
    if (c->gen > held->gen) {
      CHECK(mb_code_superseded(held));
      CHECK_EQ_INT(run(c), (long long)c->gen);
    }
    mb_code_unref(held);
    held = c;
    if (done) break;
  }
  CHECK_EQ_INT(held->gen, RELOADS + 1);
  CHECK(!mb_code_superseded(held));
  mb_code_unref(held);
  return NULL;
}

TEST(hammer_gets_while_reloading) {
  fixture f;
  mb_code_unref(start(&f));
  _Atomic int done = 0;
  reader_arg ra[READERS];
  pthread_t t[READERS];
  for (int i = 0; i < READERS; i++) {
    ra[i] = (reader_arg){ &f, &done, 0 };
    CHECK(pthread_create(&t[i], NULL, reader, &ra[i]) == 0);
  }
  for (int g = 2; g <= RELOADS + 1; g++) {
    mb_code *c = edit_and_reload(&f, g);
    CHECK_EQ_INT(c->gen, g);
    mb_code_unref(c);
  }
  atomic_store(&done, 1);
  for (int i = 0; i < READERS; i++) {
    CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(ra[i].gets > 0);
  }
  teardown(&f);
}

TEST_MAIN(
  CHECK_CASE(first_get_is_gen_1_and_cached),
  CHECK_CASE(reload_makes_a_new_generation_and_old_holders_keep_theirs),
  CHECK_CASE(reload_with_a_syntax_error_changes_nothing),
  CHECK_CASE(reload_of_a_missing_module_fails_and_of_an_unloaded_one_is_gen_1),
  CHECK_CASE(a_stale_holder_learns_it_and_fetches_the_newest),
  CHECK_CASE(overlapping_reloads_keep_the_one_started_last),
  CHECK_CASE(hammer_gets_while_reloading))
