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
# $SIZE bytes in flight, every echo checked; a datagram not back within $TIMEOUT_MS ms
# counts as lost and a fresh one takes its place. $WARMUP s of warmup then $DURATION s
# measured; server pinned to CPU $SERVER_CPU, loadgen to CPU $CLIENT_CPU. Two parts
# ($PARTS), which differ only in how the client hands its datagrams to the kernel:
#   sendmmsg  one sendmmsg per batch, each datagram its own message: they reach the
#             server's socket one by one, as from many independent senders
#   gso       one UDP_SEGMENT (GSO) send per batch (loadgen --gso 1): the kernel cuts it
#             into the same datagrams, which reach the server's socket all at once, as
#             a batching sender's would (QUIC stacks send this way)
# A server that batches its own replies (the reactor: recvmmsg, sendmmsg, GSO runs to
# one destination) gains much more from the second; the C reference, one recvfrom and
# one sendto per datagram, gains nothing. Within each part the servers run in a
# rotating order for $ROUNDS rounds; ratios are taken within a round and the tables
# show medians. loadgen reads the server's
# utime+stime from /proc/PID/stat at the two ends of the measured window, so CPU per
# datagram covers exactly the datagrams counted. As in the other scripts (helpers in
# lib.sh), it waits for a quiet machine before each run and repeats a run during
# which other processes used more than $NOISE_MAX % of a CPU.
#
# Usage: bash Benchmarks/udp-bench.sh
# Environment: ROUNDS (3) DURATION (10) WARMUP (2) SOCKETS (8) DEPTH (16) SIZE (64)
#   TIMEOUT_MS (200) PARTS ("sendmmsg gso") NOISE_MAX (10) RETRIES (2) QUIET_WAIT (60) QUIET_BUDGET (300)
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
PARTS=${PARTS:-"sendmmsg gso"}
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

if [[ " $SERVERS " == *" reactor "* ]]; then note_commit yes; else note_commit no; fi

# ---- the runs ----
# $WORK/PART-SERVER.rounds, one line per round:
#   round repeats other% datagrams/s server-us/datagram server-cpu% client-cpu% p50 p99 loss%
read -r -a parts <<<"$PARTS"
count=${#names[@]}
deadline=$((WARMUP + DURATION + 60))
for part in "${parts[@]}"; do
    case $part in
        sendmmsg) gso=0 ;;
        gso) gso=1 ;;
        *) die "unknown part $part (sendmmsg or gso)" ;;
    esac
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((k = 0; k < count; k++)); do
            name=${names[$(((k + round - 1) % count))]}
            start_server "$name" udp
            measure "$part $name" "udp-$part-$name-$round" rps datagrams/s server_cpu_us_per_datagram us/datagram \
                "$deadline" udp --sockets "$SOCKETS" --depth "$DEPTH" --size "$SIZE" --timeout-ms "$TIMEOUT_MS" \
                --gso "$gso" --warmup "$WARMUP" --duration "$DURATION"
            echo "$round $REPEATS $BEST_NOISE $(field rps "$BEST") $(field server_cpu_us_per_datagram "$BEST")" \
                "$(field server_cpu_pct "$BEST") $(field client_cpu_pct "$BEST") $(field p50 "$BEST") $(field p99 "$BEST")" \
                "$(field loss_pct "$BEST")" >>"$WORK/$part-$name.rounds"
            stop_server "$name"
        done
    done
done

# ---- report ----
label() {
    case $1 in
        reactor) echo "reactor serve echo --udp-only $REACTOR_UDP_ARGS (Swift)" ;;
        libevent) echo "libevent UDP echo (C, recvfrom/sendto)" ;;
    esac
}

part_title() {
    case $1 in
        sendmmsg) echo "Client sends each datagram as its own message (sendmmsg)" ;;
        gso) echo "Client sends each batch as one UDP_SEGMENT message (loadgen --gso 1)" ;;
    esac
}

part_tables() {
    local part=$1 name
    echo "| server | datagrams/s | vs C libevent | server CPU µs/datagram | CPU/datagram vs C libevent | datagrams/s at 100% server CPU | loss % | server CPU % | client CPU % | bound by |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    for name in "${names[@]}"; do
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" "$(label "$name")" \
            "$(calc %.0f "$(col 4 "$part-$name")")" "$(fmt %.3f "$(ratio "$part-$name" "$part-libevent" 4)")" \
            "$(calc %.4f "$(col 5 "$part-$name")")" "$(fmt %.3f "$(ratio "$part-$name" "$part-libevent" 5)")" \
            "$(calc %.0f "1e6 / $(col 5 "$part-$name")")" "$(col 10 "$part-$name")" \
            "$(col 6 "$part-$name")" "$(col 7 "$part-$name")" "$(bound "$(col 6 "$part-$name")" "$(col 7 "$part-$name")")"
    done
    echo
    echo "| server | p50 µs | p99 µs | other % (max) | repeats |"
    echo "|---|---:|---:|---:|---:|"
    for name in "${names[@]}"; do
        printf "| %s | %s | %s | %s | %s |\n" "$(label "$name")" "$(col 8 "$part-$name")" "$(col 9 "$part-$name")" \
            "$(awk '{print $3}' "$WORK/$part-$name.rounds" | sort -g | tail -1)" \
            "$(awk '{s += $2} END {print s}' "$WORK/$part-$name.rounds")"
    done
    echo
    echo "Per round (round, repeats, other %, datagrams/s, server µs/datagram, server CPU %, client CPU %, p50, p99, loss %):"
    echo
    echo '```'
    for name in "${names[@]}"; do sed "s/^/$part-$name /" "$WORK/$part-$name.rounds"; done
    echo '```'
}

note_head_moved
stamp=$(date -u +%Y%m%d-%H%M%S)
report=$WORK/report.md
{
    echo "## UDP echo benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "UDP echo: $SOCKETS client sockets x $DEPTH datagrams of $SIZE bytes in flight (loadgen udp, recvmmsg)," \
        "a datagram not back within $TIMEOUT_MS ms counted lost and replaced, ${WARMUP} s warmup + ${DURATION} s measured," \
        "$ROUNDS interleaved rounds, medians (ratios: median of per-round ratios)." \
        "Server on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU, loopback." \
        "The reactor runs with its per-source UDP reply rate limit off ($REACTOR_UDP_ARGS): all the load comes from one" \
        "address, and the C reference has no rate limit." \
        "'datagrams/s at 100% server CPU' = 1 / (server CPU per datagram)." \
        "'bound by': client when loadgen used >= 95% of its CPU and the server < 95%." \
        "On loopback the sender pays for delivering into the receiver's socket, so the client costs about as much per" \
        "datagram as a server doing one recvfrom and one sendto: the CPU per datagram columns compare the servers even" \
        "where the client is the limit."
    for part in "${parts[@]}"; do
        echo
        echo "### $(part_title "$part")"
        echo
        part_tables "$part"
    done
    echo
    echo "Target (issue 4), datagrams/s >= 1.2x the C libevent UDP echo:"
    for part in "${parts[@]}"; do
        r=$(ratio "$part-reactor" "$part-libevent" 4)
        c=$(ratio "$part-reactor" "$part-libevent" 5)
        if [[ $r == nan ]]; then echo "- n/a $part: not run"
        elif awk "BEGIN {exit !($r >= 1.2)}"; then echo "- PASS $part: $(calc %.3f "$r")x (server CPU per datagram $(fmt %.3fx "$c"))"
        else echo "- MISS $part: $(calc %.3f "$r")x (server CPU per datagram $(fmt %.3fx "$c"))"; fi
    done
    echo
    if [[ " $SERVERS " == *" reactor "* ]]; then
        echo "$(machine_line) at commit $commit${dirty:+ with uncommitted changes to $dirty}$stale."
    else
        echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)."
    fi
} >"$report"

publish_report "$report" "$stamp"
