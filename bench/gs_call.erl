#!/usr/bin/env escript
%%! +S 2:2
%% gs_call: gen_server calls and casts to one counter server (this escript is its callback module);
%% metrics call1_per_s, call100_per_s, cast_then_call_per_s.
-mode(compile).
-behaviour(gen_server).
-export([main/1, init/1, handle_call/3, handle_cast/2]).

-define(CALLS, 500000).
-define(CLIENTS, 100).
-define(CASTS, 1000000).
-define(WARMUP, 10000).

main(_) ->
    Parent = self(),
    {ok, Server} = gen_server:start(?MODULE, 0, []),
    %% one client: CALLS calls in a row
    calls(Server, ?WARMUP),
    T0 = now_ms(),
    calls(Server, ?CALLS),
    metric("call1_per_s", ?CALLS, now_ms() - T0, "calls/s"),
    %% CLIENTS clients at once, CALLS / CLIENTS calls each; timed from the first go to the last done
    Clients = [spawn(fun() -> client(Server, Parent, ?CALLS div ?CLIENTS) end) || _ <- lists:seq(1, ?CLIENTS)],
    [receive ready -> ok end || _ <- Clients],
    T1 = now_ms(),
    [C ! go || C <- Clients],
    [receive done -> ok end || _ <- Clients],
    metric("call100_per_s", ?CALLS, now_ms() - T1, "calls/s"),
    %% CASTS casts, then one call: its reply comes after the server has handled every cast
    Before = gen_server:call(Server, inc),
    T2 = now_ms(),
    casts(Server, ?CASTS),
    After = gen_server:call(Server, inc),
    metric("cast_then_call_per_s", ?CASTS, now_ms() - T2, "casts/s"),
    After = Before + ?CASTS + 1,           % the server handled every cast
    halt(0).                               % ends every process

%% The counter server: every call and every cast bumps the count; a call replies with the new count.
init(N) -> {ok, N}.
handle_call(_Request, _From, N) -> {reply, N + 1, N + 1}.
handle_cast(_Msg, N) -> {noreply, N + 1}.

%% A client: says it is ready, waits for go, makes its calls, reports done.
client(Server, Parent, N) ->
    Parent ! ready,
    receive go -> ok end,
    calls(Server, N),
    Parent ! done.

calls(_, 0) -> ok;
calls(Server, K) ->
    gen_server:call(Server, inc),
    calls(Server, K - 1).

casts(_, 0) -> ok;
casts(Server, K) ->
    gen_server:cast(Server, inc),
    casts(Server, K - 1).

now_ms() -> erlang:monotonic_time(microsecond) / 1000.

metric(Name, N, Ms, Unit) -> io:format("METRIC ~s ~.1f ~s~n", [Name, float(N / (Ms / 1000)), Unit]).
