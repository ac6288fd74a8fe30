-- SPEC 1: mb.log and mb.log_level (and SPEC 6's --log-level, which sets the node's level).
local H = require "helpers.node"
local C = require "helpers.cli"

describe("mb.log_level", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("is info by default and returns the old level when set", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local first = mb.log_level()
      local old = mb.log_level("debug")
      local now = mb.log_level()
      local back = mb.log_level("info")
      mb.send(parent, { first, old, now, back, mb.log_level() })
    end)
    assert.same({ "info", "info", "debug", "debug", "info" }, msg)
  end)

  it("accepts every level and none", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local seen = {}
      for _, l in ipairs { "debug", "info", "warning", "error", "none" } do
        mb.log_level(l)
        seen[#seen + 1] = mb.log_level()
      end
      mb.log_level("info")
      mb.send(parent, seen)
    end)
    assert.same({ "debug", "info", "warning", "error", "none" }, msg)
  end)

  it("is the node's level: a change in one process is seen by another", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.log_level("error")
      local _, ref = mb.spawn_monitor(function(p)
        require("moonbeam").send(p, { "other sees", require("moonbeam").log_level() })
      end, mb.self())
      local m = mb.receive(function(x) return x[1] == "other sees" end, 5000)
      mb.receive(function(x) return x[1] == "DOWN" and x[2] == ref end, 5000)
      mb.log_level("info")
      mb.send(parent, m)
    end)
    assert.same({ "other sees", "error" }, msg)
  end)

  it("raises for an unknown level and keeps the old one", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      local ok = pcall(mb.log_level, "loud")
      mb.send(parent, { ok, mb.log_level() })
    end)
    assert.same({ false, "info" }, msg)
  end)
end)

describe("mb.log", function()
  local node
  before_each(function() node = H.start() end)
  after_each(function() node:stop() end)

  it("takes each level with a format and arguments", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.log_level("none") -- keep the spec run's stderr quiet; the calls are still checked
      local oks = {}
      for _, l in ipairs { "debug", "info", "warning", "error" } do
        oks[#oks + 1] = pcall(mb.log, l, "checked %s %d", "call", 1)
      end
      mb.log_level("info")
      mb.send(parent, oks)
    end)
    assert.same({ true, true, true, true }, msg)
  end)

  it("raises for an unknown level", function()
    local msg = H.run(node, function(parent)
      local mb = require "moonbeam"
      mb.log_level("none")
      local ok = pcall(mb.log, "loud", "x")
      local ok2 = pcall(mb.log, "none", "x")
      mb.log_level("info")
      mb.send(parent, { ok, ok2 })
    end)
    assert.same({ false, false }, msg)
  end)

  -- On a real node: what reaches stderr at each --log-level.
  local function logged(level)
    local args = { C.script "log_lines.lua" }
    if level then table.insert(args, 1, "--log-level"); table.insert(args, 2, level) end
    local r = C.run(args)
    assert.equal(0, r.status)
    local pid = r.out[1]
    local found = {}
    for _, name in ipairs { "debug", "info", "warning", "error" } do
      for _, line in ipairs(r.err) do
        if line:find(name .. "-line", 1, true) then found[#found + 1] = { name = name, line = line } end
      end
    end
    return r, pid, found
  end

  it("writes one line on stderr with the level, the pid and the formatted text", function()
    local r, pid, found = logged(nil)
    assert.equal("info", r.out[2])
    assert.equal(3, #found)
    local texts = { info = "info-line two", warning = "warning-line 3", error = "error-line 004.5" }
    for _, f in ipairs(found) do
      assert.is_truthy(f.line:find(texts[f.name], 1, true), f.line)
      assert.is_truthy(f.line:lower():find(f.name, 1, true), f.line)
      assert.is_truthy(f.line:find(pid, 1, true), f.line)
    end
  end)

  it("keeps each entry's text on its line: a line break cannot forge an entry", function()
    local r = C.run { C.script "log_forge.lua" }
    assert.equal(0, r.status)
    local entries = {}
    for _, line in ipairs(r.err) do
      if line:find("^%d%d%d%d%-%d%d%-%d%dT") then entries[#entries + 1] = line
      else assert.is_truthy(line:find("^%s"), "a continuation line not indented: " .. line) end
      assert.is_nil(line:find("\r", 1, true), "a carriage return in: " .. line)
    end
    assert.equal(4, #entries, r.stderr)
    assert.is_truthy(entries[1]:find("%[info%] <0%.%d+> first"), entries[1])
    assert.is_truthy(entries[2]:find("%[warning%] <0%.%d+> second"), entries[2])
    assert.is_truthy(entries[3]:find("%[error%] <0%.%d+> third"), entries[3])
    assert.is_truthy(entries[4]:find("%[info%] <0%.%d+> last"), entries[4])
    assert.equal(3, C.count(r.stderr, "forged"))
  end)

  it("leaves out lines below the node's level, set by --log-level", function()
    local r, _, found = logged("debug")
    assert.equal("debug", r.out[2])
    assert.equal(4, #found)
    r, _, found = logged("error")
    assert.equal("error", r.out[2])
    assert.equal(1, #found)
    assert.equal("error", found[1].name)
    r, _, found = logged("none")
    assert.equal("none", r.out[2])
    assert.equal(0, #found)
  end)
end)
