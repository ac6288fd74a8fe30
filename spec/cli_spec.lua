-- SPEC 6 (the command line), and the parts of SPEC 1 that only a whole node shows: print,
-- os.exit, mb.halt, crash reports, exit statuses and shutdown on SIGTERM.
local C = require "helpers.cli"

local script = C.script

describe("the moonbeam command", function()
  it("runs a script as the first process and exits 0 when it ends", function()
    local r = C.run { script "hello.lua" }
    assert.equal(0, r.status)
    assert.equal("hello from moonbeam\n", r.stdout)
  end)

  it("passes the arguments after the script as ...", function()
    local r = C.run { script "args.lua", "one", "two words", "" }
    assert.equal(0, r.status)
    assert.same({ "3", "one", "two words", "" }, r.out)
  end)

  it("passes option-like arguments after the script to the script", function()
    local r = C.run { script "args.lua", "-S", "3", "--bogus" }
    assert.equal(0, r.status)
    assert.same({ "3", "-S", "3", "--bogus" }, r.out)
  end)

  it("runs until no process is alive, not only the first", function()
    local r = C.run { script "wait_child.lua" }
    assert.equal(0, r.status)
    assert.same({ "first done", "child done" }, r.out)
  end)

  it("does not wait for timers aimed at processes that ended", function()
    local r = C.run { script "timer_dead.lua" }
    assert.equal(0, r.status)
    assert.same({ "done" }, r.out)
  end)

  it("exits 1 and prints one crash report when the first process raises an error", function()
    local r = C.run { script "crash_first.lua" }
    assert.equal(1, r.status)
    assert.is_truthy(r.stderr:find("kaboom-first", 1, true))
    assert.is_truthy(r.stderr:find("crash_first", 1, true))
    assert.is_truthy(r.out[1] and r.out[1]:match("^<0%.%d+>$"), r.out[1])
    assert.is_truthy(r.stderr:find(r.out[1], 1, true))
    assert.is_truthy(r.stderr:find("crash_first.lua:%d+"))
    assert.equal(1, C.count(r.stderr:lower(), "traceback"))
  end)

  it("exits 1 when the first process ends with an abnormal reason", function()
    local r = C.run { script "exit_with.lua", "abnormal" }
    assert.equal(1, r.status)
    assert.is_truthy(r.stderr:find("bad-reason", 1, true))
    assert.equal(1, C.run { script "exit_with.lua", "table" }.status)
  end)

  it("renders a long table reason whole in the first process's crash report", function()
    local r = C.run { script "exit_with.lua", "long_table" }
    assert.equal(1, r.status, r.stderr)
    local x, y, z = string.rep("x", 3000), string.rep("y", 3000), string.rep("z", 2000)
    assert.is_truthy(r.stderr:find(('{"%s", "%s", {7, ["deep"] = "%s"}}'):format(x, y, z), 1, true), r.stderr)
  end)

  for _, how in ipairs { "return", "normal", "shutdown", "shutdown_tuple" } do
    it("exits 0 without a crash report when the first process ends with a normal reason (" .. how .. ")", function()
      local r = C.run { script "exit_with.lua", how }
      assert.equal(0, r.status)
      assert.is_nil(r.stderr:lower():find("traceback", 1, true))
    end)
  end

  it("prints a crash report naming pid, module, reason and traceback, and still exits 0", function()
    local r = C.run { "-P", C.modules, script "crash_child.lua" }
    assert.equal(0, r.status)
    local pid = r.out[1]
    assert.is_truthy(pid and pid:match("^<0%.%d+>$"), pid)
    assert.equal("first process done", r.out[2])
    assert.is_truthy(r.stderr:find(pid, 1, true))
    assert.is_truthy(r.stderr:find("crasher", 1, true))
    assert.is_truthy(r.stderr:find("kaboom-module-1", 1, true))
    assert.is_truthy(r.stderr:find("crasher.lua:%d+"))
    assert.equal(1, C.count(r.stderr:lower(), "traceback"))
  end)

  it("prints exactly one crash report per crash", function()
    local r = C.run { "-P", C.modules, script "crash_child.lua", "3" }
    assert.equal(0, r.status)
    assert.equal(3, C.count(r.stderr:lower(), "traceback"))
    for i = 1, 3 do
      assert.is_truthy(r.stderr:find(r.out[i], 1, true))
      assert.is_truthy(r.stderr:find("kaboom-module-" .. i, 1, true))
    end
  end)

  it("prints no crash report for processes that end with normal reasons", function()
    local r = C.run { script "normal_children.lua" }
    assert.equal(0, r.status)
    assert.same({ "all ended" }, r.out)
    assert.is_nil(r.stderr:lower():find("traceback", 1, true))
  end)

  it("exits 2 for an unknown option", function()
    local r = C.run { "--bogus", script "hello.lua" }
    assert.equal(2, r.status)
    assert.are_not.equal("", r.stderr)
  end)

  it("exits 2 when the script is missing", function()
    local r = C.run {}
    assert.equal(2, r.status)
    assert.are_not.equal("", r.stderr)
    assert.equal(2, C.run { "-S", "2" }.status)
  end)

  it("exits 2 for an option without its value or with a bad one", function()
    assert.equal(2, C.run { "-S" }.status)
    assert.equal(2, C.run { "-S", "many", script "hello.lua" }.status)
    assert.equal(2, C.run { "--log-level", "loud", script "hello.lua" }.status)
  end)

  it("exits 2 with a message when the script is a directory", function()
    local r = C.run { "spec/fixtures" }
    assert.equal(2, r.status)
    assert.is_truthy(r.stderr:find("spec/fixtures", 1, true), r.stderr)
  end)

  it("fails with a message naming a script that does not exist", function()
    local r = C.run { "/nonexistent/no_such_script.lua" }
    assert.are_not.equal(0, r.status)
    assert.is_truthy(r.stderr:find("no_such_script", 1, true))
  end)

  it("exits 1 with the compiler's message when the script does not compile", function()
    local r = C.run { "spec/fixtures/broken_syntax.lua" }
    assert.equal(1, r.status)
    assert.is_truthy(r.stderr:find("broken_syntax.lua:%d+:"), r.stderr)
    assert.is_truthy(r.stderr:find("near", 1, true), r.stderr)
  end)

  it("prints its version with --version", function()
    local r = C.run { "--version" }
    assert.equal(0, r.status)
    assert.is_truthy(r.stdout:match("%d+%.%d+%.%d+"), r.stdout)
  end)

  it("prints its usage and options with --help", function()
    local r = C.run { "--help" }
    assert.equal(0, r.status)
    local text = r.stdout
    assert.is_truthy(text:lower():find("usage", 1, true))
    -- --watch comes with hot reload (SPEC 5); the core's CLI does not offer it yet
    for _, opt in ipairs { "-S", "-P", "--log-level", "--c-modules", "--version", "--help" } do
      assert.is_truthy(text:find(opt, 1, true), opt .. " missing from --help")
    end
  end)

  it("runs with one scheduler thread under -S 1, preempting an endless loop", function()
    local r = C.run { "-S", "1", script "preempt.lua" }
    assert.equal(0, r.status)
    assert.same({ "pong" }, r.out)
  end)

  it("finds modules for spawn and require on the -P path", function()
    local r = C.run { "-P", C.modules, script "use_modules.lua" }
    assert.equal(0, r.status)
    assert.same({ "REQUIRED!", "greetings" }, r.out)
  end)

  it("does not find them without -P", function()
    local r = C.run { script "use_modules.lua" }
    assert.equal(1, r.status)
  end)

  it("lets processes load C modules under --c-modules, and only then", function()
    local lfs = package.searchpath("lfs", package.cpath)   -- busted's own
    if not lfs then return pending("no lfs on this Lua's package.cpath") end
    local env = { LUA_CPATH_5_4 = lfs }
    local on = C.run({ "--c-modules", script "c_module.lua" }, { env = env })
    assert.equal(0, on.status, on.stderr)
    assert.same({ "true\ttable" }, on.out)
    local off = C.run({ script "c_module.lua" }, { env = env })
    assert.equal(0, off.status, off.stderr)
    assert.same({ "false\toff" }, off.out)
  end)

  it("searches ./?.lua and ./?/init.lua by default", function()
    local r = C.run({ "main.lua" }, { cwd = C.scripts .. "/localdir" })
    assert.equal(0, r.status)
    assert.same({ "localmod found", "pkg found" }, r.out)
  end)
end)

describe("print, os.exit and mb.halt in a node", function()
  it("keeps every printed line whole while processes print at once", function()
    local r = C.run { "-S", "2", script "print_storm.lua" }
    assert.equal(0, r.status)
    local expected, bad = {}, {}
    for me = 1, 4 do
      for i = 1, 500 do
        expected[table.concat({ "p" .. me, i, string.rep(string.char(96 + me), 50 + (i % 7) * 30), "end" }, "\t")] = true
      end
    end
    local seen = 0
    for _, line in ipairs(r.out) do
      if expected[line] then
        expected[line] = nil
        seen = seen + 1
      else
        bad[#bad + 1] = line
      end
    end
    assert.equal(0, #bad, "mangled lines, e.g.: " .. tostring(bad[1]))
    assert.equal(2000, seen)
  end)

  it("prints like Lua's print: tostring of each argument, joined by tabs", function()
    local r = C.run { script "print_values.lua" }
    assert.equal(0, r.status)
    assert.equal("a\t1\t2.5\ttrue\tnil\tcustom", r.out[1])
    assert.is_truthy(r.out[2]:match("^<0%.%d+>$"))
    assert.equal(r.out[2], r.out[3])
  end)

  it("makes os.exit(3) exit the node with status 3, flushing output", function()
    local r = C.run { script "os_exit.lua" }
    assert.equal(3, r.status)
    assert.equal("before exit", r.stdout)
  end)

  it("makes os.exit in a spawned process exit the whole node", function()
    local r = C.run { script "os_exit_child.lua" }
    assert.equal(6, r.status)
    assert.same({ "child exiting" }, r.out)
  end)

  it("makes mb.halt(code) flush output, run no more Lua and exit with code", function()
    local r = C.run { script "halt.lua", "4" }
    assert.equal(4, r.status)
    assert.equal("before halt\nunterminated", r.stdout)
  end)

  it("makes mb.halt() exit with status 0", function()
    local r = C.run { script "halt.lua" }
    assert.equal(0, r.status)
    assert.equal("before halt\nunterminated", r.stdout)
  end)

  it("makes mb.halt in a spawned process stop the node", function()
    local r = C.run { script "halt_child.lua" }
    assert.equal(5, r.status)
    assert.equal("", r.stdout)
  end)
end)

describe("shutdown on SIGTERM", function()
  -- Run a script until it prints "ready", send it SIGTERM: its exit status and output.
  local function terminated(name)
    local h = C.start { script(name) }
    local ready = C.wait_output(h, "ready\n", 10)
    if ready then C.signal(h, "TERM") end
    local status = ready and C.wait_exit(h, 15)
    local r = C.finish(h)
    assert.is_true(ready, "the script never printed ready: " .. r.stderr)
    return status, r
  end

  it("sends exit shutdown to every process and exits 0", function()
    local status, r = terminated("sigterm.lua")
    assert.equal(0, status)
    assert.same({ "ready", "child got shutdown" }, r.out)
  end)

  it("sends it to processes spawned after the shutdown began", function()
    local status, r = terminated("sigterm_spawn.lua")
    assert.equal(0, status)
    assert.same({ "ready", "late child ended: shutdown" }, r.out)
  end)

  it("kills a process that ignores the shutdown after the grace time", function()
    local status, r = terminated("sigterm_stubborn.lua")
    assert.is_not_nil(status, "the node did not exit after SIGTERM")
    assert.equal(0, status)
    assert.same({ "ready", "stubborn child ignores shutdown" }, r.out)
  end)
end)
