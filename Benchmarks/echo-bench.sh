#!/usr/bin/env bash
# echo-bench.sh: the issue-2 echo benchmark, side by side.
#
# Servers: the raw-epoll C reference (bin/epoll_echo), the canonical libevent
# bufferevent server (bin/libevent_echo), and `reactor serve echo` (release build).
# Each runs pinned to CPU 0 ($SERVER_CPU); the load client runs pinned to CPU 1.
#
# 1. Ping-pong: $CONNECTIONS connections, one $SIZE-byte request in flight on each,
#    $WARMUP s of warmup then $DURATION s measured. loadgen reads the server's
#    utime+stime from /proc/PID/stat at the two ends of the measured window, so CPU per
#    request covers exactly the requests counted. Servers run in a rotating order for
#    $ROUNDS rounds; ratios are taken within a round (neighbours in time) and the table
#    shows medians. A run during which other processes used more than $NOISE_MAX % of a
#    CPU (machine busy time minus client minus server) is repeated, up to $RETRIES times,
#    and the quietest attempt is kept. Before each run the script also waits (at most
#    $QUIET_WAIT s per run, $QUIET_BUDGET s in all) for the machine to be quiet.
# 2. Idle memory: VmRSS of a fresh server, then $IDLE_CONNECTIONS connections opened,
#    each served one round trip; VmRSS again once all are open; (delta / connections).
#
# Usage: bash Benchmarks/echo-bench.sh
# Environment: ROUNDS (3) DURATION (10) WARMUP (2) CONNECTIONS (100) SIZE (64)
#   IDLE_CONNECTIONS (5000) IDLE_HOLD (3) NOISE_MAX (10) RETRIES (2)
#   QUIET_WAIT (60) QUIET_BUDGET (300)
#   SERVER_CPU (0) CLIENT_CPU (1) REACTOR_BIN (.build/release/reactor, built if missing)
#   SERVERS ("epoll libevent reactor")
# Output: a markdown report on stdout, also written to Benchmarks/results/.
# What it shares with framing-bench.sh (the common knobs' defaults, server start/stop,
# quiet-machine wait, the repeat-while-noisy loadgen run, the report helpers) is in lib.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
# ROUNDS, DURATION, WARMUP, NOISE_MAX, RETRIES, QUIET_*, *_CPU, REACTOR_BIN: lib.sh.
CONNECTIONS=${CONNECTIONS:-100}
SIZE=${SIZE:-64}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-5000}
IDLE_HOLD=${IDLE_HOLD:-3}
SERVERS=${SERVERS:-"epoll libevent reactor"}

server_command() {
    case $1 in
        epoll) echo "$BIN/epoll_echo 127.0.0.1 0" ;;
        libevent) echo "$BIN/libevent_echo 127.0.0.1 0" ;;
        reactor) echo "$REACTOR_BIN serve echo --host 127.0.0.1 --port 0" ;;
        *) die "unknown server $1" ;;
    esac
}

BENCH=echo-bench
# shellcheck source=lib.sh
source "$HERE/lib.sh"

# ---- build ----
build_c_programs
ensure_reactor

# ---- 1. ping-pong rounds ----
read -r -a names <<<"$SERVERS"
count=${#names[@]}
deadline=$((WARMUP + DURATION + 60))
for ((round = 1; round <= ROUNDS; round++)); do
    for ((k = 0; k < count; k++)); do
        name=${names[$(((k + round - 1) % count))]}
        start_server "$name"
        measure "$name" "pp-$name-$round" rps req/s server_cpu_us_per_request us/req "$deadline" \
            pingpong --connections "$CONNECTIONS" --size "$SIZE" --warmup "$WARMUP" --duration "$DURATION"
        out=$BEST
        echo "$round $REPEATS $BEST_NOISE $(field rps "$out")" \
            "$(field server_cpu_us_per_request "$out") $(field server_cpu_pct "$out")" \
            "$(field client_cpu_pct "$out") $(field p50 "$out") $(field p99 "$out")" >>"$WORK/$name.rounds"
        stop_server "$name"
    done
done

# ---- 2. idle memory ----
rss_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$2/status"; }
for name in "${names[@]}"; do
    wait_quiet
    start_server "$name"
    sleep 0.3
    rss0=$(rss_kb VmRSS "$SERVER_PID")
    anon0=$(rss_kb RssAnon "$SERVER_PID")
    out=$WORK/idle-$name.txt
    : >"$out"
    timeout -k 5 $((IDLE_HOLD + 120)) taskset -c "$CLIENT_CPU" "$LOADGEN" idle --host 127.0.0.1 --port "$PORT" \
        --connections "$IDLE_CONNECTIONS" --hold "$IDLE_HOLD" >"$out" 2>"$out.err" &
    LOADGEN_PID=$!
    for ((i = 0; i < 1800; i++)); do
        grep -q '^open=' "$out" && break
        kill -0 "$LOADGEN_PID" 2>/dev/null || break
        sleep 0.05
    done
    grep -q "^open=$IDLE_CONNECTIONS\$" "$out" || { cat "$out.err" >&2; die "idle: $name never had $IDLE_CONNECTIONS connections open"; }
    rss1=$(rss_kb VmRSS "$SERVER_PID")
    anon1=$(rss_kb RssAnon "$SERVER_PID")
    rc=0
    wait "$LOADGEN_PID" || rc=$?
    LOADGEN_PID=
    [[ $rc -eq 0 ]] || { cat "$out.err" >&2; die "idle: loadgen against $name failed (status $rc)"; }
    echo "$rss0 $rss1 $anon0 $anon1" >"$WORK/$name.idle"
    say "idle $name: VmRSS $rss0 -> $rss1 kB, RssAnon $anon0 -> $anon1 kB"
    stop_server "$name"
done

# ---- report ----
label() {
    case $1 in
        epoll) echo "raw epoll (C)" ;;
        libevent) echo "libevent bufferevent (C)" ;;
        reactor) echo "reactor serve echo (Swift)" ;;
    esac
}

stamp=$(date -u +%Y%m%d-%H%M%S)
report=$WORK/report.md
{
    echo "## Echo benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Ping-pong: $CONNECTIONS connections x 1 request of $SIZE bytes in flight, ${WARMUP} s warmup + ${DURATION} s measured," \
        "$ROUNDS interleaved rounds, medians (ratios: median of per-round ratios)." \
        "Server on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU, loopback." \
        "Idle: $IDLE_CONNECTIONS connections, VmRSS delta / connections."
    echo
    echo "| server | requests/s | vs epoll | vs libevent | server CPU µs/request | CPU vs epoll | heap bytes/idle conn |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for name in "${names[@]}"; do
        read -r rss0 rss1 _ _ <"$WORK/$name.idle"
        printf "| %s | %s | %s | %s | %s | %s | %s |\n" "$(label "$name")" \
            "$(calc %.0f "$(col 4 "$name")")" \
            "$(fmt %.3f "$(ratio "$name" epoll 4)")" \
            "$(fmt %.3f "$(ratio "$name" libevent 4)")" \
            "$(calc %.3f "$(col 5 "$name")")" \
            "$(fmt %.3f "$(ratio "$name" epoll 5)")" \
            "$(calc %.0f "($rss1 - $rss0) * 1024 / $IDLE_CONNECTIONS")"
    done
    echo
    echo "Details (medians): latency from loadgen's log-bucket histogram (~3% resolution);" \
        "CPU in % of one core over the measured window; 'other' = machine busy - client - server."
    echo
    echo "| server | p50 µs | p99 µs | server CPU % | client CPU % | other % (max) | repeats | RssAnon bytes/idle conn |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for name in "${names[@]}"; do
        read -r _ _ anon0 anon1 <"$WORK/$name.idle"
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n" "$(label "$name")" \
            "$(col 8 "$name")" "$(col 9 "$name")" "$(col 6 "$name")" "$(col 7 "$name")" \
            "$(awk '{print $3}' "$WORK/$name.rounds" | sort -g | tail -1)" \
            "$(awk '{s += $2} END {print s}' "$WORK/$name.rounds")" \
            "$(calc %.0f "($anon1 - $anon0) * 1024 / $IDLE_CONNECTIONS")"
    done
    echo
    echo "Per round (round, repeats, other %, req/s, server µs/req, server CPU %, client CPU %, p50, p99):"
    echo
    echo '```'
    for name in "${names[@]}"; do sed "s/^/$name /" "$WORK/$name.rounds"; done
    echo '```'
    if [[ " ${names[*]} " == *" reactor "* && " ${names[*]} " == *" epoll "* && " ${names[*]} " == *" libevent "* ]]; then
        read -r rss0 rss1 _ _ <"$WORK/reactor.idle"
        check() { if awk "BEGIN {exit !($2)}"; then echo "- PASS $1"; else echo "- MISS $1"; fi; }
        r_e=$(ratio reactor epoll 4); r_l=$(ratio reactor libevent 4); c_e=$(ratio reactor epoll 5)
        idle=$(calc %.0f "($rss1 - $rss0) * 1024 / $IDLE_CONNECTIONS")
        echo
        echo "Targets (issue 2):"
        check "requests/s >= 0.95x raw epoll: $(calc %.3f "$r_e")x" "$r_e >= 0.95"
        check "requests/s >= 1.3x libevent bufferevent: $(calc %.3f "$r_l")x" "$r_l >= 1.3"
        check "server CPU per request <= 1.1x raw epoll: $(calc %.3f "$c_e")x" "$c_e <= 1.1"
        check "heap per idle connection <= 1024 bytes: $idle" "$idle <= 1024"
    fi
    echo
    echo "$(machine_line) at commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)."
} >"$report"

publish_report "$report" "$stamp"
