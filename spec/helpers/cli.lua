-- helpers/cli: run the moonbeam binary on fixture scripts with captured output, every run bounded.
local M = {}

local function sh_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = sh_quote

local function cwd()
  local p = io.popen("pwd")
  local d = p:read("l")
  p:close()
  return d
end

M.root = cwd()
M.build = os.getenv("MB_BUILD") or "build"
if M.build:sub(1, 1) ~= "/" then M.build = M.root .. "/" .. M.build end
M.bin = M.build .. "/moonbeam"
M.scripts = M.root .. "/spec/fixtures/cli"
M.modules = M.root .. "/spec/fixtures/?.lua"

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
M.slurp = slurp

local function lines_of(s)
  local t = {}
  for line in s:gmatch("([^\n]*)\n") do t[#t + 1] = line end
  local tail = s:match("([^\n]+)$")
  if tail then t[#t + 1] = tail end
  return t
end
M.lines_of = lines_of

-- The path of a fixture script in spec/fixtures/cli.
function M.script(name) return M.scripts .. "/" .. name end

-- Run `moonbeam args...` (bounded by `timeout 20`), stdin from /dev/null.
-- opts.cwd: directory to run in; opts.env: {NAME = value} added to its environment.
-- Returns {status=, stdout=, stderr=, out=lines, err=lines}.
function M.run(args, opts)
  opts = opts or {}
  local out, err = os.tmpname(), os.tmpname()
  local cmd = { "timeout", tostring(opts.timeout or 20), sh_quote(opts.bin or M.bin) }
  if opts.env then
    local names = {}
    for k in pairs(opts.env) do names[#names + 1] = k end
    table.sort(names)
    for n = #names, 1, -1 do table.insert(cmd, 1, sh_quote(names[n] .. "=" .. opts.env[names[n]])) end
    table.insert(cmd, 1, "env")
  end
  for _, a in ipairs(args) do cmd[#cmd + 1] = sh_quote(a) end
  local line = table.concat(cmd, " ") .. " </dev/null >" .. sh_quote(out) .. " 2>" .. sh_quote(err)
  if opts.cwd then line = "cd " .. sh_quote(opts.cwd) .. " && " .. line end
  local ok, how, code = os.execute(line)
  local r = { stdout = slurp(out) or "", stderr = slurp(err) or "" }
  os.remove(out)
  os.remove(err)
  if how == "exit" then r.status = code else r.status = 128 + (code or 0) end
  r.out, r.err = lines_of(r.stdout), lines_of(r.stderr)
  return r
end

-- Count the non-overlapping occurrences of plain `needle` in `s`.
function M.count(s, needle)
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

local function sleep(s) os.execute("sleep " .. s) end

-- Start `moonbeam args...` in the background (a watchdog kills it after 25 s).
-- Returns a handle for wait_output / signal / wait_exit / finish.
function M.start(args)
  local h = { out = os.tmpname(), err = os.tmpname(), pidfile = os.tmpname(), statusfile = os.tmpname() }
  os.remove(h.pidfile)
  os.remove(h.statusfile)
  local cmd = { sh_quote(M.bin) }
  for _, a in ipairs(args) do cmd[#cmd + 1] = sh_quote(a) end
  local inner = table.concat(cmd, " ") .. " </dev/null >" .. sh_quote(h.out) .. " 2>" .. sh_quote(h.err) ..
    " & pid=$!; echo $pid >" .. sh_quote(h.pidfile .. ".tmp") .. "; mv " .. sh_quote(h.pidfile .. ".tmp") ..
    " " .. sh_quote(h.pidfile) ..
    "; ( sleep 25; kill -KILL $pid ) >/dev/null 2>&1 & dog=$!" ..
    "; wait $pid; st=$?; kill $dog >/dev/null 2>&1" ..
    "; echo $st >" .. sh_quote(h.statusfile .. ".tmp") .. "; mv " .. sh_quote(h.statusfile .. ".tmp") ..
    " " .. sh_quote(h.statusfile)
  os.execute("sh -c " .. sh_quote(inner) .. " >/dev/null 2>&1 &")
  return h
end

-- Wait (polling, at most `secs` seconds) until the background run's stdout contains `text`.
function M.wait_output(h, text, secs)
  for _ = 1, (secs or 10) * 20 do
    local s = slurp(h.out)
    if s and s:find(text, 1, true) then return true end
    sleep(0.05)
  end
  return false
end

function M.pid(h)
  for _ = 1, 200 do
    local s = slurp(h.pidfile)
    if s and s:match("%d+") then return s:match("%d+") end
    sleep(0.05)
  end
  error("the background moonbeam never started")
end

function M.signal(h, sig) os.execute("kill -" .. sig .. " " .. M.pid(h) .. " >/dev/null 2>&1") end

-- The exit status of the background run, or nil if it is still running after `secs` seconds.
function M.wait_exit(h, secs)
  for _ = 1, (secs or 15) * 20 do
    local s = slurp(h.statusfile)
    if s and s:match("%d+") then return tonumber(s:match("%d+")) end
    sleep(0.05)
  end
  return nil
end

-- Kill the run if it is still going, and return {stdout=, stderr=}; removes the temp files.
function M.finish(h)
  if not slurp(h.statusfile) then
    local pid = slurp(h.pidfile)
    if pid and pid:match("%d+") then os.execute("kill -KILL " .. pid:match("%d+") .. " >/dev/null 2>&1") end
  end
  local r = { stdout = slurp(h.out) or "", stderr = slurp(h.err) or "" }
  for _, f in ipairs { h.out, h.err, h.pidfile, h.statusfile } do os.remove(f) end
  r.out, r.err = lines_of(r.stdout), lines_of(r.stderr)
  return r
end

return M
