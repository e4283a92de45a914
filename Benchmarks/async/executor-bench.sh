#!/usr/bin/env bash
# executor-bench.sh: the reactor as a Swift executor against SwiftNIO's event loop executor
# (issue 12): nanoseconds (wall clock and CPU) and heap allocations per operation of the same five cases,
# `executor-bench` (Benchmarks/async/ExecutorBench, ReactorExecutor) and
# `nio-executor-bench` (Benchmarks/swift, an EventLoop as a SerialExecutor):
#
#   yield   a task on the loop yields: through the loop's queue from its own thread
#   actor   a task on the loop calls an actor on the same loop (into the actor's executor
#           and back to the task's)
#   (for both, the reactor's task prefers its executor, Task(executorPreference:);
#   SwiftNIO's runs on the loop because the loop is installed as the global executor:
#   SwiftNIO's EventLoop is no TaskExecutor)
#   inline  an actor on the loop calls another actor on the same loop: one executor, so
#           the runtime switches without enqueueing
#   hop     an actor on a second loop calls an actor on the first: per call one job onto
#           each loop from the other's thread, with the wake-up of a sleeping loop; the
#           figure is per call (two hops)
#   global  a task on Swift's global concurrent executor (the cooperative pool) calls an
#           actor on the loop: per call a job onto the loop from a pool thread and one back
#           onto the pool, whose enqueue is Swift's
#
# Each case runs in a process of its own, $ROUNDS rounds, the two programs alternating
# (which goes first changes every round); the table shows medians, and the ratio is the
# median of per-round ratios. Timing runs have no allocation counter; one more run of each
# under Benchmarks/alloc/malloc_count.so counts the allocations (the program reads the
# counter around the measured operations, after a warm-up). Not pinned: `hop` needs both
# CPUs. The machine is shared: each run notes how busy the machine was (all CPUs, this
# run included, in % of one CPU).
#
# Usage: bash Benchmarks/async/executor-bench.sh
# Environment: ROUNDS (5) COUNT (1000000, the operations of a run) HOP_COUNT (100000)
#   CASES ("yield actor inline hop global")
#   EXECUTOR_BIN (.build/release/executor-bench, built when that path)
#   NIO_EXECUTOR_BIN (Benchmarks/swift/.build/release/nio-executor-bench, built if missing)
# Output: a markdown report on stdout, also written to Benchmarks/results/.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(dirname "$HERE")
ROUNDS=${ROUNDS:-5}
COUNT=${COUNT:-1000000}
HOP_COUNT=${HOP_COUNT:-100000}
CASES=${CASES:-"yield actor inline hop global"}
EXECUTOR_BIN=${EXECUTOR_BIN:-$ROOT/.build/release/executor-bench}
NIO_EXECUTOR_BIN=${NIO_EXECUTOR_BIN:-$HERE/swift/.build/release/nio-executor-bench}
BENCH=executor-bench
WORK=$(mktemp -d "/tmp/$BENCH.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

say() { echo "$BENCH: $*" >&2; }
die() { say "$*"; exit 1; }

if [[ $EXECUTOR_BIN == "$ROOT/.build/release/executor-bench" ]]; then
    say "building executor-bench (swift build -c release)"
    (cd "$ROOT" && swift build -c release --product executor-bench >&2) || die "building executor-bench failed"
fi
[[ -x $EXECUTOR_BIN ]] || die "EXECUTOR_BIN=$EXECUTOR_BIN is not an executable"
if [[ ! -x $NIO_EXECUTOR_BIN ]]; then
    [[ $NIO_EXECUTOR_BIN == "$HERE/swift/.build/release/nio-executor-bench" ]] || die "NIO_EXECUTOR_BIN=$NIO_EXECUTOR_BIN is not an executable"
    say "building nio-executor-bench (swift build -c release in Benchmarks/swift)"
    swift build -c release --package-path "$HERE/swift" --scratch-path "$HERE/swift/.build" \
        --product nio-executor-bench >&2 || die "building nio-executor-bench failed"
fi
cp "$EXECUTOR_BIN" "$WORK/reactor-bench"
cp "$NIO_EXECUTOR_BIN" "$WORK/nio-bench"
cc -O2 -shared -fPIC -o "$WORK/malloc_count.so" "$HERE/alloc/malloc_count.c" -ldl

busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit}' /proc/stat; }
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
count_of() { if [[ $1 == hop || $1 == global ]]; then echo "$HOP_COUNT"; else echo "$COUNT"; fi; }

# field KEY LINE: the value of KEY=VALUE in a program's output line.
field() { grep -o "\b$1=[^ ]*" <<<"$2" | head -1 | cut -d= -f2; }

# run IMPL CASE [preload]: one process; prints its output line, then the machine's busy %.
run() {
    local impl=$1 kase=$2 out b0 t0 b1 t1
    read -r b0 t0 < <(busy_ticks)
    if [[ ${3:-} == preload ]]; then
        out=$(LD_PRELOAD=$WORK/malloc_count.so timeout -k 5 300 "$WORK/$impl-bench" "$kase" "$(count_of "$kase")" 2>/dev/null) ||
            die "$impl $kase failed"
    else
        out=$(timeout -k 5 300 "$WORK/$impl-bench" "$kase" "$(count_of "$kase")") || die "$impl $kase failed"
    fi
    read -r b1 t1 < <(busy_ticks)
    echo "$out busy_pct=$(awk -v b="$((b1 - b0))" -v t="$((t1 - t0))" -v n="$(nproc)" 'BEGIN {printf "%.0f", b * 100 * n / (t + 0.001)}')"
}

for ((round = 1; round <= ROUNDS; round++)); do
    for kase in $CASES; do
        if ((round % 2)); then order="reactor nio"; else order="nio reactor"; fi
        for impl in $order; do
            line=$(run "$impl" "$kase")
            say "round $round $impl: $line"
            echo "$round $(field ns_per_op "$line") $(field busy_pct "$line") $(field cpu_ns_per_op "$line")" >>"$WORK/$impl-$kase.rounds"
        done
    done
done
for kase in $CASES; do
    for impl in reactor nio; do
        line=$(run "$impl" "$kase" preload)
        say "allocations $impl: $line"
        field allocations_per_op "$line" >"$WORK/$impl-$kase.allocs"
    done
done

# ratio CASE C: the median over rounds of reactor's column C / NIO's within the round
# (C: 2 wall-clock ns, 4 CPU ns).
ratio() {
    join <(sort "$WORK/reactor-$1.rounds") <(sort "$WORK/nio-$1.rounds") | awk -v c="$2" '{print $c / $(c + 3)}' | median
}
col() { awk -v c="$2" '{print $c}' "$WORK/$1.rounds" | median; }

stamp=$(date -u +%Y%m%d-%H%M%S)
report=$WORK/report.md
{
    echo "## Executor benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "$ROUNDS rounds, each case a process of its own, the two programs alternating; medians (ratio: median of per-round ratios)." \
        "$COUNT operations a run ($HOP_COUNT for hop and global), after an uncounted tenth as warm-up. Allocations: one more run each under malloc_count.so."
    echo
    echo "| case | ReactorExecutor ns/op | SwiftNIO EventLoop ns/op | reactor / NIO | ReactorExecutor CPU ns/op | SwiftNIO CPU ns/op | reactor / NIO, CPU | ReactorExecutor allocations/op | SwiftNIO allocations/op | machine busy % (median) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for kase in $CASES; do
        printf "| %s | %.1f | %.1f | %.3f | %.1f | %.1f | %.3f | %s | %s | %s |\n" "$kase" \
            "$(col "reactor-$kase" 2)" "$(col "nio-$kase" 2)" "$(ratio "$kase" 2)" \
            "$(col "reactor-$kase" 4)" "$(col "nio-$kase" 4)" "$(ratio "$kase" 4)" \
            "$(cat "$WORK/reactor-$kase.allocs")" "$(cat "$WORK/nio-$kase.allocs")" \
            "$(cat "$WORK/reactor-$kase.rounds" "$WORK/nio-$kase.rounds" | awk '{print $3}' | median)"
    done
    echo
    echo "CPU ns/op: CPU time of the whole process (every thread) over the operations; on a shared machine steadier than the wall clock, which also counts the time a woken thread waits for a CPU."
    echo
    echo "Per run (program-case, round, ns/op, machine busy % of one CPU (this run included), CPU ns/op):"
    echo
    echo '```'
    for kase in $CASES; do
        for impl in reactor nio; do sed "s/^/$impl-$kase /" "$WORK/$impl-$kase.rounds"; done
    done
    echo '```'
    echo
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -sr)," \
        "at commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)."
} >"$report"
mkdir -p "$HERE/results"
cp "$report" "$HERE/results/$BENCH-$stamp.md"
cp "$report" "$HERE/results/$BENCH-latest.md"
cat "$report"
say "written to Benchmarks/results/$BENCH-$stamp.md"
