#!/usr/bin/env escript
%%! +S 2:2
%% echo: the gen_tcp twin of scripts/examples/echo.lua for the echo and tcp_idle benchmarks.
%% `escript bench/echo.erl [PORT]` (0, the default, picks one) listens on 127.0.0.1, prints
%% "listening on 127.0.0.1:PORT" and echoes until killed. One process per connection, binary
%% and passive ({active, false}): the process loops gen_tcp:recv(S, 0) -> gen_tcp:send(S, Data),
%% the plain form for request/response (no setopts per message as {active, once} needs).
-mode(compile).

main([]) -> main(["0"]);
main([Arg]) ->
    {ok, L} = gen_tcp:listen(list_to_integer(Arg),
                             [binary, {ip, {127, 0, 0, 1}}, {active, false}, {reuseaddr, true},
                              {backlog, 4096}, {nodelay, true}]),
    {ok, Port} = inet:port(L),
    io:format("listening on 127.0.0.1:~b~n", [Port]),
    spawn(fun() -> accept(L) end),
    receive after infinity -> ok end.      % owns the listener

%% The accepting process becomes the connection's process (it owns the socket); a fresh
%% acceptor takes its place first.
accept(L) ->
    case gen_tcp:accept(L) of
        {ok, S} ->
            spawn(fun() -> accept(L) end),
            loop(S);
        {error, Reason} ->                 % e.g. emfile: say so and keep accepting
            io:format(standard_error, "echo.erl: accept: ~p~n", [Reason]),
            timer:sleep(100),
            accept(L)
    end.

loop(S) ->
    case gen_tcp:recv(S, 0) of
        {ok, Data} ->
            case gen_tcp:send(S, Data) of
                ok -> loop(S);
                {error, _} -> gen_tcp:close(S)
            end;
        {error, _} -> gen_tcp:close(S)     % closed, reset
    end.
