/* nodecheck: what the node-level C tests share on top of check.h. */
#ifndef MB_NODECHECK_H
#define MB_NODECHECK_H

#include <unistd.h>
#include "check.h"
#include "moonbeam.h"

/* A node that logs nothing (crash reports would clutter the test output). */
static inline mb_node *check_quiet_node(int schedulers) {
  mb_node_opts o = { 0 };
  o.schedulers = schedulers;
  o.log_level = "none";
  mb_node *n = mb_node_new(&o);
  CHECK(n != NULL);
  return n;
}

/* A quiet node, not started, whose script search path is a new temp directory:
 * its name is written to dir ("/tmp/<prefix>_XXXXXX"). max_message 0: the default. */
static inline mb_node *check_node_in_tempdir(char *dir, size_t dirlen, const char *prefix, size_t max_message) {
  snprintf(dir, dirlen, "/tmp/%s_XXXXXX", prefix);
  CHECK(mkdtemp(dir) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/?.lua", dir);
  mb_node_opts o = { 0 };
  o.schedulers = 1;
  o.log_level = "none";
  o.path = path;
  o.max_message = max_message;
  mb_node *n = mb_node_new(&o);
  CHECK(n != NULL);
  return n;
}

/* A loop that never blocks, and a process beside it on one scheduler that must
 * still get its turn (preemption): the script exits 0 when it did. */
static const char check_preemption_script[] =
  "local mb = require 'moonbeam'\n"
  "local looper = mb.spawn(function() while true do end end)\n"
  "local echo = mb.spawn(function() local mb = require 'moonbeam'\n"
  "  local m = mb.receive(); mb.send(m[1], m[2]) end)\n"
  "mb.send(echo, {mb.self(), 'hi'})\n"
  "assert(mb.receive(10000) == 'hi')\n"
  "mb.exit(looper, 'kill')\n";

/* Run src as the first process of node n (started here), then free n: its status. */
static inline int check_run_on(mb_node *n, const char *src) {
  char path[] = "/tmp/mb_test_script_XXXXXX.lua";
  check_write_script(path, src);
  mb_pid pid;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  CHECK(pid > 0);
  int status = mb_node_run(n);
  mb_node_free(n);
  unlink(path);
  return status;
}

/* The same on a quiet node of that many schedulers. */
static inline int check_run_script(const char *src, int schedulers) {
  return check_run_on(check_quiet_node(schedulers), src);
}

/* Run src as the first process of a quiet node of that many schedulers whose
 * path is a temp dir holding one module, name.lua = module_src: its status. A C
 * module `preload` (opened by open) is preloaded when preload is not NULL;
 * max_message: the node's message limit (0: the default). */
static inline int check_run_with_modules_limit(const char *name, const char *module_src, const char *src,
                                               int schedulers, const char *preload, mb_lua_CFunction open,
                                               size_t max_message) {
  char dir[] = "/tmp/mb_test_module_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char mod[128], path[128];
  snprintf(mod, sizeof mod, "%s/%s.lua", dir, name);
  snprintf(path, sizeof path, "%s/?.lua", dir);
  FILE *f = fopen(mod, "w");
  CHECK(f != NULL);
  fputs(module_src, f);
  fclose(f);
  mb_node_opts o = { 0 };
  o.schedulers = schedulers;
  o.log_level = "none";
  o.path = path;
  o.max_message = max_message;
  mb_node *n = mb_node_new(&o);
  CHECK(n != NULL);
  if (preload) CHECK_EQ_INT(mb_node_preload(n, preload, open), 0);
  int status = check_run_on(n, src);
  check_remove_dir(dir);
  return status;
}

static inline int check_run_with_module(const char *name, const char *module_src, const char *src, int schedulers) {
  return check_run_with_modules_limit(name, module_src, src, schedulers, NULL, NULL, 0);
}

static inline int check_run_with_modules(const char *name, const char *module_src, const char *src, int schedulers,
                                         const char *preload, mb_lua_CFunction open) {
  return check_run_with_modules_limit(name, module_src, src, schedulers, preload, open, 0);
}

static inline int check_run_with_module_limit(const char *name, const char *module_src, const char *src,
                                              int schedulers, size_t max_message) {
  return check_run_with_modules_limit(name, module_src, src, schedulers, NULL, NULL, max_message);
}

#endif
