-- The examples in scripts/examples run as the README says (from the repository's root) and print
-- what their comments promise.
local C = require "helpers.cli"

describe("scripts/examples", function()
  it("hello.lua: the demo ends with only the first process alive", function()
    local r = C.run({ "scripts/examples/hello.lua" }, { cwd = C.root })
    assert.equal(0, r.status, r.stderr)
    assert.truthy(r.stdout:find("1 process(es) still alive: just me. Bye.", 1, true), r.stdout)
  end)

  it("stack_demo.lua: the primer's stack server pushes by cast and pops by call", function()
    local r = C.run({ "scripts/examples/stack_demo.lua" }, { cwd = C.root })
    assert.equal(0, r.status, r.stderr)
    assert.same({ "world", "hello", "nil", "false\tcall to stack: noproc" }, { table.unpack(r.out, 2) })
    assert.truthy(r.out[1]:find("^started\t<0%.%d+>$"), r.out[1])
  end)
end)
