#!/usr/bin/env bash
# bench/instr.sh: instruction counts (callgrind, build/moonbeam -S 1) per unit of work, which
# hold on any machine: per small, 100-integer and 20-key map ping-pong round trip, per ring hop, per spawn, per echo round trip. Each is
# the difference of two runs of different sizes divided by the difference of the sizes, so the
# start-up cancels. Needs valgrind. Usage: bench/instr.sh [pingpong] [list100] [map20] [ring] [spawn] [start_child] [echo]
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
MOONBEAM=${MOONBEAM:-build/moonbeam}
command -v valgrind >/dev/null || { echo "bench/instr.sh: valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
[ -x "$MOONBEAM" ] || { echo "bench/instr.sh: $MOONBEAM is missing (./dev build first)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

total() {   # instructions of a callgrind output file
  callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }'
}
run() {     # instructions of one run of a script with argument n (and more arguments after it)
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$MOONBEAM" -S 1 "$@" >/dev/null 2>&1
  total "$tmp/out"
}
per() {     # name script n1 n2 unit [script arguments after n]
  local a b
  a=$(run "$2" "$3" "${@:6}"); b=$(run "$2" "$4" "${@:6}")
  echo "METRIC $1 $(( (b - a) / ($4 - $3) )) instructions/$5"
}
echo_rt() { # the echo server under callgrind, loaded for t seconds: prints "instructions round-trips"
  local out rts pid
  valgrind --tool=callgrind --callgrind-out-file="$tmp/echo" "$MOONBEAM" -S 1 scripts/examples/echo.lua --port 0 >"$tmp/listen" 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do grep -q listening "$tmp/listen" && break; sleep 0.1; done
  rts=$(build/tcp_load 127.0.0.1 "$(sed -n 's/.*://p' "$tmp/listen")" -c 50 -b 64 -t "$1" | awk '/round trips in/ { for (i = 2; i <= NF; i++) if ($i == "round" && $(i + 1) == "trips") print $(i - 1) }')
  kill -TERM "$pid"; wait "$pid"
  echo "$(total "$tmp/echo") $rts"
}

names=("$@"); [ ${#names[@]} -eq 0 ] && names=(pingpong list100 map20 ring spawn start_child echo)
for n in "${names[@]}"; do
  case $n in
    pingpong) per pingpong_small bench/instr/pingpong.lua 10000 30000 round-trip ;;
    list100) per pingpong_list100 bench/instr/payload.lua 2000 6000 round-trip list100 ;;
    map20) per pingpong_map20 bench/instr/payload.lua 2000 6000 round-trip map20 ;;
    ring) per ring_hop bench/ring.lua 20000 60000 hop ;;
    spawn) per spawn bench/instr/spawn.lua 1000 3000 spawn ;;
    start_child) per start_child bench/instr/start_child.lua 1000 3000 child ;;
    echo)
      [ -x build/tcp_load ] || { echo "bench/instr.sh: build/tcp_load is missing" >&2; exit 1; }
      read -r i1 r1 < <(echo_rt 2); read -r i2 r2 < <(echo_rt 6)
      echo "METRIC echo_c50_b64 $(( (i2 - i1) / (r2 - r1) )) instructions/round-trip" ;;
    *) echo "bench/instr.sh: unknown '$n' (have: pingpong list100 map20 ring spawn start_child echo)" >&2; exit 2 ;;
  esac
done
