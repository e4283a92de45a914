#!/usr/bin/env bash
# async-bench.sh: what the async layer costs (issue 12), side by side in one run.
#
# 1. Ping-pong, loadgen: $CONNECTIONS connections, one $SIZE-byte request in flight on
#    each, $WARMUP s of warmup then $DURATION s measured, server pinned to CPU
#    $SERVER_CPU, loadgen to CPU $CLIENT_CPU. Servers (raw echo, every byte read written
#    back):
#      callback        `reactor serve echo --tcp-only` (the callback API, release build)
#      async           `async-echo raw` (Benchmarks/async/AsyncEcho: `serve`, a loop of
#                      `inbound` and `outbound.write` per connection, on the reactor)
#      nio-async       `nio-async-echo` (Benchmarks/swift: SwiftNIO's NIOAsyncChannel,
#                      executeThenClose per connection; one thread, the event loop
#                      installed as the global executor)
#      nio-async-pool  `nio-async-echo --pool` (the same on Swift's cooperative pool: the
#                      event loop and pool threads, all on CPU $SERVER_CPU)
# 2. Pipelined lines, loadgen: $LINE_CONNECTIONS connections x $DEPTH lines of $LINE_SIZE
#    bytes in flight: `reactor serve echo --framing line` and `async-echo line`.
# 3. Allocations, drive.py (the budgets' lockstep client; no timing): the server's heap
#    allocations under Benchmarks/alloc/malloc_count.c over runs of N and 2N requests,
#    (total of 2N - total of N) / N, so start-up, accept and shutdown cancel out:
#    ping-pong (one connection, one 64-byte request in flight) for callback, async and
#    nio-async, and pipelined lines (bursts of 64 lines of 32 bytes, the next burst once
#    all are back) per line and per burst for callback and async. Each burst arrives in
#    one read or more, so allocations per read are at most those per burst.
#
# In parts 1 and 2 the servers run in a rotating order for $ROUNDS rounds; ratios are
# taken within a round, and the tables show medians. loadgen reads the server's
# utime+stime (/proc/PID/stat) at both ends of the measured window, so CPU per request
# covers exactly the requests counted. As in echo-bench.sh (helpers in ../lib.sh), each
# run waits for a quiet machine first and is repeated when other processes used more than
# $NOISE_MAX % of a CPU during it; the report says how loaded the machine was.
#
# Usage: bash Benchmarks/async/async-bench.sh
# Environment: ROUNDS (5) DURATION (10) WARMUP (2) CONNECTIONS (100) SIZE (64)
#   LINE_CONNECTIONS (50) DEPTH (64) LINE_SIZE (32) N (20000)
#   NOISE_MAX (10) RETRIES (2) QUIET_WAIT (60) QUIET_BUDGET (300) SERVER_CPU (0) CLIENT_CPU (1)
#   REACTOR_BIN, ASYNC_BIN (.build/release/reactor, async-echo: built when the default path)
#   NIO_ASYNC_BIN (Benchmarks/swift/.build/release/nio-async-echo, built if missing)
#   SERVERS ("callback async nio-async nio-async-pool") LINE_SERVERS ("callback async")
#   ALLOC (1; 0 skips part 3)
# Output: a markdown report on stdout, also written to Benchmarks/results/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(dirname "$HERE")
ROUNDS=${ROUNDS:-5}
CONNECTIONS=${CONNECTIONS:-100}
SIZE=${SIZE:-64}
LINE_CONNECTIONS=${LINE_CONNECTIONS:-50}
DEPTH=${DEPTH:-64}
LINE_SIZE=${LINE_SIZE:-32}
N=${N:-20000}
ALLOC=${ALLOC:-1}
ASYNC_BIN=${ASYNC_BIN:-$ROOT/.build/release/async-echo}
NIO_ASYNC_BIN=${NIO_ASYNC_BIN:-$HERE/swift/.build/release/nio-async-echo}
SERVERS=${SERVERS-"callback async nio-async nio-async-pool"}
LINE_SERVERS=${LINE_SERVERS-"callback async"}

# Server names: callback, async, nio-async, nio-async-pool; line-callback, line-async.
# The binaries run from copies in $WORK, so that a rebuild during the run changes nothing.
server_command() {
    case $1 in
        callback) echo "$COPIES/reactor serve echo --tcp-only --host 127.0.0.1 --port 0" ;;
        async) echo "$COPIES/async-echo raw" ;;
        nio-async) echo "$COPIES/nio-async-echo 127.0.0.1 0" ;;
        nio-async-pool) echo "$COPIES/nio-async-echo 127.0.0.1 0 --pool" ;;
        line-callback) echo "$COPIES/reactor serve echo --tcp-only --framing line --host 127.0.0.1 --port 0" ;;
        line-async) echo "$COPIES/async-echo line" ;;
        *) die "unknown server $1" ;;
    esac
}

BENCH=async-bench
# shellcheck source=../lib.sh
source "$HERE/lib.sh"

# ---- build ----
build_c_programs
for product in reactor async-echo; do
    bin=$REACTOR_BIN
    [[ $product == async-echo ]] && bin=$ASYNC_BIN
    if [[ $bin == "$ROOT/.build/release/$product" ]]; then
        say "building $product (swift build -c release)"
        (cd "$ROOT" && swift build -c release --product "$product" >&2) || die "building $product failed"
    fi
    [[ -x $bin ]] || die "$bin is not an executable"
done
if [[ " $SERVERS " == *" nio-async"* && ! -x $NIO_ASYNC_BIN ]]; then
    [[ $NIO_ASYNC_BIN == "$HERE/swift/.build/release/nio-async-echo" ]] || die "NIO_ASYNC_BIN=$NIO_ASYNC_BIN is not an executable"
    say "building nio-async-echo (swift build -c release in Benchmarks/swift)"
    swift build -c release --package-path "$HERE/swift" --scratch-path "$HERE/swift/.build" \
        --product nio-async-echo >&2 || die "building nio-async-echo failed"
fi
COPIES=$WORK/copies
mkdir -p "$COPIES"
cp "$REACTOR_BIN" "$COPIES/reactor"
cp "$ASYNC_BIN" "$COPIES/async-echo"
[[ ! -x $NIO_ASYNC_BIN ]] || cp "$NIO_ASYNC_BIN" "$COPIES/nio-async-echo"
cc -O2 -shared -fPIC -o "$WORK/malloc_count.so" "$HERE/alloc/malloc_count.c" -ldl

# The binaries at the default paths were just built from the sources as they are (uncommitted changes are
# named): an older modification time only means the build found nothing to redo.
note_commit no

# ---- 1 and 2: loadgen rounds ----
deadline=$((WARMUP + DURATION + 60))

# run_part PREFIX SERVERS RATE-KEY RATE-UNIT CPU-KEY CPU-UNIT LOADGEN-ARGS...: ROUNDS rounds
# over SERVERS (named PREFIX-NAME, or NAME for an empty PREFIX), in a rotating order.
# Appends to $WORK/NAME.rounds one line per round:
#   round repeats other% rate server-cpu-per-unit server-cpu% client-cpu% p50 p99
run_part() {
    local prefix=$1 servers=$2 rate_key=$3 rate_unit=$4 cpu_key=$5 cpu_unit=$6 name k count
    local -a names
    shift 6
    read -r -a names <<<"$servers"
    count=${#names[@]}
    for ((round = 1; round <= ROUNDS; round++)); do
        for ((k = 0; k < count; k++)); do
            name=${prefix:+$prefix-}${names[$(((k + round - 1) % count))]}
            start_server "$name"
            measure "$name" "$name-$round" "$rate_key" "$rate_unit" "$cpu_key" "$cpu_unit" "$deadline" \
                "$@" --warmup "$WARMUP" --duration "$DURATION"
            echo "$round $REPEATS $BEST_NOISE $(field "$rate_key" "$BEST") $(field "$cpu_key" "$BEST")" \
                "$(field server_cpu_pct "$BEST") $(field client_cpu_pct "$BEST") $(field p50 "$BEST") $(field p99 "$BEST")" \
                >>"$WORK/$name.rounds"
            stop_server "$name"
        done
    done
}

[[ -z $SERVERS ]] || run_part "" "$SERVERS" rps req/s server_cpu_us_per_request us/req \
    pingpong --connections "$CONNECTIONS" --size "$SIZE"
[[ -z $LINE_SERVERS ]] || run_part line "$LINE_SERVERS" lps lines/s server_cpu_us_per_line us/line \
    pipeline --connections "$LINE_CONNECTIONS" --depth "$DEPTH" --size "$LINE_SIZE" --delimiter lf

# ---- 3: allocations ----
# allocations NAME PROTO REQUESTS BURST: sets TOTAL to the allocations of server NAME
# (unpinned, under malloc_count.so) over a drive.py run of REQUESTS.
allocations() {
    local name=$1 proto=$2 requests=$3 burst=$4 out=$WORK/alloc.out err=$WORK/alloc.err i port=
    : >"$out"
    # shellcheck disable=SC2046
    SWIFT_DETERMINISTIC_HASHING=1 LD_PRELOAD=$WORK/malloc_count.so $(server_command "$name") >"$out" 2>"$err" &
    SERVER_PID=$!
    for ((i = 0; i < 600; i++)); do
        port=$(sed -nE 's/^listening tcp .*:([0-9]+) .*/\1/p' "$out" | head -1)
        [[ -n $port ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$err" >&2; die "$name exited before listening"; }
        sleep 0.05
    done
    [[ -n $port ]] || die "$name printed no 'listening tcp' line within 30 s"
    timeout -k 5 300 python3 "$HERE/budgets/drive.py" "$proto" 127.0.0.1 "$port" "$requests" --burst "$burst" ||
        die "drive.py $proto against $name failed"
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || { cat "$err" >&2; die "$name exited with an error after SIGTERM"; }
    SERVER_PID=
    TOTAL=$(sed -n 's/^malloc_count=//p' "$err")
    [[ $TOTAL =~ ^[0-9]+$ ]] || die "no allocation count from $name ($TOTAL)"
}

# per_request NAME PROTO BURST: prints (allocations over 2n requests - over n) / n, n = N
# rounded down to whole bursts (drive.py sends whole bursts). Not in a $(...) subshell,
# so that the EXIT trap sees SERVER_PID: sets PER.
per_request() {
    local name=$1 proto=$2 burst=$3 one n
    n=$((N / burst * burst))
    allocations "$name" "$proto" "$n" "$burst"
    one=$TOTAL
    allocations "$name" "$proto" $((2 * n)) "$burst"
    say "allocations $name $proto: $n requests $one, $((2 * n)) requests $TOTAL"
    PER=$(python3 -c "print(round(($TOTAL - $one) / $n, 4) + 0.0)")
}

if [[ $ALLOC != 0 ]]; then
    : >"$WORK/alloc.rows"
    for name in callback async nio-async; do
        [[ $name != nio-async || -x $COPIES/nio-async-echo ]] || continue
        per_request "$name" raw 1
        echo "pingpong $name $PER" >>"$WORK/alloc.rows"
    done
    for name in callback async; do
        per_request "line-$name" line 64
        echo "line $name $PER" >>"$WORK/alloc.rows"
    done
fi

# ---- report ----
label() {
    case ${1#line-} in
        callback) echo "callback echo (\`reactor serve echo\`)" ;;
        async) echo "async echo (\`async-echo\`, ReactorAsync)" ;;
        nio-async) echo "SwiftNIO NIOAsyncChannel echo, 1 thread" ;;
        nio-async-pool) echo "SwiftNIO NIOAsyncChannel echo, event loop + cooperative pool" ;;
    esac
}
# alloc PART NAME: part 3's figure, or n/a.
alloc() { awk -v p="$1" -v n="$2" '$1 == p && $2 == n {print $3; found = 1} END {if (!found) print "n/a"}' "$WORK/alloc.rows" 2>/dev/null || echo n/a; }

part_table() {
    local prefix=$1 servers=$2 unit=$3 name
    local -a names
    read -r -a names <<<"$servers"
    echo "| server | ${unit}s/s | vs callback | server CPU µs/$unit | CPU vs callback | server CPU % | client CPU % | bound by | p50 µs | p99 µs | other % (max) | repeats |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
    for name in "${names[@]}"; do
        name=${prefix:+$prefix-}$name
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" "$(label "$name")" \
            "$(calc %.0f "$(col 4 "$name")")" "$(fmt %.3f "$(ratio "$name" "${prefix:+$prefix-}callback" 4)")" \
            "$(calc %.3f "$(col 5 "$name")")" "$(fmt %.3f "$(ratio "$name" "${prefix:+$prefix-}callback" 5)")" \
            "$(col 6 "$name")" "$(col 7 "$name")" "$(bound "$(col 6 "$name")" "$(col 7 "$name")")" \
            "$(col 8 "$name")" "$(col 9 "$name")" \
            "$(awk '{print $3}' "$WORK/$name.rounds" | sort -g | tail -1)" \
            "$(awk '{s += $2} END {print s}' "$WORK/$name.rounds")"
    done
    echo
    echo "Per round (server, round, repeats, other %, ${unit}s/s, server µs/$unit, server CPU %, client CPU %, p50, p99):"
    echo
    echo '```'
    for name in "${names[@]}"; do
        name=${prefix:+$prefix-}$name
        sed "s/^/$name /" "$WORK/$name.rounds"
    done
    echo '```'
}

check() {
    local what=$1 value=$2 test=$3
    if [[ $value == nan || $value == n/a ]]; then echo "- n/a $what (not run)"
    elif awk "BEGIN {exit !($value $test)}"; then echo "- PASS $what: $(calc %.3f "$value") (target $test)"
    else echo "- MISS $what: $(calc %.3f "$value") (target $test)"; fi
}

note_head_moved
stamp=$(date -u +%Y%m%d-%H%M%S)
report=$WORK/report.md
{
    echo "## Async benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Server on CPU $SERVER_CPU, loadgen on CPU $CLIENT_CPU, loopback; ${WARMUP} s warmup + ${DURATION} s measured," \
        "$ROUNDS interleaved rounds, medians (ratios: median of per-round ratios)." \
        "'bound by': client when loadgen used >= 95% of its CPU and the server < 95%, server when the server used >= 95%." \
        "'other': machine busy time minus client minus server, in % of one CPU (other sessions' load)."
    if [[ -n $SERVERS ]]; then
        echo
        echo "### Ping-pong: $CONNECTIONS connections x 1 request of $SIZE bytes in flight"
        echo
        part_table "" "$SERVERS" request
    fi
    if [[ -n $LINE_SERVERS ]]; then
        echo
        echo "### Pipelined lines: $LINE_CONNECTIONS connections x $DEPTH lines of $LINE_SIZE bytes in flight"
        echo
        part_table line "$LINE_SERVERS" line
    fi
    if [[ $ALLOC != 0 ]]; then
        echo
        echo "### Server heap allocations in steady state (drive.py, runs of N and 2N, N = $N)"
        echo
        echo "| workload | callback | async | NIOAsyncChannel, 1 thread |"
        echo "|---|---:|---:|---:|"
        echo "| ping-pong, per request | $(alloc pingpong callback) | $(alloc pingpong async) | $(alloc pingpong nio-async) |"
        line_cb=$(alloc line callback) line_as=$(alloc line async)
        echo "| pipelined lines, per line | $line_cb | $line_as | |"
        echo "| pipelined lines, per burst of 64 (>= per read) | $(fmt %.2f "$(calc %.4f "$line_cb * 64")") | $(fmt %.2f "$(calc %.4f "$line_as * 64")") | |"
    fi
    echo
    echo "Targets (issue 12):"
    check "async server CPU per request <= 1.5x the callback echo's (ping-pong)" "$(ratio async callback 5)" "<= 1.5"
    check "async requests/s >= 2x the one-thread NIOAsyncChannel echo's (ping-pong)" "$(ratio async nio-async 4)" ">= 2"
    if [[ $ALLOC != 0 ]]; then
        check "async pipelined lines: allocations per line" "$(alloc line async)" "== 0"
        check "async pipelined lines: allocations per burst (so per read at most)" "$(calc %.4f "$(alloc line async) * 64")" "<= 1"
    fi
    echo
    echo "$(machine_line) at commit $commit${dirty:+ with uncommitted changes to $dirty}$stale."
} >"$report"

publish_report "$report" "$stamp"
