#!/usr/bin/env escript
%%! +S 2:2
%% gs_rss: growth of the VM's VmRSS over many gen_server calls to one counter server (this escript
%% is its callback module); metrics rss_growth_bytes, rss_bytes_per_call.
%% Size: escript bench/gs_rss.erl [CALLS] (default 2,000,000; issue 14's figure is 10,000,000).
-mode(compile).
-behaviour(gen_server).
-export([main/1, init/1, handle_call/3, handle_cast/2]).

-define(WARMUP, 10000).

main([]) -> main(["2000000"]);
main([Arg]) ->
    N = list_to_integer(Arg),
    {ok, Server} = gen_server:start(?MODULE, 0, []),
    calls(Server, ?WARMUP),
    Rss0 = rss(),
    calls(Server, N),
    Rss1 = rss(),
    io:format("VmRSS ~b kB after ~b calls, ~b kB after ~b more~n", [Rss0 div 1024, ?WARMUP, Rss1 div 1024, N]),
    io:format("METRIC rss_growth_bytes ~.1f bytes~n", [float(Rss1 - Rss0)]),
    io:format("METRIC rss_bytes_per_call ~.3f bytes~n", [(Rss1 - Rss0) / N]),
    halt(0).                               % ends every process

%% The counter server: every call bumps the count and replies with the new count.
init(N) -> {ok, N}.
handle_call(_Request, _From, N) -> {reply, N + 1, N + 1}.
handle_cast(_Msg, N) -> {noreply, N + 1}.

calls(_, 0) -> ok;
calls(Server, K) ->
    gen_server:call(Server, inc),
    calls(Server, K - 1).

%% VmRSS of this OS process (the escript VM), in bytes.
rss() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(Status, "VmRSS:\\s+(\\d+) kB", [{capture, all_but_first, list}]),
    list_to_integer(Kb) * 1024.
