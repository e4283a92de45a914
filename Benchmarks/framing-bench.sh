#!/usr/bin/env bash
# framing-bench.sh: the issue-3 framing benchmark, side by side.
#
# Pipelined framed echo: $CONNECTIONS connections, each keeping $DEPTH messages of
# $SIZE bytes in flight (loadgen pipeline), $WARMUP s of warmup then $DURATION s
# measured, server pinned to CPU $SERVER_CPU, loadgen to CPU $CLIENT_CPU.
#
# 1. Lines ("\n"-terminated, SIZE bytes with the "\n"):
#    reactor  `reactor serve echo --framing line` (release build)
#    libevent bin/libevent_line_echo (C, bufferevent, evbuffer_search_eol + evbuffer_remove_buffer)
#    nio      swift/.build/release/nio-echo line (SwiftNIO, one event loop,
#             ByteToMessageHandler(LineBasedFrameDecoder()))
# 2. Length prefix (4-byte big-endian length, then SIZE bytes):
#    reactor  `reactor serve echo --framing int32`
#    libevent bin/libevent_int32_echo (C, bufferevent, evbuffer_copyout + evbuffer_remove_buffer)
#
# Within each part the servers run in a rotating order for $ROUNDS rounds; ratios are
# taken within a round (neighbours in time), and the tables show medians. loadgen reads
# the server's utime+stime from /proc/PID/stat at the two ends of the measured window,
# so CPU per line covers exactly the lines counted. As in echo-bench.sh (helpers in
# lib.sh), the script waits for a quiet machine before each run and repeats a run
# during which other processes used more than $NOISE_MAX % of a CPU.
#
# Usage: bash Benchmarks/framing-bench.sh
# Environment: ROUNDS (3) DURATION (10) WARMUP (2) CONNECTIONS (50) DEPTH (64) SIZE (32)
#   NOISE_MAX (10) RETRIES (2) QUIET_WAIT (60) QUIET_BUDGET (300) SERVER_CPU (0) CLIENT_CPU (1)
#   REACTOR_BIN (.build/release/reactor, built if missing)
#   NIO_BIN (Benchmarks/swift/.build/release/nio-echo, built if missing)
#   LINE_SERVERS ("reactor libevent nio") INT32_SERVERS ("reactor libevent"); empty skips the part
# Output: a markdown report on stdout, also written to Benchmarks/results/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
# ROUNDS, DURATION, WARMUP, NOISE_MAX, RETRIES, QUIET_*, *_CPU, REACTOR_BIN: lib.sh.
CONNECTIONS=${CONNECTIONS:-50}
DEPTH=${DEPTH:-64}
SIZE=${SIZE:-32}
NIO_BIN=${NIO_BIN:-$HERE/swift/.build/release/nio-echo}
LINE_SERVERS=${LINE_SERVERS-"reactor libevent nio"}
INT32_SERVERS=${INT32_SERVERS-"reactor libevent"}

# Server names are PART-SERVER: line-reactor, line-libevent, line-nio, int32-reactor, ...
server_command() {
    case $1 in
        line-reactor) echo "$REACTOR_BIN serve echo --framing line --host 127.0.0.1 --port 0" ;;
        line-libevent) echo "$BIN/libevent_line_echo 127.0.0.1 0" ;;
        line-nio) echo "$NIO_BIN line 127.0.0.1 0" ;;
        int32-reactor) echo "$REACTOR_BIN serve echo --framing int32 --host 127.0.0.1 --port 0" ;;
        int32-libevent) echo "$BIN/libevent_int32_echo 127.0.0.1 0" ;;
        *) die "unknown server $1" ;;
    esac
}

BENCH=framing-bench
# shellcheck source=lib.sh
source "$HERE/lib.sh"

# ---- build ----
build_c_programs
ensure_reactor
if [[ " $LINE_SERVERS " == *" nio "* && ! -x $NIO_BIN ]]; then
    [[ $NIO_BIN == "$HERE/swift/.build/release/nio-echo" ]] || die "NIO_BIN=$NIO_BIN is not an executable"
    say "building nio-echo (swift build -c release in Benchmarks/swift)"
    swift build -c release --package-path "$HERE/swift" --scratch-path "$HERE/swift/.build" \
        --product nio-echo >&2 || die "building nio-echo failed"
fi

note_commit

# ---- the runs ----
deadline=$((WARMUP + DURATION + 60))

# run_part PART LOADGEN-FRAMING-ARGS...: ROUNDS rounds over the part's servers, in a
# rotating order. Appends to $WORK/PART-SERVER.rounds one line per round:
#   round repeats other% lines/s server-us/line server-cpu% client-cpu% p50 p99
run_part() {
    local part=$1 servers name k count
    local -a names
    shift
    if [[ $part == line ]]; then servers=$LINE_SERVERS; else servers=$INT32_SERVERS; fi
    read -r -a names <<<"$servers"
    count=${#names[@]}
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((k = 0; k < count; k++)); do
            name=$part-${names[$(((k + round - 1) % count))]}
            start_server "$name"
            measure "$name" "pl-$name-$round" lps lines/s server_cpu_us_per_line us/line "$deadline" \
                pipeline --connections "$CONNECTIONS" --depth "$DEPTH" --size "$SIZE" "$@" \
                --warmup "$WARMUP" --duration "$DURATION"
            echo "$round $REPEATS $BEST_NOISE $(field lps "$BEST") $(field server_cpu_us_per_line "$BEST")" \
                "$(field server_cpu_pct "$BEST") $(field client_cpu_pct "$BEST") $(field p50 "$BEST") $(field p99 "$BEST")" \
                >>"$WORK/$name.rounds"
            stop_server "$name"
        done
    done
}

[[ -z $LINE_SERVERS ]] || run_part line --delimiter lf
[[ -z $INT32_SERVERS ]] || run_part int32 --framing int32

# ---- report ----
label() {
    case $1 in
        line-reactor) echo "reactor serve echo --framing line (Swift)" ;;
        line-libevent) echo "libevent line echo (C, bufferevent)" ;;
        line-nio) echo "SwiftNIO line echo, 1 thread" ;;
        int32-reactor) echo "reactor serve echo --framing int32 (Swift)" ;;
        int32-libevent) echo "libevent int32 echo (C, bufferevent)" ;;
    esac
}
short() { case $1 in libevent) echo "C libevent" ;; nio) echo "SwiftNIO" ;; *) echo "$1" ;; esac; }

part_tables() {
    local part=$1 servers name refs ref
    local -a names
    if [[ $part == line ]]; then servers=$LINE_SERVERS; refs="libevent nio"; else servers=$INT32_SERVERS; refs="libevent"; fi
    read -r -a names <<<"$servers"
    printf "| server | lines/s | %s | server CPU µs/line | %s | lines/s at 100%% server CPU | server CPU %% | client CPU %% | bound by |\n" \
        "$(for ref in $refs; do printf "vs %s | " "$(short "$ref")"; done | sed 's/ | $//')" \
        "$(for ref in $refs; do printf "CPU/line vs %s | " "$(short "$ref")"; done | sed 's/ | $//')"
    printf "|---|---:|%s---:|%s---:|---:|---:|---|\n" "$(for ref in $refs; do printf -- "---:|"; done)" "$(for ref in $refs; do printf -- "---:|"; done)"
    for name in "${names[@]}"; do
        name=$part-$name
        printf "| %s | %s |" "$(label "$name")" "$(calc %.0f "$(col 4 "$name")")"
        for ref in $refs; do printf " %s |" "$(fmt %.3f "$(ratio "$name" "$part-$ref" 4)")"; done
        printf " %s |" "$(calc %.4f "$(col 5 "$name")")"
        for ref in $refs; do printf " %s |" "$(fmt %.3f "$(ratio "$name" "$part-$ref" 5)")"; done
        printf " %s | %s | %s | %s |\n" "$(calc %.0f "1e6 / $(col 5 "$name")")" "$(col 6 "$name")" "$(col 7 "$name")" \
            "$(bound "$(col 6 "$name")" "$(col 7 "$name")")"
    done
    echo
    echo "| server | p50 µs | p99 µs | other % (max) | repeats |"
    echo "|---|---:|---:|---:|---:|"
    for name in "${names[@]}"; do
        name=$part-$name
        printf "| %s | %s | %s | %s | %s |\n" "$(label "$name")" "$(col 8 "$name")" "$(col 9 "$name")" \
            "$(awk '{print $3}' "$WORK/$name.rounds" | sort -g | tail -1)" \
            "$(awk '{s += $2} END {print s}' "$WORK/$name.rounds")"
    done
    echo
    echo "Per round (round, repeats, other %, lines/s, server µs/line, server CPU %, client CPU %, p50, p99):"
    echo
    echo '```'
    for name in "${names[@]}"; do sed "s/^/$part-$name /" "$WORK/$part-$name.rounds"; done
    echo '```'
}

check() {
    local what=$1 value=$2 target=$3
    if [[ $value == nan ]]; then echo "- n/a $what (not run)"
    elif awk "BEGIN {exit !($value >= $target)}"; then echo "- PASS $what: $(calc %.3f "$value")x (target ${target}x)"
    else echo "- MISS $what: $(calc %.3f "$value")x (target ${target}x)"; fi
}

note_head_moved
stamp=$(date -u +%Y%m%d-%H%M%S)
report=$WORK/report.md
{
    echo "## Framing benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Pipelined echo: $CONNECTIONS connections x $DEPTH messages of $SIZE bytes in flight" \
        "(lines: $SIZE bytes with the \"\\n\"; int32: a 4-byte length + $SIZE bytes), ${WARMUP} s warmup + ${DURATION} s measured," \
        "$ROUNDS interleaved rounds, medians (ratios: median of per-round ratios)." \
        "Server on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU, loopback." \
        "'lines/s at 100% server CPU' = 1 / (server CPU per line): what the server would do if it, not the client, were the limit." \
        "'bound by': client when loadgen used >= 95% of its CPU and the server < 95%."
    if [[ -n $LINE_SERVERS ]]; then
        echo
        echo "### Lines (\`--framing line\`)"
        echo
        part_tables line
    fi
    if [[ -n $INT32_SERVERS ]]; then
        echo
        echo "### Length prefix (\`--framing int32\`)"
        echo
        part_tables int32
    fi
    echo
    echo "Targets (issue 3):"
    check "line: lines/s >= 1.2x C libevent line echo" "$(ratio line-reactor line-libevent 4)" 1.2
    check "line: lines/s >= 4x SwiftNIO line echo" "$(ratio line-reactor line-nio 4)" 4
    check "int32: lines/s >= 1.2x C libevent int32 echo" "$(ratio int32-reactor int32-libevent 4)" 1.2
    echo
    echo "The same comparisons by server CPU per line (reactor's µs/line over the reference's; below 1 reactor uses less):"
    for pair in "line-libevent line, vs C libevent" "line-nio line, vs SwiftNIO" "int32-libevent int32, vs C libevent int32"; do
        read -r ref what <<<"$pair"
        echo "- $what: $(fmt %.3fx "$(ratio "${ref%%-*}-reactor" "$ref" 5)")"
    done
    echo
    echo "$(machine_line) at commit $commit${dirty:+ with uncommitted changes to $dirty}$stale."
} >"$report"

publish_report "$report" "$stamp"
