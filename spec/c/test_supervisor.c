/* test_supervisor: supervisors hammered across schedulers (core/supervisor.c),
 * for the ThreadSanitizer run above all: children killed while clients call them
 * and add and remove children; a tree torn down while it restarts. Each test runs
 * a script as the first process of a 2-scheduler node whose path holds the worker
 * module; the script halts 0 when the tree ended up as it should. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "nodecheck.h"
#include "testhook.h"

static const char worker[] =
  "local M = {}\n"
  "function M.init(n) return 'ok', n or 0 end\n"
  "function M.handle_call(req, from, n) return 'reply', n + 1, n + 1 end\n"
  "return M\n";

static int run(const char *src) { return check_run_with_module("sup_hammer_w", worker, src, 2); }

/* A two-level tree: kills of its workers race calls to them and start_child /
 * terminate_child / delete_child from other processes; afterwards every spec'd
 * child is running again and answers. */
TEST(kills_race_calls_and_the_dynamic_api) {
  CHECK_EQ_INT(run(
    "local mb = require 'moonbeam'; local gs = require 'moonbeam.gen_server'\n"
    "local sup = require 'moonbeam.supervisor'\n"
    "local me = mb.self()\n"
    "local top = assert(sup.start_link { strategy = 'one_for_one', intensity = 100000, period = 1, children = {\n"
    "  { id = 'w1', module = 'sup_hammer_w', name = 'w1' },\n"
    "  { id = 'sub', type = 'supervisor', spec = { strategy = 'one_for_all', intensity = 100000, period = 1,\n"
    "      name = 'sub', children = { { id = 'w2', module = 'sup_hammer_w', name = 'w2' },\n"
    "                                 { id = 'w3', module = 'sup_hammer_w', name = 'w3' } } } } } })\n"
    "local workers = 4\n"
    "mb.trap_exit(true)\n"
    "for c = 1, workers do\n"
    "  mb.spawn(function(me, c)\n"
    "    local mb = require 'moonbeam'; local gs = require 'moonbeam.gen_server'\n"
    "    local sup = require 'moonbeam.supervisor'\n"
    "    for i = 1, 150 do\n"
    "      local name = ({ 'w1', 'w2', 'w3' })[i % 3 + 1]\n"
    "      local pid = mb.whereis(name)\n"
    "      if c % 2 == 0 and pid then mb.exit(pid, 'kill')\n"
    "      else pcall(gs.call, name, 'x', 1000) end\n"
    "      local id = c * 1000 + i\n"
    "      local p = sup.start_child('sub', { id = id, module = 'sup_hammer_w', restart = 'temporary' })\n"
    "      if p then   -- a one_for_all restart may have stopped and forgotten it (temporary) meanwhile\n"
    "        local ok, why = sup.terminate_child('sub', id)\n"
    "        assert(ok == true or why == 'not_found', why)\n"
    "      end\n"
    "    end\n"
    "    mb.send(me, 'done')\n"
    "  end, me, c)\n"
    "end\n"
    "for c = 1, workers do\n"
    "  local m = mb.receive(function(m) return m == 'done' end, 60000)\n"
    "  assert(m == 'done', 'a client hung')\n"
    "end\n"
    "for _, name in ipairs { 'w1', 'w2', 'w3' } do\n"
    "  local ok = false\n"
    "  for _ = 1, 1000 do ok = pcall(gs.call, name, 'x', 1000); if ok then break end; mb.sleep(1) end\n"
    "  assert(ok, name .. ' is not running again')\n"
    "end\n"
    "assert(#sup.which_children('sub') == 2, 'temporary children were left')\n"
    "mb.halt(0)\n"), 0);
}

/* Trees torn down by their parent's exit while their children are being killed:
 * nothing is left alive but the script. */
TEST(teardown_during_restarts_leaves_nothing) {
  CHECK_EQ_INT(run(
    "local mb = require 'moonbeam'; local sup = require 'moonbeam.supervisor'\n"
    "local me = mb.self()\n"
    "for round = 1, 30 do\n"
    "  local owner = mb.spawn(function(me)\n"
    "    local mb = require 'moonbeam'; local sup = require 'moonbeam.supervisor'\n"
    "    local children = {}\n"
    "    for i = 1, 5 do children[i] = { id = i, module = 'sup_hammer_w' } end\n"
    "    local s = assert(sup.start_link { strategy = 'rest_for_one', intensity = 1000, period = 1, children = children })\n"
    "    mb.send(me, { 'tree', s })\n"
    "    mb.receive()\n"
    "  end, me)\n"
    "  local s = mb.receive(10000)[2]\n"
    "  local ref = mb.monitor(s)\n"
    "  for _, c in ipairs(sup.which_children(s)) do if c.pid then mb.exit(c.pid, 'kill') end end\n"
    "  mb.exit(owner, 'boom')\n"
    "  local d = mb.receive(function(m) return type(m) == 'table' and m[1] == 'DOWN' and m[2] == ref end, 10000)\n"
    "  assert(d and d[4] == 'boom', 'the supervisor did not end with its parent')\n"
    "end\n"
    "for _ = 1, 1000 do if #mb.processes() == 1 then break end; mb.sleep(1) end\n"
    "assert(#mb.processes() == 1, 'processes were left behind')\n"
    "mb.halt(0)\n"), 0);
}

/* A spec whose normal form is over the node's message limit (4096 bytes here) is
 * refused like any bad spec, by start_link and by start_child, before it is
 * written whole: before, start_link took it (its buffer had no limit) and
 * start_child raised from the call that carried it. */
TEST(specs_over_the_message_limit_are_refused) {
  CHECK_EQ_INT(check_run_with_module_limit("sup_big_w", worker,
    "local mb = require 'moonbeam'; local sup = require 'moonbeam.supervisor'\n"
    "local kids = {}\n"
    "for i = 1, 8 do kids[i] = { id = i, module = 'sup_big_w', args = string.rep('x', 1000) } end\n"
    "local s, why = sup.start_link { children = kids }\n"
    "if s or why ~= 'invalid spec: message too large' then print('start_link:', s, why); mb.halt(1) end\n"
    "s = assert(sup.start_link { children = {} })\n"
    "local ok, p, why = pcall(sup.start_child, s, { module = 'sup_big_w', args = string.rep('x', 3000),\n"
    "  name = string.rep('n', 2000) })\n"
    "if not ok or p or why ~= 'invalid child spec: message too large' then\n"
    "  print('start_child:', ok, p, why); mb.halt(1) end\n"
    "mb.halt(0)\n", 1, 4096), 0);
}

/* ---- past races, widened by a pause at their point (testhook.h) ---- */

static void pause_after_named_spawn(const char *where) {
  if (strcmp(where, "supervisor_named_spawn") != 0) return;
  struct timespec ts = { 0, 200 * 1000000L };
  nanosleep(&ts, NULL);
}

/* A named process child that ends at once, held 200 ms between its spawn and its
 * name: it ended before it could be registered. It did start (its EXIT tells the
 * rest); before, the start failed as "already_started" and start_link with it. */
TEST(named_process_child_that_ends_before_its_name_has_started) {
  atomic_store(&mb_test_pause, pause_after_named_spawn);
  int status = check_run_with_module("sup_ends_at_once", "return function() error('at once', 0) end\n",
    "local mb = require 'moonbeam'; local sup = require 'moonbeam.supervisor'\n"
    "local s, why = sup.start_link { children = { { id = 'c', module = 'sup_ends_at_once', kind = 'process',\n"
    "  restart = 'temporary', name = 'doomed' } } }\n"
    "if not s then print('start_link: ' .. tostring(type(why) == 'table' and why[3] or why)); mb.halt(1) end\n"
    "for _ = 1, 1000 do if #sup.which_children(s) == 0 then mb.halt(0) end; mb.sleep(1) end\n"
    "print('the temporary child was not forgotten'); mb.halt(1)\n", 2);
  atomic_store(&mb_test_pause, (mb_test_pause_fn)NULL);
  CHECK_EQ_INT(status, 0);
}

TEST_MAIN(CHECK_CASE(kills_race_calls_and_the_dynamic_api),
          CHECK_CASE(teardown_during_restarts_leaves_nothing),
          CHECK_CASE(specs_over_the_message_limit_are_refused),
          CHECK_CASE(named_process_child_that_ends_before_its_name_has_started))
