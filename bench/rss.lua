-- rss: VmRSS of this OS process (the whole node), in bytes. Shared by the benchmarks
-- that measure memory (require "bench.rss", from the repository's root).
return function()
  local f = assert(io.open("/proc/self/status"))
  local status = f:read("a")
  f:close()
  return tonumber(status:match("VmRSS:%s+(%d+) kB")) * 1024
end
