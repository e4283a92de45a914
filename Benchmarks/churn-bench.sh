#!/usr/bin/env bash
# churn-bench.sh: connection churn (connect, one 64 B request, close, again) against
# reactor serve echo, C libevent and C epoll, with the `reactor bench` client connecting
# from one source address and from 100 (`--source`), side by side in each round. Server
# on SERVER_CPU, client on CLIENT_CPU; prints medians of connections/s, server CPU per
# connection, the client's CPU share, and ratios against libevent.
#
# Knobs (environment): ROUNDS (5), DURATION (4 s), WARMUP (1 s), CONNECTIONS (50),
# SOURCES (127.0.0.2-127.0.0.101), SERVER_CPU (0), CLIENT_CPU (1), REACTOR_BIN.
set -euo pipefail
BENCH=churn-bench
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-50}
SOURCES=${SOURCES:-127.0.0.2-127.0.0.101}
# shellcheck source=lib.sh
source "$HERE/lib.sh"

# Each run leaves its connections' ports in TIME_WAIT for a minute (up to
# net.ipv4.tcp_max_tw_buckets, 131,072 here, past which the kernel keeps none), and the
# port search of the next run from one address grows with them, then shrinks once the
# table is full: a run would measure its predecessors. As root, each run gets a fresh
# network namespace (its own loopback and TIME_WAIT table), deleted after it.
NETNS=""
if [[ $(id -u) == 0 ]] && ip netns add "$BENCH-$$" 2> /dev/null; then
    ip netns delete "$BENCH-$$"
    NETNS="$BENCH-$$"
    trap 'cleanup; ip netns delete "$NETNS" 2> /dev/null || true' EXIT
else
    say "not root (or no ip netns): runs share the TIME_WAIT table, so their order matters"
fi
in_netns() { if [[ -n $NETNS ]]; then ip netns exec "$NETNS" "$@"; else "$@"; fi; }

# start_server runs this under taskset; ip netns exec and taskset both exec, so the pid
# it records is the server's.
server_command() {
    [[ -z $NETNS ]] || echo -n "ip netns exec $NETNS "
    case $1 in
        reactor) echo "$REACTOR_BIN serve echo --host 127.0.0.1 --port 0 --udp-rate 0" ;;
        libevent) echo "$BIN/libevent_echo 127.0.0.1 0" ;;
        epoll) echo "$BIN/epoll_echo 127.0.0.1 0" ;;
    esac
}

# One run: NAME SOURCE-LABEL [bench args...]; appends "rate server_us client_share errors"
# to $WORK/NAME-LABEL.rounds.
run() {
    local name=$1 label=$2 timewait; shift 2
    if [[ -n $NETNS ]]; then
        ip netns add "$NETNS"
        ip -n "$NETNS" link set lo up
    fi
    start_server "$name"
    in_netns "$REACTOR_BIN" bench "127.0.0.1:$PORT" --mode churn --connections "$CONNECTIONS" --duration "$DURATION" \
        --warmup "$WARMUP" --server-pid "$SERVER_PID" --cpus "$CLIENT_CPU" --quiet --json "$WORK/run.json" "$@" > /dev/null
    stop_server "$name"
    timewait=$(in_netns ss -tan state time-wait | tail -n +2 | wc -l)
    [[ -z $NETNS ]] || ip netns delete "$NETNS"
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["rps"], j["server_cpu_us_per_request"], j["client_cpu_share"], j["errors"])' \
        "$WORK/run.json" >> "$WORK/$name-$label.rounds"
    say "$name, from $label: $(tail -1 "$WORK/$name-$label.rounds") (connections/s, server µs per connection, client CPU share, errors; $timewait in TIME_WAIT after it)"
}

ensure_reactor
build_c_programs

# The order turns every round, so that no server always follows the same one.
orders=("reactor libevent epoll" "libevent epoll reactor" "epoll reactor libevent")
for round in $(seq "$ROUNDS"); do
    say "round $round of $ROUNDS"
    for name in ${orders[$(((round - 1) % 3))]}; do
        run "$name" one
        run "$name" many --source "$SOURCES"
    done
done

echo "churn, $CONNECTIONS clients, ${DURATION}s after ${WARMUP}s warmup, $ROUNDS rounds (medians); server CPU $SERVER_CPU, client CPU $CLIENT_CPU"
echo
echo "| server | source addresses | connections/s | server CPU per connection (µs) | client CPU | errors | vs libevent: rate / server CPU |"
echo "|---|---|---:|---:|---:|---:|---|"
for label in one many; do
    base_rate=$(col 1 "libevent-$label"); base_cpu=$(col 2 "libevent-$label")
    for name in reactor libevent epoll; do
        rate=$(col 1 "$name-$label"); cpu=$(col 2 "$name-$label"); share=$(col 3 "$name-$label")
        errors=$(awk '{s += $4} END {print s}' "$WORK/$name-$label.rounds")
        sources=$([[ $label == one ]] && echo "127.0.0.1" || echo "$SOURCES")
        awk -v n="$name" -v s="$sources" -v r="$rate" -v c="$cpu" -v sh="$share" -v e="$errors" -v br="$base_rate" -v bc="$base_cpu" \
            'BEGIN {printf "| %s | %s | %.0f | %.1f | %.0f %% | %d | %.2fx / %.2fx |\n", n, s, r, c, sh * 100, e, r / br, c / bc}'
    done
done
