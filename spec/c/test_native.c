/* test_native: native processes (core/native.c) with Lua processes around them —
 * messages both ways, links, monitors, exit signals, kill, trap_exit, node stop,
 * halt and free — and destroy called exactly once, before EXIT and DOWN go out. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "check.h"
#include "moonbeam.h"
#include "node.h"
#include "native.h"
#include "cterm.h"
#include "registry.h"

/* ---- what the natives tell the test thread ---- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static char reports[16][512];   /* the sink's messages, rendered */
static int nreports;
static int destroyed;           /* destroy calls */
static char destroy_reason[256];

static void report(const char *text) {
  pthread_mutex_lock(&lock);
  if (nreports < 16) snprintf(reports[nreports++], sizeof reports[0], "%s", text);
  pthread_cond_broadcast(&cond);
  pthread_mutex_unlock(&lock);
}

/* Wait (at most 10 s) until k reports came; returns the k-th. */
static const char *wait_report(int k) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 10;
  pthread_mutex_lock(&lock);
  while (nreports < k)
    if (pthread_cond_timedwait(&cond, &lock, &ts) != 0) break;
  const char *r = nreports >= k ? reports[k - 1] : NULL;
  pthread_mutex_unlock(&lock);
  CHECK(r != NULL);
  return r;
}

static int destroy_count(void) {
  pthread_mutex_lock(&lock);
  int d = destroyed;
  pthread_mutex_unlock(&lock);
  return d;
}

static void on_destroy(void *data, const mb_sig *reason) {
  char *t = mb_reason_render(mb_sig_payload(reason), reason->len, 200);
  pthread_mutex_lock(&lock);
  destroyed++;
  snprintf(destroy_reason, sizeof destroy_reason, "%s", t ? t : "?");
  pthread_mutex_unlock(&lock);
  free(t);
  free(data);
}

/* destroy ran `count` times so far, the last with `reason` */
static void check_destroyed(int count, const char *reason) {
  pthread_mutex_lock(&lock);
  CHECK_EQ_INT(destroyed, count);
  CHECK_EQ_STR(destroy_reason, reason);
  pthread_mutex_unlock(&lock);
}

/* ---- the natives ---- */

/* Report every message in p's inbox rendered; `tagged`: as "EXIT|MSG from=<pid> text". */
static void report_all(mb_proc *p, int tagged) {
  mb_sig *m;
  while ((m = mb_native_next(p)) != NULL) {
    char *t = mb_reason_render(mb_sig_payload(m), m->len, 400);
    char line[480];
    if (tagged)
      snprintf(line, sizeof line, "%s from=<0.%llu> %s", m->kind == MB_SIG_EXIT ? "EXIT" : "MSG",
               (unsigned long long)m->from, t ? t : "?");
    else
      snprintf(line, sizeof line, "%s", t ? t : "?");
    report(line);
    free(t);
    mb_sig_free(m);
  }
}

/* sink: reports every message it gets */
static void sink_handle(mb_proc *p, void *data) { (void)data; report_all(p, 0); }
static const mb_native_ops sink_ops = { "sink", NULL, sink_handle, on_destroy };

/* echo: {from, text, n} -> from ! {"pong", text, n + 1, self}; "quit" ends it with
 * reason {"bye", 7}; {"kill", pid} sends pid an exit signal "zapped" */
static void echo_handle(mb_proc *p, void *data) {
  (void)data;
  mb_sig *m;
  while ((m = mb_native_next(p)) != NULL) {
    mb_tr r;
    CHECK(mb_tr_open(&r, mb_sig_payload(m), m->len) == 0);
    uint64_t narr;
    uint32_t nh;
    if (mb_tr_is_string(&r, "quit")) {
      mb_buf b;
      mb_tw w;
      CHECK(mb_buf_init(&b, MB_SIG_HDR, 0) == 0);
      mb_tw_begin(&w, &b);
      mb_tw_table(&w, 2);
      mb_tw_string(&w, "bye");
      mb_tw_int(&w, 7);
      mb_tw_end(&w);
      CHECK(mb_tw_finish(&w) == 0);
      mb_native_exit(p, mb_sig_from_buf(&b, MB_SIG_EXIT, 0, 0));
    } else if (mb_tr_enter(&r, &narr, &nh) == 0 && narr == 2 && mb_tr_is_string(&r, "kill")) {
      mb_pid to;
      CHECK(mb_tr_pid(&r, &to) == 0);
      mb_sig *reason = mb_sig_string(MB_SIG_EXIT, 0, 0, "zapped");
      CHECK(reason != NULL);
      mb_proc_exit_signal(p, to, reason);
    } else if (narr == 3) {
      mb_pid from;
      const char *s;
      size_t len;
      int64_t n;
      CHECK(mb_tr_pid(&r, &from) == 0);
      CHECK(mb_tr_string(&r, &s, &len) == 0);
      CHECK(mb_tr_int(&r, &n) == 0);
      CHECK(mb_tr_leave(&r) == 0);
      mb_buf b;
      mb_tw w;
      CHECK(mb_buf_init(&b, MB_SIG_HDR, 0) == 0);
      mb_tw_begin(&w, &b);
      mb_tw_table(&w, 4);
      mb_tw_string(&w, "pong");
      mb_tw_lstring(&w, s, len);
      mb_tw_int(&w, n + 1);
      mb_tw_pid(&w, atomic_load(&p->pid));
      mb_tw_end(&w);
      CHECK(mb_tw_finish(&w) == 0);
      mb_native_send(p, from, mb_sig_from_buf(&b, MB_SIG_MSG, 0, 0));
    }
    mb_tr_close(&r);
    mb_sig_free(m);
  }
}
static const mb_native_ops echo_ops = { "echo", NULL, echo_handle, on_destroy };

/* trapper: traps exits from its first run; reports each EXIT as "EXIT from=<pid> reason" */
static void trapper_init(mb_proc *p, void *data) { (void)data; mb_native_trap_exit(p, 1); }
static void trapper_handle(mb_proc *p, void *data) { (void)data; report_all(p, 1); }
static const mb_native_ops trapper_ops = { "trapper", trapper_init, trapper_handle, on_destroy };

/* idle: does nothing with its messages */
static void idle_handle(mb_proc *p, void *data) {
  (void)data;
  mb_sig *m;
  while ((m = mb_native_next(p)) != NULL) mb_sig_free(m);
}
static const mb_native_ops idle_ops = { NULL, NULL, idle_handle, on_destroy };

/* parent: spawns a linked idle child (registered "child") on its first run, ends with
 * "boom" on any message */
static void parent_init(mb_proc *p, void *data) {
  (void)data;
  mb_pid child;
  CHECK(mb_native_spawn(p->node, &idle_ops, malloc(8), p, &child) == 0);
  CHECK(mb_registry_add(p->node, "child", 5, child) == 0);
  report("child up");
}
static void parent_handle(mb_proc *p, void *data) {
  (void)data;
  mb_sig *m = mb_native_next(p);
  if (m) { mb_sig_free(m); mb_native_exit(p, mb_sig_string(MB_SIG_EXIT, 0, 0, "boom")); }
}
static const mb_native_ops parent_ops = { "parent", parent_init, parent_handle, on_destroy };

/* ---- helpers ---- */

static mb_node *node_new(void) {
  mb_node_opts o = { 0 };
  o.schedulers = 2;
  o.log_level = "none";
  mb_node *n = mb_node_new(&o);
  CHECK(n != NULL);
  return n;
}

static mb_pid spawn_named(mb_node *n, const mb_native_ops *ops, const char *name) {
  mb_pid pid;
  CHECK_EQ_INT(mb_native_spawn(n, ops, malloc(16), NULL, &pid), 0);
  if (name) CHECK_EQ_INT(mb_registry_add(n, name, strlen(name), pid), 0);
  return pid;
}

static void stop_and_free(mb_node *n, int destroys) {
  mb_node_stop(n);
  CHECK_EQ_INT(destroy_count(), destroys);
  mb_node_free(n);
  CHECK_EQ_INT(destroy_count(), destroys);
}

static void run_script(mb_node *n, const char *src) {
  char path[] = "/tmp/mb_test_native_XXXXXX.lua";
  check_write_script(path, src);
  mb_pid pid;
  CHECK_EQ_INT(mb_spawn_script(n, path, 0, NULL, &pid), 0);
  unlink(path);   /* loaded at spawn */
}

#define LUA_HEAD "local mb = require 'moonbeam'\nlocal sink = mb.whereis('sink')\n" \
  "local function say(x) mb.send(sink, x) end\n"

/* ---- tests ---- */

TEST(echo_replies_to_a_lua_process) {
  mb_node *n = node_new();
  spawn_named(n, &sink_ops, "sink");
  spawn_named(n, &echo_ops, "echo");
  run_script(n, LUA_HEAD
    "local echo = mb.whereis('echo')\n"
    "local info = mb.info(echo)\n"
    "local listed = false\n"
    "for _, p in ipairs(mb.processes()) do if p == echo then listed = true end end\n"
    "say({ info.module, listed })\n"
    "mb.send(echo, { mb.self(), 'ping', 41 })\n"
    "local r = mb.receive(5000)\n"
    "say({ r[1], r[2], r[3], r[4] == echo })\n");
  CHECK_EQ_INT(mb_node_start(n), 0);
  CHECK_EQ_STR(wait_report(1), "{\"echo\", true}");
  CHECK_EQ_STR(wait_report(2), "{\"pong\", \"ping\", 42, true}");
  stop_and_free(n, 2);   /* the stop killed both */
}

/* Links and monitors from Lua get the native's own reason; destroy ran before
 * they were told. */
TEST(lua_link_and_monitor_get_the_exit_reason) {
  mb_node *n = node_new();
  spawn_named(n, &sink_ops, "sink");
  spawn_named(n, &echo_ops, "echo");
  run_script(n, LUA_HEAD
    "local echo = mb.whereis('echo')\n"
    "mb.trap_exit(true)\n"
    "mb.link(echo)\n"
    "local ref = mb.monitor(echo)\n"
    "mb.send(echo, 'quit')\n"
    "local a = mb.receive(5000)\n"
    "local b = mb.receive(5000)\n"
    "if a[1] == 'DOWN' then a, b = b, a end\n"
    "say({ a[1], a[2] == echo, a[3], b[1], b[2] == ref, b[3] == echo, b[4] })\n");
  CHECK_EQ_INT(mb_node_start(n), 0);
  CHECK_EQ_STR(wait_report(1), "{\"EXIT\", true, {\"bye\", 7}, \"DOWN\", true, true, {\"bye\", 7}}");
  check_destroyed(1, "{\"bye\", 7}");
  stop_and_free(n, 2);
}

TEST(kill_calls_destroy_once) {
  mb_node *n = node_new();
  spawn_named(n, &sink_ops, "sink");
  /* a trapping native too: "kill" is not trappable */
  spawn_named(n, &trapper_ops, "trapper");
  run_script(n, LUA_HEAD
    "local t = mb.whereis('trapper')\n"
    "local ref = mb.monitor(t)\n"
    "mb.exit(t, 'kill')\n"
    "local d = mb.receive(5000)\n"
    "say({ d[1], d[2] == ref, d[4], mb.is_alive(t) })\n");
  CHECK_EQ_INT(mb_node_start(n), 0);
  CHECK_EQ_STR(wait_report(1), "{\"DOWN\", true, \"killed\", false}");
  check_destroyed(1, "killed");
  stop_and_free(n, 2);
}

/* "from=<0.N>" of a trapper's report line (static copy). */
static const char *sender(const char *line) {
  static char buf[4][64];
  static int k;
  char *out = buf[k++ % 4];
  const char *f = strstr(line, "from=");
  CHECK(f != NULL);
  size_t len = strcspn(f, " ");
  snprintf(out, 64, "%.*s", (int)len, f);
  return out;
}

TEST(a_trapping_native_receives_exit_messages) {
  mb_node *n = node_new();
  spawn_named(n, &sink_ops, "sink");
  mb_pid t = spawn_named(n, &trapper_ops, "trapper");
  run_script(n, LUA_HEAD
    "local t = mb.whereis('trapper')\n"
    "mb.send(t, 'hello')\n"
    "mb.exit(t, 'custom')\n"
    "mb.exit(t, 'normal')\n"
    "mb.link(t)\n"
    "mb.exit('byebye')\n");
  CHECK_EQ_INT(mb_node_start(n), 0);
  const char *a = wait_report(1), *b = wait_report(2), *c = wait_report(3), *d = wait_report(4);
  CHECK(strncmp(a, "MSG from=<0.", 12) == 0 && strstr(a, "> hello"));
  CHECK(strncmp(b, "EXIT from=<0.", 13) == 0 && strstr(b, "> custom"));
  CHECK(strncmp(c, "EXIT from=<0.", 13) == 0 && strstr(c, "> normal"));
  CHECK(strncmp(d, "EXIT from=<0.", 13) == 0 && strstr(d, "> byebye"));
  CHECK_EQ_STR(sender(a), sender(b));   /* all from the script */
  CHECK_EQ_STR(sender(a), sender(d));
  CHECK_EQ_INT(destroy_count(), 0);
  mb_proc *p = mb_proc_get(n, t);   /* still alive: it traps */
  CHECK(p != NULL);
  mb_proc_unref(p);
  mb_node_stop(n);
  CHECK_EQ_INT(destroy_count(), 2);
  mb_node_free(n);
}

/* A native exit signal at a Lua process, and a native spawned linked from a native. */
TEST(natives_signal_and_link_each_other) {
  mb_node *n = node_new();
  spawn_named(n, &sink_ops, "sink");
  spawn_named(n, &echo_ops, "echo");
  spawn_named(n, &parent_ops, "parent");
  run_script(n, LUA_HEAD
    "local echo = mb.whereis('echo')\n"
    "local victim = mb.spawn(function() require('moonbeam').receive() end)\n"
    "local r1 = mb.monitor(victim)\n"
    "mb.send(echo, { 'kill', victim })\n"
    "local d = mb.receive(5000)\n"
    "say({ d[1], d[4] })\n"
    "while not mb.whereis('child') do mb.sleep(1) end\n"
    "local child = mb.whereis('child')\n"
    "local r2 = mb.monitor(child)\n"
    "mb.send(mb.whereis('parent'), 'go')\n"
    "local d2 = mb.receive(5000)\n"
    "say({ d2[1], d2[2] == r2, d2[4] })\n");
  CHECK_EQ_INT(mb_node_start(n), 0);
  CHECK_EQ_STR(wait_report(1), "child up");
  CHECK_EQ_STR(wait_report(2), "{\"DOWN\", \"zapped\"}");
  CHECK_EQ_STR(wait_report(3), "{\"DOWN\", true, \"boom\"}");
  CHECK_EQ_INT(destroy_count(), 2);   /* parent and child */
  stop_and_free(n, 4);
}

/* Stop with many natives alive (some trapping, some busy with messages). */
TEST(node_stop_ends_live_natives) {
  for (int round = 0; round < 20; round++) {
    pthread_mutex_lock(&lock);
    destroyed = 0;
    pthread_mutex_unlock(&lock);
    mb_node *n = node_new();
    for (int i = 0; i < 30; i++) spawn_named(n, i % 3 ? &idle_ops : &trapper_ops, NULL);
    spawn_named(n, &sink_ops, "sink");
    run_script(n, LUA_HEAD
      "for _, p in ipairs(mb.processes()) do if p ~= mb.self() and p ~= sink then mb.link(p); mb.send(p, 1) end end\n"
      "mb.receive()\n");
    CHECK_EQ_INT(mb_node_start(n), 0);
    stop_and_free(n, 31);
  }
}

/* Natives that never ran (node never started) and natives left by halt are
 * released when the node is freed. */
TEST(free_releases_natives_that_never_finished) {
  mb_node *n = node_new();
  for (int i = 0; i < 5; i++) spawn_named(n, &idle_ops, NULL);
  mb_node_free(n);
  CHECK_EQ_INT(destroy_count(), 5);

  n = node_new();
  spawn_named(n, &sink_ops, "sink");
  for (int i = 0; i < 5; i++) spawn_named(n, &idle_ops, NULL);
  run_script(n, "require('moonbeam').halt(3)\n");
  CHECK_EQ_INT(mb_node_start(n), 0);
  CHECK_EQ_INT(mb_node_wait(n), 3);
  mb_node_free(n);
  CHECK_EQ_INT(destroy_count(), 11);
}

TEST(spawn_fails_cleanly_on_a_stopped_node) {
  mb_node *n = node_new();
  mb_node_stop(n);
  mb_pid pid = 1;
  void *data = malloc(4);
  CHECK_EQ_INT(mb_native_spawn(n, &idle_ops, data, NULL, &pid), MB_ESTATE);
  CHECK_EQ_INT(pid, 0);
  free(data);   /* still ours */
  mb_node_free(n);
  CHECK_EQ_INT(destroy_count(), 0);
}

TEST_MAIN(CHECK_CASE(echo_replies_to_a_lua_process), CHECK_CASE(lua_link_and_monitor_get_the_exit_reason),
          CHECK_CASE(kill_calls_destroy_once), CHECK_CASE(a_trapping_native_receives_exit_messages),
          CHECK_CASE(natives_signal_and_link_each_other), CHECK_CASE(node_stop_ends_live_natives),
          CHECK_CASE(free_releases_natives_that_never_finished),
          CHECK_CASE(spawn_fails_cleanly_on_a_stopped_node))
