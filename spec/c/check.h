/* check.h: a tiny test runner in the manner of libuv's: each TEST runs in its own
 * forked child bounded by alarm(), so a hang or a crash names itself.
 * Usage: TEST(name) { CHECK(x); } ... and TEST_MAIN(test_a, test_b, ...).
 * `prog` runs every test; `prog name` runs one. */
#ifndef MB_CHECK_H
#define MB_CHECK_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <signal.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#ifndef CHECK_TIMEOUT_S
#define CHECK_TIMEOUT_S 60
#endif

#define CHECK(cond) do { if (!(cond)) { \
  fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
  exit(1); } } while (0)
#define CHECK_EQ_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); \
  if (_a != _b) { fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", \
    __FILE__, __LINE__, #a, _a, _b); exit(1); } } while (0)
#define CHECK_EQ_STR(a, b) do { const char *_a = (a), *_b = (b); \
  if (!_a || strcmp(_a, _b) != 0) { fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", \
    __FILE__, __LINE__, #a, _a ? _a : "(null)", _b); exit(1); } } while (0)

#define TEST(name) static void name(void)

typedef struct { const char *name; void (*fn)(void); } check_case;

static int check_run_one(const check_case *c) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(CHECK_TIMEOUT_S);
    c->fn();
    fflush(NULL);
    _exit(0);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
    printf("ok   %s\n", c->name);
    return 0;
  }
  if (WIFSIGNALED(st))
    printf("FAIL %s (signal %d%s)\n", c->name, WTERMSIG(st), WTERMSIG(st) == SIGALRM ? ", timed out" : "");
  else
    printf("FAIL %s (exit %d)\n", c->name, WEXITSTATUS(st));
  return 1;
}

static int check_main(int argc, char **argv, const check_case *cases, int n) {
  int failed = 0, ran = 0;
  for (int i = 0; i < n; i++) {
    if (argc > 1 && strcmp(argv[1], cases[i].name) != 0) continue;
    failed += check_run_one(&cases[i]);
    ran++;
  }
  printf("%d passed, %d failed\n", ran - failed, failed);
  return failed || ran == 0 ? 1 : 0;
}

/* Write src to a new temp file; path must be a "/tmp/..._XXXXXX.lua" buffer. */
static inline void check_write_script(char *path, const char *src) {
  int fd = mkstemps(path, 4);
  CHECK(fd >= 0);
  FILE *f = fdopen(fd, "w");
  CHECK(f != NULL);
  fputs(src, f);
  fclose(f);
}

/* Remove a test's temp directory and the files in it. */
static inline void check_remove_dir(const char *dir) {
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
    char path[384];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    CHECK(unlink(path) == 0);
  }
  closedir(d);
  CHECK(rmdir(dir) == 0);
}

/* Under ASan, fail on any leak so far: the test children end with _exit, which
 * skips LeakSanitizer's own check. */
static inline void check_no_leaks(void) {
#if defined(__SANITIZE_ADDRESS__)
  CHECK(__lsan_do_recoverable_leak_check() == 0);
#endif
}

#define CHECK_CASE(fn) { #fn, fn }
#define TEST_MAIN(...) \
  int main(int argc, char **argv) { \
    static const check_case cases[] = { __VA_ARGS__ }; \
    return check_main(argc, argv, cases, (int)(sizeof cases / sizeof cases[0])); }

#endif
