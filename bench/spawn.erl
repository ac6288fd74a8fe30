#!/usr/bin/env escript
%%! +S 2:2
%% spawn: 100,000 idle processes each report to the parent; metrics spawns_per_s,
%% rss_bytes_per_process and idle_memory_bytes.
%% The pids are kept in a list, as bench/spawn.lua must keep them (issue 17: the
%% form that drops them runs at well under half this rate, which flatters us).
-mode(compile).

-define(N, 100000).

main(_) ->
    Parent = self(),
    Rss0 = rss(),
    T0 = now_ms(),
    Pids = spawn_n(?N, Parent, []),
    wait_up(?N),
    Secs = (now_ms() - T0) / 1000,
    Rss1 = rss(),
    ?N = length(Pids),                    % the list lives until here
    metric("spawns_per_s", ?N / Secs, "spawns/s"),
    metric("rss_bytes_per_process", (Rss1 - Rss0) / ?N, "bytes"),
    {memory, Mem} = erlang:process_info(hd(Pids), memory),   % what the VM counts for one
    metric("idle_memory_bytes", Mem, "bytes"),
    halt(0).                              % ends every process

spawn_n(0, _, Pids) -> Pids;
spawn_n(K, Parent, Pids) ->
    Pid = spawn(fun() -> Parent ! up, receive stop -> ok end end),
    spawn_n(K - 1, Parent, [Pid | Pids]).

wait_up(0) -> ok;
wait_up(K) -> receive up -> wait_up(K - 1) end.

%% VmRSS of this OS process (the escript VM), in bytes.
rss() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(Status, "VmRSS:\\s+(\\d+) kB", [{capture, all_but_first, list}]),
    list_to_integer(Kb) * 1024.

now_ms() -> erlang:monotonic_time(microsecond) / 1000.

metric(Name, Value, Unit) -> io:format("METRIC ~s ~.1f ~s~n", [Name, float(Value), Unit]).
