#!/usr/bin/env bash
# scale.sh: what a group of reactors (`reactor serve echo --threads N`) costs and gives.
#
# 1. The group's own overhead, on one core: `--threads 1`, `--threads 2` (reuseport) and
#    `--threads 2 --listen-mode acceptor`, every server thread pinned to $SERVER_CPU and
#    loadgen on $CLIENT_CPU, for ping-pong ($CONNECTIONS connections x 1 request of
#    $SIZE bytes) and pipelined lines ($PIPE_CONNECTIONS connections x $DEPTH lines of
#    $LINE_SIZE bytes, `--framing line`). Two reactors sharing one core do the same work
#    with more threads; the ratio of their CPU per request to one reactor's is the
#    group's own cost (target: <= 1.05x).
# 2. Scaling: for K = 1 .. $MAX_THREADS (default: CPUs - 1, so the load has at least one
#    core), `--threads K` pinned to CPUs 0..K-1, loadgen on the CPUs left. loadgen is one
#    thread: on a machine with more than one CPU left for it, it is the limit and the
#    table says "client" in its bound column; there, run several load machines instead.
#    On a 2-CPU machine this part is the K=1 row only.
# Rounds rotate the variants ($ROUNDS); ratios are per round, medians shown; noisy runs
# are repeated as in echo-bench.sh (lib.sh: NOISE_MAX, RETRIES, QUIET_WAIT, QUIET_BUDGET).
# Many short rounds by default: the machines here run at two speeds about 25 % apart and
# switch every minute or so, whatever runs. A round whose variants straddle a switch
# gives a ratio of 0.8x or 1.25x; in 5 rounds of 10 s such rounds set the median (0.97x to
# 1.09x from one run to the next), in 15 rounds of 2 s they are outvoted
# (docs/architecture.md, "A group of reactors").
#
# Usage: bash Benchmarks/scale.sh   (not part of CI)
# Environment: ROUNDS (15) DURATION (2) WARMUP (1) CONNECTIONS (100) SIZE (64)
#   PIPE_CONNECTIONS (50) DEPTH (64) LINE_SIZE (32) MAX_THREADS (CPUs - 1)
#   SERVER_CPU (0) CLIENT_CPU (1) REACTOR_BIN (.build/release/reactor, built if missing)
# Output: a markdown report on stdout, also written to Benchmarks/results/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
ROUNDS=${ROUNDS:-15}
DURATION=${DURATION:-2}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-100}
SIZE=${SIZE:-64}
PIPE_CONNECTIONS=${PIPE_CONNECTIONS:-50}
DEPTH=${DEPTH:-64}
LINE_SIZE=${LINE_SIZE:-32}
MAX_THREADS=${MAX_THREADS:-$(($(nproc) > 1 ? $(nproc) - 1 : 1))}

# Server names: VARIANT-WORKLOAD, VARIANT one of t1, t2, t2acc, kN (part 2).
server_command() {
    local variant=${1%-*} workload=${1##*-} framing=raw
    [[ $workload == lines ]] && framing=line
    local base="$REACTOR_BIN serve echo --tcp-only --host 127.0.0.1 --port 0 --framing $framing"
    case $variant in
        t1) echo "$base --threads 1" ;;
        t2) echo "$base --threads 2" ;;
        t2acc) echo "$base --threads 2 --listen-mode acceptor" ;;
        k*) echo "$base --threads ${variant#k}" ;;
        *) die "unknown variant $variant" ;;
    esac
}

BENCH=scale
# shellcheck source=lib.sh
source "$HERE/lib.sh"

build_c_programs
ensure_reactor
note_commit

# run_workload NAME WORKLOAD ROUND: one measured loadgen run against the server NAME.
run_workload() {
    local name=$1 workload=$2 deadline=$((WARMUP + DURATION + 60))
    start_server "$name"
    if [[ $workload == pingpong ]]; then
        measure "$name" "$name-$3" rps req/s server_cpu_us_per_request us/req "$deadline" \
            pingpong --connections "$CONNECTIONS" --size "$SIZE" --warmup "$WARMUP" --duration "$DURATION"
        echo "$3 $REPEATS $BEST_NOISE $(field rps "$BEST") $(field server_cpu_us_per_request "$BEST")" \
            "$(field server_cpu_pct "$BEST") $(field client_cpu_pct "$BEST") $(field p50 "$BEST") $(field p99 "$BEST")" \
            >>"$WORK/$name.rounds"
    else
        measure "$name" "$name-$3" lps lines/s server_cpu_us_per_line us/line "$deadline" \
            pipeline --connections "$PIPE_CONNECTIONS" --depth "$DEPTH" --size "$LINE_SIZE" --delimiter lf \
            --warmup "$WARMUP" --duration "$DURATION"
        echo "$3 $REPEATS $BEST_NOISE $(field lps "$BEST") $(field server_cpu_us_per_line "$BEST")" \
            "$(field server_cpu_pct "$BEST") $(field client_cpu_pct "$BEST") $(field p50 "$BEST") $(field p99 "$BEST")" \
            >>"$WORK/$name.rounds"
    fi
    stop_server "$name"
}

# ---- 1. overhead on one core ----
variants=(t1 t2 t2acc)
for workload in pingpong lines; do
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((k = 0; k < ${#variants[@]}; k++)); do
            run_workload "${variants[$(((k + round - 1) % ${#variants[@]}))]}-$workload" "$workload" "$round"
        done
    done
done

# ---- 2. scaling over cores ----
cpus=$(nproc)
for ((threads = 1; threads <= MAX_THREADS; threads++)); do
    SERVER_CPU="0-$((threads - 1))"
    CLIENT_CPU="$threads-$((cpus - 1))"
    ((threads < cpus)) || CLIENT_CPU=$((cpus - 1))
    for workload in pingpong lines; do
        for ((round = 1; round <= ROUNDS; round++)); do run_workload "k$threads-$workload" "$workload" "$round"; done
    done
done

# ---- report ----
stamp=$(date -u +%Y%m%d-%H%M%S)
report=$WORK/report.md
label() {
    case ${1%-*} in
        t1) echo "--threads 1" ;;
        t2) echo "--threads 2 (reuseport)" ;;
        t2acc) echo "--threads 2 --listen-mode acceptor" ;;
        k*) echo "--threads ${1%-*}" | sed 's/--threads k/--threads /' ;;
    esac
}
{
    echo "## Reactor group benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Ping-pong: $CONNECTIONS connections x 1 request of $SIZE bytes; lines: $PIPE_CONNECTIONS connections x $DEPTH" \
        "pipelined lines of $LINE_SIZE bytes (--framing line). ${WARMUP} s warmup + ${DURATION} s measured, $ROUNDS" \
        "interleaved rounds, medians (ratios: median of per-round ratios)."
    echo
    echo "### 1. The group's overhead, every server thread on CPU 0, loadgen on CPU 1"
    echo
    echo "| server | workload | rate/s | server CPU µs per request or line | CPU vs --threads 1 | rate vs --threads 1 | server CPU % |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for workload in pingpong lines; do
        for variant in "${variants[@]}"; do
            name=$variant-$workload
            printf "| %s | %s | %s | %s | %s | %s | %s |\n" "$(label "$name")" "$workload" \
                "$(calc %.0f "$(col 4 "$name")")" "$(calc %.3f "$(col 5 "$name")")" \
                "$(fmt %.3f "$(ratio "$name" "t1-$workload" 5)")" "$(fmt %.3f "$(ratio "$name" "t1-$workload" 4)")" \
                "$(col 6 "$name")"
        done
    done
    echo
    echo "### 2. Scaling: --threads K on CPUs 0..K-1, loadgen (one thread) on the CPUs left"
    echo
    echo "| server | workload | rate/s | server CPU µs per request or line | server CPU % | client CPU % | bound by |"
    echo "|---|---|---:|---:|---:|---:|---|"
    for ((threads = 1; threads <= MAX_THREADS; threads++)); do
        for workload in pingpong lines; do
            name=k$threads-$workload
            printf "| %s | %s | %s | %s | %s | %s | %s |\n" "$(label "$name")" "$workload" \
                "$(calc %.0f "$(col 4 "$name")")" "$(calc %.3f "$(col 5 "$name")")" "$(col 6 "$name")" \
                "$(col 7 "$name")" "$(bound "$(col 6 "$name")" "$(col 7 "$name")")"
        done
    done
    echo
    echo "Per round (round, repeats, other %, rate, server µs per unit, server CPU %, client CPU %, p50, p99):"
    echo
    echo '```'
    for file in "$WORK"/*.rounds; do name=$(basename "$file" .rounds); sed "s/^/$name /" "$file"; done
    echo '```'
    echo
    check() { if awk "BEGIN {exit !($2)}"; then echo "- PASS $1"; else echo "- MISS $1"; fi; }
    echo "Targets (issue 11):"
    for workload in pingpong lines; do
        r=$(ratio "t2-$workload" "t1-$workload" 5)
        check "$workload: two reactors on one core <= 1.05x the CPU per request of one: $(fmt %.3f "$r")x" "$r <= 1.05"
    done
    echo
    echo "$(machine_line) at commit $commit${dirty:+ with uncommitted changes in $dirty}$stale."
} >"$report"

publish_report "$report" "$stamp"
