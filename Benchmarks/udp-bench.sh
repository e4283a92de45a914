#!/usr/bin/env bash
# udp-bench.sh: the issue-4 UDP echo benchmark, side by side.
#
# Servers:
#   reactor   `reactor serve echo --udp-only` (release build) with the per-source UDP
#             reply rate limit switched off ($REACTOR_UDP_ARGS): the load comes from
#             one address, and the C reference has no such limit
#   libevent  bin/libevent_udp_echo (C: one EV_READ|EV_PERSIST event, recvfrom/sendto
#             until EAGAIN, one 64 KiB buffer)
#
# Load: loadgen udp, $SOCKETS connected client sockets each keeping $DEPTH datagrams of
# $SIZE bytes in flight (sendmmsg/recvmmsg), every echo checked; a datagram not back
# within $TIMEOUT_MS ms counts as lost and a fresh one takes its place. $WARMUP s of
# warmup then $DURATION s measured; server pinned to CPU $SERVER_CPU, loadgen to CPU
# $CLIENT_CPU. The servers run in a rotating order for $ROUNDS rounds; ratios are
# taken within a round and the tables show medians. loadgen reads the server's
# utime+stime from /proc/PID/stat at the two ends of the measured window, so CPU per
# datagram covers exactly the datagrams counted. As in the other scripts (helpers in
# lib.sh), it waits for a quiet machine before each run and repeats a run during
# which other processes used more than $NOISE_MAX % of a CPU.
#
# Usage: bash Benchmarks/udp-bench.sh
# Environment: ROUNDS (3) DURATION (10) WARMUP (2) SOCKETS (8) DEPTH (16) SIZE (64)
#   TIMEOUT_MS (200) NOISE_MAX (10) RETRIES (2) QUIET_WAIT (60) QUIET_BUDGET (300)
#   SERVER_CPU (0) CLIENT_CPU (1) REACTOR_BIN (.build/release/reactor, built if missing)
#   REACTOR_UDP_ARGS ("--udp-rate 0") SERVERS ("reactor libevent")
# Output: a markdown report on stdout, also written to Benchmarks/results/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
# ROUNDS, DURATION, WARMUP, NOISE_MAX, RETRIES, QUIET_*, *_CPU, REACTOR_BIN: lib.sh.
SOCKETS=${SOCKETS:-8}
DEPTH=${DEPTH:-16}
SIZE=${SIZE:-64}
TIMEOUT_MS=${TIMEOUT_MS:-200}
REACTOR_UDP_ARGS=${REACTOR_UDP_ARGS:-"--udp-rate 0"}
SERVERS=${SERVERS:-"reactor libevent"}

server_command() {
    case $1 in
        reactor) echo "$REACTOR_BIN serve echo --udp-only --host 127.0.0.1 --port 0 $REACTOR_UDP_ARGS" ;;
        libevent) echo "$BIN/libevent_udp_echo 127.0.0.1 0" ;;
        *) die "unknown server $1" ;;
    esac
}

BENCH=udp-bench
# shellcheck source=lib.sh
source "$HERE/lib.sh"

# ---- build ----
read -r -a names <<<"$SERVERS"
build_c_programs
if [[ " $SERVERS " == *" reactor "* ]]; then
    ensure_reactor
    "$REACTOR_BIN" serve --help 2>&1 | grep -q -- '--udp-only' ||
        die "$REACTOR_BIN serve has no --udp-only (run with SERVERS=libevent to measure the C reference alone)"
fi

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$ROOT" status --porcelain -- Sources Package.swift 2>/dev/null | awk '{print $2}' | paste -sd, - | sed 's/,/, /g')
stale=
if [[ " $SERVERS " == *" reactor "* && $commit != unknown ]] &&
    (($(date -r "$REACTOR_BIN" +%s) < $(git -C "$ROOT" log -1 --format=%ct HEAD))); then
    stale=" (the binary is older than that commit: rebuild it)"
    say "warning: $REACTOR_BIN is older than commit $commit"
fi

# ---- the runs ----
# $WORK/NAME.rounds, one line per round:
#   round repeats other% datagrams/s server-us/datagram server-cpu% client-cpu% p50 p99 loss%
count=${#names[@]}
deadline=$((WARMUP + DURATION + 60))
for ((round = 1; round <= ROUNDS; round++)); do
    for ((k = 0; k < count; k++)); do
        name=${names[$(((k + round - 1) % count))]}
        start_server "$name" udp
        measure "$name" "udp-$name-$round" rps datagrams/s server_cpu_us_per_datagram us/datagram "$deadline" \
            udp --sockets "$SOCKETS" --depth "$DEPTH" --size "$SIZE" --timeout-ms "$TIMEOUT_MS" \
            --warmup "$WARMUP" --duration "$DURATION"
        echo "$round $REPEATS $BEST_NOISE $(field rps "$BEST") $(field server_cpu_us_per_datagram "$BEST")" \
            "$(field server_cpu_pct "$BEST") $(field client_cpu_pct "$BEST") $(field p50 "$BEST") $(field p99 "$BEST")" \
            "$(field loss_pct "$BEST")" >>"$WORK/$name.rounds"
        stop_server "$name"
    done
done

# ---- report ----
label() {
    case $1 in
        reactor) echo "reactor serve echo --udp-only $REACTOR_UDP_ARGS (Swift)" ;;
        libevent) echo "libevent UDP echo (C, recvfrom/sendto)" ;;
    esac
}
# A run is client-bound when loadgen used (nearly) all of its CPU while the server did not.
bound() {
    local server=$1 client=$2
    if awk "BEGIN {exit !($client >= 95 && $server < 95)}"; then echo "client"
    elif awk "BEGIN {exit !($server >= 95)}"; then echo "server"
    else echo "neither"; fi
}

now=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ $now == "$commit" ]] || stale="$stale (HEAD moved to $now during the run)"
stamp=$(date -u +%Y%m%d-%H%M%S)
report=$WORK/report.md
{
    echo "## UDP echo benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "UDP echo: $SOCKETS client sockets x $DEPTH datagrams of $SIZE bytes in flight (loadgen udp, sendmmsg/recvmmsg)," \
        "a datagram not back within $TIMEOUT_MS ms counted lost and replaced, ${WARMUP} s warmup + ${DURATION} s measured," \
        "$ROUNDS interleaved rounds, medians (ratios: median of per-round ratios)." \
        "Server on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU, loopback." \
        "The reactor runs with its per-source UDP reply rate limit off ($REACTOR_UDP_ARGS): all the load comes from one" \
        "address, and the C reference has no rate limit." \
        "'datagrams/s at 100% server CPU' = 1 / (server CPU per datagram)." \
        "'bound by': client when loadgen used >= 95% of its CPU and the server < 95%."
    echo
    echo "| server | datagrams/s | vs C libevent | server CPU µs/datagram | CPU/datagram vs C libevent | datagrams/s at 100% server CPU | loss % | server CPU % | client CPU % | bound by |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for name in "${names[@]}"; do
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" "$(label "$name")" \
            "$(calc %.0f "$(col 4 "$name")")" "$(fmt %.3f "$(ratio "$name" libevent 4)")" \
            "$(calc %.4f "$(col 5 "$name")")" "$(fmt %.3f "$(ratio "$name" libevent 5)")" \
            "$(calc %.0f "1e6 / $(col 5 "$name")")" "$(col 10 "$name")" \
            "$(col 6 "$name")" "$(col 7 "$name")" "$(bound "$(col 6 "$name")" "$(col 7 "$name")")"
    done
    echo
    echo "| server | p50 µs | p99 µs | other % (max) | repeats |"
    echo "|---|---:|---:|---:|---:|"
    for name in "${names[@]}"; do
        printf "| %s | %s | %s | %s | %s |\n" "$(label "$name")" "$(col 8 "$name")" "$(col 9 "$name")" \
            "$(awk '{print $3}' "$WORK/$name.rounds" | sort -g | tail -1)" \
            "$(awk '{s += $2} END {print s}' "$WORK/$name.rounds")"
    done
    echo
    echo "Per round (round, repeats, other %, datagrams/s, server µs/datagram, server CPU %, client CPU %, p50, p99, loss %):"
    echo
    echo '```'
    for name in "${names[@]}"; do sed "s/^/$name /" "$WORK/$name.rounds"; done
    echo '```'
    echo
    echo "Target (issue 4):"
    r=$(ratio reactor libevent 4)
    if [[ $r == nan ]]; then echo "- n/a datagrams/s >= 1.2x C libevent UDP echo (not run)"
    elif awk "BEGIN {exit !($r >= 1.2)}"; then echo "- PASS datagrams/s >= 1.2x C libevent UDP echo: $(calc %.3f "$r")x"
    else echo "- MISS datagrams/s >= 1.2x C libevent UDP echo: $(calc %.3f "$r")x"; fi
    echo "- server CPU per datagram, reactor over C libevent (below 1: reactor uses less): $(fmt %.3fx "$(ratio reactor libevent 5)")"
    echo
    if [[ " $SERVERS " == *" reactor "* ]]; then
        echo "$(machine_line) at commit $commit${dirty:+ with uncommitted changes to $dirty}$stale."
    else
        echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)."
    fi
} >"$report"

publish_report "$report" "$stamp"
