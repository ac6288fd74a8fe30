#!/usr/bin/env escript
%%! +S 2:2
%% pingpong: round trips between two processes of a small tuple, a 100-integer list and a 20-key map; metrics *_rt_per_s.
-mode(compile).

-define(SMALL, 1000000).
-define(PAYLOAD, 500000).
-define(WARMUP, 1000).

main(_) ->
    Parent = self(),
    Echo = spawn(fun() -> echo(Parent) end),
    List = lists:seq(1, 100),
    Map = maps:from_list([{key(I), value(I)} || I <- lists:seq(1, 20)]),
    rounds(Echo, ?WARMUP, fun(I) -> {ping, Parent, I} end),
    bench("small_rt_per_s", Echo, ?SMALL, fun(I) -> {ping, Parent, I} end),
    bench("list100_rt_per_s", Echo, ?PAYLOAD, fun(_) -> List end),
    bench("map20_rt_per_s", Echo, ?PAYLOAD, fun(_) -> Map end),
    halt(0).

%% The echo process sends every message it receives back to the parent.
echo(Parent) ->
    receive Msg -> Parent ! Msg end,
    echo(Parent).

bench(Name, Echo, N, MakeMsg) ->
    T0 = now_ms(),
    rounds(Echo, N, MakeMsg),
    Secs = (now_ms() - T0) / 1000,
    metric(Name, N / Secs, "rt/s").

rounds(_, 0, _) -> ok;
rounds(Echo, I, MakeMsg) ->
    Echo ! MakeMsg(I),
    receive _Reply -> ok end,
    rounds(Echo, I - 1, MakeMsg).

%% <<"key01">> .. <<"key20">> => <<"value01">> .. <<"value20">> (binaries: Erlang's byte strings)
key(I) -> iolist_to_binary(io_lib:format("key~2..0B", [I])).
value(I) -> iolist_to_binary(io_lib:format("value~2..0B", [I])).

now_ms() -> erlang:monotonic_time(microsecond) / 1000.

metric(Name, Value, Unit) -> io:format("METRIC ~s ~.1f ~s~n", [Name, float(Value), Unit]).
