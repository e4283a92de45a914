#!/usr/bin/env bash
# budgets.sh: instructions and heap allocations per request of the release `reactor`,
# against the checked-in budgets (budgets.json). docs/performance.md, "Budgets", says
# what each metric is and when a budget may be raised.
#
#   bash Benchmarks/budgets/budgets.sh [table|check|update|measure]
#     table    measure, print the table (metric, measured, budget, delta); exit 0
#     check    the same; exit 1 when a metric is more than the tolerance over its budget
#     update   measure and rewrite budgets.json with the figures
#     measure  print the measurement as JSON only
#
# Server instructions: `reactor serve echo` runs under callgrind while drive.py sends a
# fixed number of requests (lockstep: see drive.py), once with N and once with 2N; the
# difference of the two totals divided by N is the cost of N requests with start-up,
# accept, close and shutdown cancelled out. Server allocations: the same two runs under
# ../alloc/malloc_count.c. Client allocations: ../alloc/alloc-check.sh.
#
# Executor allocations: executor-bench (Benchmarks/async/ExecutorBench) enqueues jobs on a
# ReactorExecutor under the same counter and reads it itself around the jobs, after a
# warm-up; its control case, closures posted with `handle.execute`, must show at least one
# allocation each, or the count is not seeing the program's allocations and the run fails.
#
# Environment: REACTOR_BIN (.build/release/reactor, built when missing),
#   EXECUTOR_BIN (.build/release/executor-bench, built when it is that path),
#   ASYNC_BIN (.build/release/async-echo, built when it is that path),
#   BUDGETS_OUT (also keep the measurement's JSON in this file).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}
EXECUTOR_BIN=${EXECUTOR_BIN:-$ROOT/.build/release/executor-bench}
ASYNC_BIN=${ASYNC_BIN:-$ROOT/.build/release/async-echo}
COMMAND=${1:-table}
WORK=$(mktemp -d /tmp/budgets.XXXXXX)
SERVER=
cleanup() {
    if [[ -n $SERVER ]]; then kill -KILL "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { echo "budgets: $*" >&2; }
die() { say "$*"; exit 1; }

case $COMMAND in table | check | update | measure) ;; *) die "unknown command '$COMMAND' (table, check, update, measure)" ;; esac
command -v valgrind >/dev/null || die "valgrind is missing (make budgets installs it)"
[[ -x $REACTOR_BIN ]] || (cd "$ROOT" && swift build -c release --product reactor >&2)
if [[ $EXECUTOR_BIN == "$ROOT/.build/release/executor-bench" ]]; then
    (cd "$ROOT" && swift build -c release --product executor-bench >&2) || die "swift build --product executor-bench failed"
fi
[[ -x $EXECUTOR_BIN ]] || die "EXECUTOR_BIN=$EXECUTOR_BIN is not an executable"
if [[ $ASYNC_BIN == "$ROOT/.build/release/async-echo" ]]; then
    (cd "$ROOT" && swift build -c release --product async-echo >&2) || die "swift build --product async-echo failed"
fi
[[ -x $ASYNC_BIN ]] || die "ASYNC_BIN=$ASYNC_BIN is not an executable"
# valgrind 3.19 cannot read the DWARF Swift 6.3 writes and would stop at start-up; the
# symbol table stays, which is all a total needs.
cp "$REACTOR_BIN" "$WORK/reactor"
strip --strip-debug "$WORK/reactor"
cp "$ASYNC_BIN" "$WORK/async-echo"
strip --strip-debug "$WORK/async-echo"
cc -O2 -shared -fPIC -o "$WORK/malloc_count.so" "$ROOT/Benchmarks/alloc/malloc_count.c" -ldl

# serve TOOL PROTO REQUESTS BURST SERVE-ARGS...: one server run under TOOL (callgrind or
# malloc) with drive.py sending REQUESTS of PROTO in bursts of BURST (SERVE-ARGS starting
# with --async-echo: the async echo, Benchmarks/async/AsyncEcho, with the rest as its
# arguments, instead of `reactor serve echo`); sets TOTAL to the
# run's instructions or allocations. Not run in a $(...) subshell: the EXIT trap, which
# kills a server left running, only sees SERVER as set here.
serve() {
    local tool=$1 proto=$2 requests=$3 burst=$4 listen=tcp port= i
    shift 4
    local server=("$WORK/reactor" serve echo --host 127.0.0.1 --port 0)
    if [[ ${1-} == --async-echo ]]; then
        shift
        server=("$WORK/async-echo")
    fi
    [[ $proto == udp ]] && listen=udp
    local out=$WORK/server.out err=$WORK/server.err
    : >"$out"
    # Swift seeds its hashing at random per process; a fixed seed keeps dictionary probes,
    # and so the instruction count, the same from run to run.
    if [[ $tool == callgrind ]]; then
        SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
            "${server[@]}" "$@" >"$out" 2>"$err" &
    else
        SWIFT_DETERMINISTIC_HASHING=1 LD_PRELOAD=$WORK/malloc_count.so \
            "${server[@]}" "$@" >"$out" 2>"$err" &
    fi
    SERVER=$!
    for ((i = 0; i < 600; i++)); do
        port=$(sed -nE "s/^listening $listen .*:([0-9]+) .*/\\1/p" "$out")
        [[ -n $port ]] && break
        kill -0 "$SERVER" 2>/dev/null || { cat "$err" >&2; die "${server[0]##*/} exited before listening"; }
        sleep 0.05
    done
    [[ -n $port ]] || die "${server[0]##*/} under $tool printed no 'listening $listen' line within 30 s"
    timeout -k 5 120 python3 "$HERE/drive.py" "$proto" 127.0.0.1 "$port" "$requests" --burst "$burst" ||
        die "drive.py $proto against ${server[0]##*/} under $tool failed"
    kill -TERM "$SERVER"
    local rc=0
    wait "$SERVER" || rc=$?
    SERVER=
    [[ $rc -eq 0 ]] || { cat "$err" >&2; die "${server[0]##*/} under $tool exited with status $rc after SIGTERM"; }
    if [[ $tool == callgrind ]]; then
        TOTAL=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$WORK/callgrind.out")
    else
        TOTAL=$(sed -n 's/^malloc_count=//p' "$err")
    fi
    [[ $TOTAL =~ ^[0-9]+$ ]] || die "no $tool total from reactor serve ($TOTAL)"
}

# per_request TOOL PROTO N BURST SERVE-ARGS...: sets PER to (total of 2N requests - total
# of N) / N.
per_request() {
    local tool=$1 proto=$2 n=$3 one
    shift 3
    serve "$tool" "$proto" "$n" "$@"
    one=$TOTAL
    serve "$tool" "$proto" $((2 * n)) "$@"
    say "  $tool $proto: $n requests $one, $((2 * n)) requests $TOTAL"
    PER=$(python3 -c "print(round(($TOTAL - $one) / $n, $([[ $tool == callgrind ]] && echo 1 || echo 3)) + 0.0)")
}

# The scenarios: name, drive.py protocol, requests N, burst, serve arguments.
# --udp-rate 0: all requests come from one address, which the reply limit would throttle.
# With serve's idle timer (the default 300 s) in libevent's timer heap, every wakeup
# subtracts the clock from the timer's deadline (timeout_next), and the microseconds'
# borrow costs 6 instructions more or not depending on where within its second the clock
# is at each wakeup: ping-pong, one wakeup per request, varies by up to 6 per request
# (0.7%; runs of 30,000 requests did no better). Without the timer it repeats to 0.01%,
# so a small regression elsewhere shows there. Metrics on: what a request costs with the
# counters reported (--metrics); the flushes are once per interval, not per request, and a
# run's count of them would follow its wall-clock time under valgrind, so the interval is
# set past the run (docs/operations.md, "Metrics", gives the cost of one flush). It keeps
# the idle timer on, as serve does by default: with no other timer, the flush timer alone
# would add the ~120 instructions per wakeup libevent spends once any timer exists.
SCENARIOS=(
    "ping-pong echo|raw|10000|1|--tcp-only"
    "ping-pong echo, idle timeout off|raw|10000|1|--tcp-only --idle-timeout 0"
    "ping-pong echo, metrics on|raw|10000|1|--tcp-only --metrics 127.0.0.1:0 --metrics-interval 3600"
    "pipelined line echo (per line)|line|32000|16|--tcp-only --framing line"
    "int32 echo (per frame)|int32|32000|16|--tcp-only --framing int32"
    "UDP echo|udp|5000|1|--udp-only --udp-rate 0"
    "async ping-pong echo (ReactorAsync)|raw|5000|1|--async-echo raw"
    "async pipelined line echo (ReactorAsync, per line)|line|16000|16|--async-echo line"
)

metrics=$WORK/metrics.txt
: >"$metrics"
SECONDS=0
for scenario in "${SCENARIOS[@]}"; do
    IFS='|' read -r name proto n burst args <<<"$scenario"
    say "$name"
    # shellcheck disable=SC2086
    per_request callgrind "$proto" "$n" "$burst" $args
    echo "server instructions/request, $name|$PER" >>"$metrics"
    # shellcheck disable=SC2086
    per_request malloc "$proto" "$n" "$burst" $args
    echo "server allocations/request, $name|$PER" >>"$metrics"
done
# executor CASE COUNT: sets PER to executor-bench's allocations per operation of CASE.
executor() {
    local out
    out=$(SWIFT_DETERMINISTIC_HASHING=1 LD_PRELOAD=$WORK/malloc_count.so timeout -k 5 120 "$EXECUTOR_BIN" "$1" "$2" 2>"$WORK/executor.err") ||
        { cat "$WORK/executor.err" >&2; die "executor-bench $1 failed"; }
    PER=$(sed -nE 's/.* allocations_per_op=([0-9.e+-]+)$/\1/p' <<<"$out")
    [[ -n $PER ]] || die "executor-bench $1 printed no allocation count ($out)"
    say "  executor-bench: $out"
}
say "the executor (executor-bench)"
executor execute 20000
python3 -c "import sys; sys.exit(0 if $PER >= 1 else 1)" ||
    die "executor-bench's control counted $PER allocations per posted closure, not 1 or more: the count does not see its allocations"
# Name, case. Each call of `actor` enqueues two jobs on the reactor from the reactor
# thread (into the actor and back to the task); `inline`, none (the runtime runs the
# callee in place: docs/async.md, "The reactor as an executor"); `hop`, one onto each of
# two reactors from the other's thread. `yield` counts 1: the job that Task.yield() makes
# itself (it goes through the reactor's queue twice); anything above that would be the
# executor's.
for row in "allocations/call, actor called from a task on the reactor (two jobs)|actor" \
    "allocations/call, actor called from another actor on the reactor (in place)|inline" \
    "allocations/call, actor called from another reactor's thread (two jobs)|hop" \
    "allocations/job, Task.yield() on the reactor (1 is the job it makes)|yield"; do
    IFS="|" read -r name kind <<<"$row"
    executor "$kind" 100000
    echo "executor $name|$(python3 -c "print(round($PER, 3) + 0.0)")" >>"$metrics"
done
say "server and executor runs: ${SECONDS} s; the client (alloc-check.sh)"
# alloc-check.sh fails on its own when its longer run makes more than 10 allocations (and
# 5 per extra second) more than its shorter, at one or more per 10,000 extra requests; its rows still go into the table then, and `check` fails at the end.
alloc_status=0
ALLOC_SHORT=0.5 ALLOC_LONG=2 ALLOC_RESULTS=$WORK/client.txt REACTOR_BIN=$REACTOR_BIN \
    bash "$ROOT/Benchmarks/alloc/alloc-check.sh" >&2 || alloc_status=$?
# The client's runs are timed, not counted, and it allocates a few times a second for its
# own bookkeeping: 3 decimals keep that (about 0.00005 per request) out of the figure,
# while one allocation per thousand requests still shows.
while IFS='|' read -r label per; do
    echo "client allocations/request, $label|$(python3 -c "print(round($per, 3) + 0.0)")" >>"$metrics"
done <"$WORK/client.txt"
say "all runs: ${SECONDS} s"

# What the binary was built from: the last commit that changed Sources/ or Package.swift
# (later commits elsewhere do not change the figures), and whether those have local edits.
commit=$(git -C "$ROOT" log -1 --format=%h -- Sources Package.swift 2>/dev/null || echo unknown)
[[ -z $(git -C "$ROOT" status --porcelain -- Sources Package.swift 2>/dev/null) ]] || commit="$commit with local changes"
python3 - "$metrics" "$commit" "$(valgrind --version)" >"$WORK/measured.json" <<'EOF'
import datetime, json, os, sys
lines = [line.rstrip("\n").rsplit("|", 1) for line in open(sys.argv[1])]
print(json.dumps({
    "commit": sys.argv[2],
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
    "machine": f"{os.cpu_count()} CPUs, {sys.argv[3]}",
    "metrics": {name: float(value) for name, value in lines},
}, indent=2))
EOF
[[ -z ${BUDGETS_OUT:-} ]] || cp "$WORK/measured.json" "$BUDGETS_OUT"
case $COMMAND in
    measure) cat "$WORK/measured.json" ;;
    *) python3 "$HERE/budgets.py" "$COMMAND" "$WORK/measured.json" ;;
esac
if ((alloc_status != 0)); then
    say "alloc-check.sh failed (status $alloc_status): a client allocated more in its longer run"
    [[ $COMMAND != check ]] || exit 1
fi
