/* main: the moonbeam command line (SPEC section 6), a thin client of moonbeam.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "moonbeam.h"

static const char usage[] =
  "usage: moonbeam [options] SCRIPT [args...]\n"
  "Runs SCRIPT as the first process of a new node; the node runs until no process\n"
  "is alive, until mb.halt(code), or until SIGINT/SIGTERM.\n"
  "\n"
  "options:\n"
  "  -S N               scheduler threads (default: the number of cores)\n"
  "  -P PATH            script search path, added before ./?.lua;./?/init.lua\n"
  "  --log-level LEVEL  debug, info, warning, error or none (default: info)\n"
  "  --c-modules        let processes load C modules (package.cpath, package.loadlib)\n"
  "  --version          print the version and exit\n"
  "  --help             print this help and exit\n"
  "\n"
  "exit status: 0; 1 when the first process ended abnormally (or the script does\n"
  "not compile); 2 for a usage error (including a script that cannot be read)\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "moonbeam: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, " (see moonbeam --help)\n");
  return 2;
}

static const char *levels[] = { "debug", "info", "warning", "error", "none", NULL };

int main(int argc, char **argv) {
  mb_node_opts opts;
  memset(&opts, 0, sizeof opts);
  opts.handle_signals = 1;
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || strcmp(a, "-") == 0) break;
    if (strcmp(a, "--") == 0) { i++; break; }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { fputs(usage, stdout); return 0; }
    if (strcmp(a, "--version") == 0 || strcmp(a, "-v") == 0) {
      printf("moonbeam %s\n", mb_version_string());
      return 0;
    }
    if (strcmp(a, "--c-modules") == 0) { opts.c_modules = 1; continue; }
    if (strcmp(a, "-S") == 0 || strcmp(a, "-P") == 0 || strcmp(a, "--log-level") == 0) {
      if (i + 1 >= argc) return usage_error("option '%s' needs a value", a);
      const char *v = argv[++i];
      if (a[1] == 'S') {
        char *end;
        long n = strtol(v, &end, 10);
        if (*end || n < 1 || n > 1024) return usage_error("-S needs a number from 1 to 1024, not '%s'", v);
        opts.schedulers = (int)n;
      } else if (a[1] == 'P') {
        opts.path = v;
      } else {
        int ok = 0;
        for (int k = 0; levels[k]; k++) ok |= strcmp(levels[k], v) == 0;
        if (!ok) return usage_error("unknown log level '%s'", v);
        opts.log_level = v;
      }
      continue;
    }
    return usage_error("unknown option '%s'", a);
  }
  if (i >= argc) return usage_error("%s", "no script given");
  const char *script = argv[i];
  mb_node *node = mb_node_new(&opts);
  if (!node) { fprintf(stderr, "moonbeam: cannot create the node\n"); return 1; }
  mb_pid pid;
  int rc = mb_spawn_script(node, script, argc - i - 1, argv + i + 1, &pid);
  if (rc == MB_ENOTFOUND || rc == MB_EINVAL) {   /* already said why */
    mb_node_free(node);
    return rc == MB_ENOTFOUND ? 2 : 1;
  }
  if (rc != 0) {
    fprintf(stderr, "moonbeam: cannot start %s: %s\n", script, mb_strerror(rc));
    mb_node_free(node);
    return 1;
  }
  int status = mb_node_run(node);
  fflush(NULL);
  if (status < 0) status = 1;
#if !defined(__SANITIZE_ADDRESS__)
  /* Like Erlang's halt: leave the memory of processes still alive to the OS. The
   * sanitizer build frees everything so that leak checks stay meaningful. */
  _exit(status);
#endif
  mb_node_free(node);
  return status;
}
