#!/usr/bin/env bash
# slo-bench.sh: how close `reactor bench --slo` comes to a server's known capacity
# (issue 10).
#
# Server: bin/serial_server, a line echo that serves one request at a time, in order,
# SERVICE_US µs each, on an absolute schedule: its capacity is exactly 1e6 / SERVICE_US
# requests/s (1000 by default), whatever the load. Pinned to CPU $SERVER_CPU, a fresh one
# per round.
# Client: `reactor bench --protocol line --slo "$SLO"` (the search: a closed-loop probe,
# bracket, bisect to 3 %), $CONNECTIONS connections x at most $DEPTH in flight, $SIZE-byte
# lines, each step $WARMUP s of warmup then $DURATION s measured, pinned to CPU
# $CLIENT_CPU. $ROUNDS rounds; each waits for a quiet machine first (lib.sh).
#
# Usage: bash Benchmarks/slo-bench.sh
# Environment: ROUNDS (5) DURATION (3) WARMUP (1) SERVICE_US (1000) SLO ('p99<=50ms': headroom over the 1-2 ms a request takes at any rate and the bench's 1 ms send tick)
#   CONNECTIONS (8) DEPTH (16) SIZE (16) NOISE_MAX (10) QUIET_WAIT (60) QUIET_BUDGET (300)
#   SERVER_CPU (0) CLIENT_CPU (1) REACTOR_BIN (.build/release/reactor, built if missing)
# Output: a markdown report on stdout (each round's found rate, its ratio to the
# capacity, the steps it took, and the median), also written to Benchmarks/results/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
SERVICE_US=${SERVICE_US:-1000}
SLO=${SLO:-'p99<=50ms'}
CONNECTIONS=${CONNECTIONS:-8}
DEPTH=${DEPTH:-16}
SIZE=${SIZE:-16}

server_command() { echo "$BIN/serial_server 127.0.0.1 0 $SERVICE_US"; }

BENCH=slo-bench
# shellcheck source=lib.sh
source "$HERE/lib.sh"

build_c_programs
ensure_reactor
"$REACTOR_BIN" bench --help 2>&1 | grep -q -- '--slo' || die "$REACTOR_BIN bench has no --slo"
note_commit yes

capacity=$(calc %.1f "1000000 / $SERVICE_US")
command="reactor bench 127.0.0.1:PORT --protocol line --size $SIZE --connections $CONNECTIONS --depth $DEPTH --duration $DURATION --warmup $WARMUP --slo '$SLO' --cpus $CLIENT_CPU"
waited_total=0
rows=$WORK/rows
: >"$rows"
for ((round = 1; round <= ROUNDS; round++)); do
    wait_quiet
    start_server serial
    json=$WORK/round$round.json
    say "round $round: $SLO against a capacity of $capacity req/s"
    if ! "$REACTOR_BIN" bench "127.0.0.1:$PORT" --protocol line --size "$SIZE" --connections "$CONNECTIONS" \
        --depth "$DEPTH" --duration "$DURATION" --warmup "$WARMUP" --slo "$SLO" --cpus "$CLIENT_CPU" \
        --server-pid "$SERVER_PID" --json "$json" --quiet >"$WORK/round$round.out"; then
        say "  no rate met $SLO"
    fi
    tail -1 "$WORK/round$round.out" >&2
    read -r found steps value < <(python3 -c '
import json, sys
slo = json.load(open(sys.argv[1]))["slo"]
step = [s for s in slo["steps"] if s["meets"] and s["rate"] == slo["found_rate"]]
print(slo["found_rate"] or 0, len(slo["steps"]), step[0]["value_us"] if step else "nan")' "$json")
    echo "$round $found $(calc %.3f "$found / $capacity") $steps $value" >>"$rows"
    stop_server serial
done

report=$WORK/report.md
{
    echo "# reactor bench --slo against a server of known capacity"
    echo
    machine_line
    echo "Commit $commit${dirty:+ (uncommitted: $dirty)}${stale:+; $stale}."
    echo
    echo "Server: \`serial_server 127.0.0.1 0 $SERVICE_US\` on CPU $SERVER_CPU (capacity $capacity req/s)."
    echo "Client: \`$command\` on CPU $CLIENT_CPU."
    echo
    echo "| round | found req/s | found / capacity | steps | ${SLO%%<*} at the found rate (µs) |"
    echo "|---|---|---|---|---|"
    while read -r r f ratio s v; do echo "| $r | $f | $ratio | $s | $v |"; done <"$rows"
    echo
    echo "Median found rate: $(awk '{print $2}' "$rows" | median) req/s," \
        "$(awk '{print $3}' "$rows" | median) of the capacity."
} >"$report"
publish_report "$report" "$(date -u +%Y%m%d-%H%M%S)"
