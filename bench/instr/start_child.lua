-- instr/start_child: N bench.gs_counter children added by supervisor.start_child (bench/instr counts them).
local mb = require "moonbeam"
local supervisor = require "moonbeam.supervisor"
local N = math.tointeger(tonumber((...))) or 1000
local sup = assert(supervisor.start_link { strategy = "one_for_one", children = {} })
for _ = 1, N do assert(supervisor.start_child(sup, { module = "bench.gs_counter", args = 0 })) end
mb.halt(0)
