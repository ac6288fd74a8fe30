#!/usr/bin/env escript
%%! +S 2:2
%% ring: 1000 processes in a ring pass one token 1000 laps (1,000,000 hops); metric hops_per_s.
-mode(compile).

-define(PROCS, 1000).
-define(LAPS, 1000).

main(_) ->
    Parent = self(),
    Pids = [spawn(fun() -> node_start(Parent) end) || _ <- lists:seq(1, ?PROCS)],
    [First | Rest] = Pids,
    lists:foreach(fun({P, Next}) -> P ! Next end, lists:zip(Pids, Rest ++ [First])),
    [receive ready -> ok end || _ <- Pids],
    Hops = ?PROCS * ?LAPS,
    T0 = now_ms(),
    First ! Hops,                         % the token: hops still to go
    receive done -> ok end,
    Secs = (now_ms() - T0) / 1000,
    metric("hops_per_s", Hops / Secs, "hops/s"),
    halt(0).

node_start(Parent) ->
    receive Next when is_pid(Next) -> Parent ! ready, node_loop(Parent, Next) end.

node_loop(Parent, Next) ->
    receive
        1 -> Parent ! done;               % the last hop has arrived
        N -> Next ! N - 1
    end,
    node_loop(Parent, Next).

now_ms() -> erlang:monotonic_time(microsecond) / 1000.

metric(Name, Value, Unit) -> io:format("METRIC ~s ~.1f ~s~n", [Name, float(Value), Unit]).
