/* test_call: gen_server calls hammered across schedulers (core/call.c,
 * core/gen_server.c), for the ThreadSanitizer run above all: many clients, servers
 * killed mid-call, cycles closed from both sides at once, replies racing
 * timeouts. Each test runs a script as the first process of a 2-scheduler node
 * whose path holds the callback module; the script halts 0 when every call ended
 * as it should. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lauxlib.h>
#include "nodecheck.h"
#include "proc.h"
#include "sched_internal.h"
#include "term.h"

static const char server_module[] =
  "local mb = require 'moonbeam'\n"
  "local gs = require 'moonbeam.gen_server'\n"
  "local M = {}\n"
  "function M.init(n) return 'ok', n end\n"
  "function M.handle_call(req, from, n)\n"
  "  if req == 'inc' then return 'reply', n + 1, n + 1 end\n"
  "  if req == 'tmo' then return 'reply', n, n, 60000 end\n"   /* a server timeout the next message cancels */
  "  if req == 'nap' then mb.sleep(math.random(0, 2)); return 'reply', 'late', n end\n"
  "  if type(req) == 'table' and req[1] == 'hold' then\n"   /* tell req[2], never reply */
  "    mb.send(req[2], {'held', from}); return 'noreply', n\n"
  "  end\n"
  "  if type(req) == 'table' then\n"
  "    local ok, r = pcall(gs.call, req[2], 'inc', 60000)\n"
  "    return 'reply', {ok, r}, n\n"
  "  end\n"
  "  return 'reply', n, n\n"
  "end\n"
  "function M.handle_cast(m, n) return 'noreply', n + 1 end\n"
  "return M\n";

/* Run src on a 2-scheduler node whose path holds gs_hammer.lua: its status. */
static int run_with_server(const char *src) { return check_run_with_module("gs_hammer", server_module, src, 2); }

/* ---- probe: what Lua cannot see of a process, for the leak checks ---- */

/* probe.monitored_by(pid): how many monitors the live process pid is the target of. */
static int probe_monitored_by(lua_State *L) {
  mb_pid pid;
  if (!mb_test_pid(L, 1, &pid)) return luaL_typeerror(L, 1, "pid");
  mb_proc *q = mb_proc_get(mb_proc_of(L)->node, pid);
  if (!q) return luaL_error(L, "probe: %d is gone", (int)pid);
  mb_lock_take(&q->meta);
  lua_pushinteger(L, q->monitored_by.n);
  mb_lock_give(&q->meta);
  mb_proc_unref(q);
  return 1;
}

/* probe.calls(): how many call refs the calling process holds live. */
static int probe_calls(lua_State *L) {
  lua_pushinteger(L, mb_proc_of(L)->calls.n);
  return 1;
}

/* probe.timers(): the timers in the heap of the scheduler running the caller
 * (with one scheduler: all of them), after it freed those cancelled elsewhere. */
static int probe_timers(lua_State *L) {
  lua_pushinteger(L, mb_tls_sched->timers.n);
  return 1;
}

static int open_probe(lua_State *L) {
  static const luaL_Reg fns[] = { { "monitored_by", probe_monitored_by }, { "calls", probe_calls },
                                  { "timers", probe_timers }, { NULL, NULL } };
  luaL_newlib(L, fns);
  return 1;
}

/* The script's checks: `settle(pid, n)` waits (bounded) until pid is the target of n
 * monitors; a failed assert prints its message and halts the node with 1. */
static const char probe_prelude[] =
  "local mb = require 'moonbeam'; local gs = require 'moonbeam.gen_server'; local probe = require 'probe'\n"
  "local me = mb.self()\n"
  "local function settle(pid, n)\n"
  "  for _ = 1, 1000 do if probe.monitored_by(pid) == n then return true end; mb.sleep(10) end\n"
  "  return false\n"
  "end\n"
  "local function down_of(pid)\n"
  "  local ref = mb.monitor(pid)\n"
  "  return function() assert(mb.receive(function(m) return type(m) == 'table' and m[1] == 'DOWN' and m[2] == ref end, 10000)) end\n"
  "end\n"
  "local ok, err = pcall(function()\n";

/* Run body (inside the prelude's pcall) on a node of that many schedulers with
 * gs_hammer and the probe: its status. */
static int run_probed(const char *body, int schedulers) {
  char src[8192];
  snprintf(src, sizeof src, "%s%s\nend)\n"
           "if not ok then io.stderr:write(tostring(err), '\\n'); mb.halt(1) end\nmb.halt(0)\n", probe_prelude, body);
  return check_run_with_modules("gs_hammer", server_module, src, schedulers, "probe", open_probe);
}

/* 40 clients call 4 servers 300 times each while two servers are killed: every
 * call is answered or fails with "call to ...", none is lost. */
TEST(many_clients_while_servers_die_every_call_ends) {
  CHECK_EQ_INT(run_with_server(
    "local mb = require 'moonbeam'; local gs = require 'moonbeam.gen_server'\n"
    "local me, servers = mb.self(), {}\n"
    "for i = 1, 4 do servers[i] = gs.start('gs_hammer', 0) end\n"
    "local clients, per = 40, 300\n"
    "for c = 1, clients do\n"
    "  mb.spawn(function(me, servers, per)\n"
    "    local mb = require 'moonbeam'; local gs = require 'moonbeam.gen_server'\n"
    "    local ok_n, failed = 0, 0\n"
    "    for i = 1, per do\n"
    "      local s = servers[i % #servers + 1]\n"
    "      local ok, r = pcall(gs.call, s, 'inc', 10000)\n"
    "      if ok then ok_n = ok_n + 1\n"
    "      else assert(type(r) == 'string' and r:find('^call to <0%.%d+>: '), r); failed = failed + 1 end\n"
    "      if i % 50 == 0 then gs.cast(s, 'x') end\n"
    "    end\n"
    "    mb.send(me, {'done', ok_n, failed, mb.info(mb.self()).message_queue_len})\n"
    "  end, me, servers, per)\n"
    "end\n"
    "mb.exit(servers[1], 'kill'); mb.exit(servers[3], 'boom')\n"
    "local total = 0\n"
    "for c = 1, clients do\n"
    "  local m = mb.receive(60000)\n"
    "  assert(m and m[1] == 'done', 'a client hung')\n"
    "  assert(m[4] == 0, 'a reply or DOWN stayed queued')\n"
    "  total = total + m[2] + m[3]\n"
    "end\n"
    "assert(total == clients * per)\n"
    "mb.halt(0)\n"), 0);
}

/* Two servers, each asked at once to call the other: a cycle closed from both
 * sides. Every round ends (some with "deadlock") long before the 60 s timeout. */
TEST(cycles_closed_from_both_sides_never_hang) {
  CHECK_EQ_INT(run_with_server(
    "local mb = require 'moonbeam'; local gs = require 'moonbeam.gen_server'\n"
    "local me = mb.self()\n"
    "local a, b = gs.start('gs_hammer', 0), gs.start('gs_hammer', 0)\n"
    "local deadlocks = 0\n"
    "for round = 1, 200 do\n"
    "  for _, pair in ipairs({{a, b}, {b, a}}) do\n"
    "    mb.spawn(function(me, s, other)\n"
    "      local gs = require 'moonbeam.gen_server'\n"
    "      require('moonbeam').send(me, gs.call(s, {'call', other}, 60000))\n"
    "    end, me, pair[1], pair[2])\n"
    "  end\n"
    "  for i = 1, 2 do\n"
    "    local r = mb.receive(60000)\n"
    "    assert(r, 'a cross call hung')\n"
    "    if not r[1] then assert(r[2]:find(': deadlock$'), r[2]); deadlocks = deadlocks + 1 end\n"
    "  end\n"
    "end\n"
    "mb.halt(0)\n"), 0);
}

/* Calls that time out while their replies are on the way: a late reply never
 * reaches the caller's mailbox and no call ref stays live. */
TEST(replies_racing_timeouts_are_dropped) {
  CHECK_EQ_INT(run_with_server(
    "local mb = require 'moonbeam'; local gs = require 'moonbeam.gen_server'\n"
    "local me = mb.self()\n"
    "local servers = {gs.start('gs_hammer', 0), gs.start('gs_hammer', 0)}\n"
    "for c = 1, 8 do\n"
    "  mb.spawn(function(me, servers)\n"
    "    local mb = require 'moonbeam'; local gs = require 'moonbeam.gen_server'\n"
    "    local answered, timed_out = 0, 0\n"
    "    for i = 1, 200 do\n"
    "      local ok, r = pcall(gs.call, servers[i % 2 + 1], 'nap', math.random(0, 2))\n"
    "      if ok then answered = answered + 1 else assert(r:find(': timeout$'), r); timed_out = timed_out + 1 end\n"
    "    end\n"
    "    gs.call(servers[1], 'get'); gs.call(servers[2], 'get')   -- every late reply was sent by now\n"
    "    mb.send(me, {answered + timed_out, mb.receive(0), mb.info(mb.self()).message_queue_len})\n"
    "  end, me, servers)\n"
    "end\n"
    "for c = 1, 8 do\n"
    "  local m = mb.receive(60000)\n"
    "  assert(m and m[1] == 200 and m[2] == nil and m[3] == 0, 'a late reply was queued')\n"
    "end\n"
    "mb.halt(0)\n"), 0);
}

/* 50 callers wait on a server that never replies; `end_it` (with the call's
 * message m and the caller c) kills each: afterwards the server is nobody's target. */
static int killed_callers_leave_no_monitor(const char *end_it, int schedulers) {
  char body[2048];
  snprintf(body, sizeof body,
    "local s = gs.start('gs_hammer', 0)\n"
    "for i = 1, 50 do\n"
    "  local c = mb.spawn(function(s, me) require('moonbeam.gen_server').call(s, {'hold', me}, math.huge) end, s, me)\n"
    "  local m = mb.receive(10000); assert(m and m[1] == 'held', 'the call did not come')\n"
    "  local down = down_of(c)\n"
    "  %s; down()\n"
    "end\n"
    "assert(settle(s, 0), 'the killed callers left ' .. probe.monitored_by(s) .. ' monitors on the server')\n",
    end_it);
  return run_probed(body, schedulers);
}

/* Callers killed while they wait: each one's call monitor on the server goes
 * with it (it was kept until the server's end). */
TEST(killed_callers_leave_no_monitor_on_the_server) {
  CHECK_EQ_INT(killed_callers_leave_no_monitor("mb.exit(c, 'kill')", 2), 0);
}

/* A caller killed with a reply from a delegate (not the server) already in its
 * mailbox: drained, the reply ends the call, and the server's monitor goes too.
 * One scheduler: the reply and the kill both reach the caller before it runs. */
TEST(a_caller_killed_with_a_delegated_reply_queued_leaves_no_monitor) {
  CHECK_EQ_INT(killed_callers_leave_no_monitor("gs.reply(m[2], 'from a delegate'); mb.exit(c, 'kill')", 1), 0);
}

/* Calls to a server that holds them unanswered and time out, calls answered late
 * by a delegate, and plain calls: afterwards the server is nobody's target, the
 * caller holds no live call ref and no message. */
TEST(timeouts_and_delegated_replies_leave_nothing_behind) {
  CHECK_EQ_INT(run_probed(
    "local s = gs.start('gs_hammer', 0)\n"
    "for i = 1, 200 do\n"
    "  local ok, err = pcall(gs.call, s, {'hold', me}, i % 3)\n"
    "  assert(not ok and err:find(': timeout$'), err)\n"
    "  local m = mb.receive(10000); assert(m and m[1] == 'held')\n"
    "  if i % 2 == 0 then gs.reply(m[2], 'too late') end\n"
    "  gs.call(s, 'get')\n"
    "end\n"
    "assert(probe.calls() == 0, probe.calls() .. ' call refs stayed live')\n"
    "assert(settle(s, 0), 'the calls left ' .. probe.monitored_by(s) .. ' monitors on the server')\n"
    "assert(mb.receive(0) == nil and mb.info(me).message_queue_len == 0, 'a reply or DOWN stayed queued')\n",
    2), 0);
}

/* Waits that end every way a call's and a server's can (a reply before the
 * timeout, a timeout, a server timeout cancelled by a message) leave
 * no timer armed, on one scheduler where the probe sees every timer. */
TEST(calls_and_server_timeouts_leave_no_timer) {
  CHECK_EQ_INT(run_probed(
    "local s = gs.start('gs_hammer', 0)\n"
    "for i = 1, 300 do\n"
    "  assert(gs.call(s, 'tmo', 60000))\n"
    "  assert(gs.call(s, 'inc', 60000))\n"
    "  assert(not pcall(gs.call, s, {'hold', me}, i % 2))\n"
    "  assert(mb.receive(10000)[1] == 'held')\n"
    "  assert(mb.receive(i % 2) == nil)\n"
    "end\n"
    "mb.sleep(5)   -- a tick of the scheduler loop: the timers cancelled by others are freed\n"
    "assert(probe.timers() == 0, probe.timers() .. ' timers left armed')\n",
    1), 0);
}

TEST_MAIN(CHECK_CASE(many_clients_while_servers_die_every_call_ends),
          CHECK_CASE(cycles_closed_from_both_sides_never_hang),
          CHECK_CASE(replies_racing_timeouts_are_dropped),
          CHECK_CASE(killed_callers_leave_no_monitor_on_the_server),
          CHECK_CASE(a_caller_killed_with_a_delegated_reply_queued_leaves_no_monitor),
          CHECK_CASE(timeouts_and_delegated_replies_leave_nothing_behind),
          CHECK_CASE(calls_and_server_timeouts_leave_no_timer))
