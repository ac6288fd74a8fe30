#!/usr/bin/env escript
%%! +S 2:2
%% sup: OTP supervisors restarting, starting and stopping counter gen_servers (this escript is both the
%% supervisor callback module, init({sup, ...}), and the gen_server one, init(N));
%% metrics restarts1k_per_s, restarts10k_per_s, start_child100k_per_s, shutdown100k_per_s.
-mode(compile).
-export([main/1, init/1, handle_call/3, handle_cast/2]).

-define(RESTARTS_SHORT, 1000).
-define(RESTARTS_LONG, 10000).
-define(CHILDREN, 100000).
-define(HUGE, 1000000000).                 % restart intensity the benchmark never reaches

main(_) ->
    logger:set_primary_config(level, none),  % no supervisor report per restart: the machinery, not the log
    restarts("restarts1k_per_s", ?RESTARTS_SHORT),
    restarts("restarts10k_per_s", ?RESTARTS_LONG),
    children(?CHILDREN),
    halt(0).                               % ends every process

%% N restarts of one permanent counter registered as counter, under a fresh one_for_one supervisor:
%% kill it, then ask which_children until the supervisor names a new pid (the supervisor handles one
%% thing at a time, so its answer follows the restart once it has seen the child's exit).
restarts(Metric, N) ->
    Child = #{id => c, start => {gen_server, start_link, [{local, counter}, ?MODULE, 0, []]}},
    {ok, Sup} = supervisor:start_link(?MODULE, {sup, #{strategy => one_for_one, intensity => ?HUGE, period => 1}, [Child]}),
    Pid0 = whereis(counter),
    T0 = now_ms(),
    {Pid, Asks} = kill_loop(Sup, Pid0, N, 0),
    Ms = now_ms() - T0,
    Pid = whereis(counter),                % the name follows the restarts
    io:format("~s: ~b which_children calls for ~b restarts~n", [Metric, Asks, N]),
    metric(Metric, N, Ms, "restarts/s"),
    stop(Sup).

kill_loop(_, Pid, 0, Asks) -> {Pid, Asks};
kill_loop(Sup, Pid, K, Asks) ->
    exit(Pid, kill),
    {New, Asks1} = new_child(Sup, Pid, Asks),
    kill_loop(Sup, New, K - 1, Asks1).

new_child(Sup, Old, Asks) ->
    [{c, Pid, worker, _}] = supervisor:which_children(Sup),
    case is_pid(Pid) andalso Pid =/= Old of
        true -> {Pid, Asks + 1};
        false -> new_child(Sup, Old, Asks + 1)
    end.

%% N counters added by start_child to an empty one_for_one supervisor, then all stopped by ending it.
children(N) ->
    {ok, Sup} = supervisor:start_link(?MODULE, {sup, #{strategy => one_for_one, intensity => ?HUGE, period => 1}, []}),
    T0 = now_ms(),
    {First, Last} = start_children(Sup, 1, N, undefined),
    metric("start_child100k_per_s", N, now_ms() - T0, "children/s"),
    Active = proplists:get_value(active, supervisor:count_children(Sup)),
    N = Active,
    T1 = now_ms(),
    stop(Sup),                             % children stop in reverse order
    metric("shutdown100k_per_s", N, now_ms() - T1, "children/s"),
    false = is_process_alive(First),
    false = is_process_alive(Last).

start_children(_, I, N, {First, Last}) when I > N -> {First, Last};
start_children(Sup, I, N, Acc) ->
    {ok, Pid} = supervisor:start_child(Sup, #{id => I, start => {gen_server, start_link, [?MODULE, 0, []]}}),
    start_children(Sup, I + 1, N, case Acc of undefined -> {Pid, Pid}; {F, _} -> {F, Pid} end).

%% Ends a supervisor as its parent would and waits until it is gone (its children are gone before it).
stop(Sup) ->
    unlink(Sup),
    Ref = monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, Sup, _} -> ok end.

%% init/1 serves both behaviours: the supervisor's flags and child specs, or the counter's state.
init({sup, Flags, Children}) -> {ok, {Flags, Children}};
init(N) -> {ok, N}.

%% The counter server (the same as gs_call's; never called here).
handle_call(_Request, _From, N) -> {reply, N + 1, N + 1}.
handle_cast(_Msg, N) -> {noreply, N + 1}.

now_ms() -> erlang:monotonic_time(microsecond) / 1000.

metric(Name, N, Ms, Unit) -> io:format("METRIC ~s ~.1f ~s~n", [Name, float(N / (Ms / 1000)), Unit]).
