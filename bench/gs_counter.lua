-- gs_counter: the gen_server callback module of the gs_call and gs_rss benchmarks
-- (spawned as "bench.gs_counter" from the repo root); the state is a count that
-- every call and every cast bumps, and a call replies with the new count.
local counter = {}

function counter.init(n) return "ok", n end

function counter.handle_call(_request, _from, n) return "reply", n + 1, n + 1 end

function counter.handle_cast(_msg, n) return "noreply", n + 1 end

return counter
