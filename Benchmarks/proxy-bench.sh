#!/usr/bin/env bash
# proxy-bench.sh: what the PROXY protocol costs `reactor serve echo`, in server
# instructions (callgrind, repeatable to a fraction of a percent), with and without
# `--proxy-protocol v2`:
#   - ping-pong: per request on one long connection whose header came first (the header is
#     read once, at accept; the budget for this line is 1.03x);
#   - churn: per connection, each carrying its header and one 64-byte request, then closed;
#     also as the server's CPU time (user + system) per connection, without valgrind.
# Each figure is (total of 2N - total of N) / N, as in Benchmarks/budgets/budgets.sh, so
# start-up and shutdown cancel out. docs/performance.md, "The PROXY protocol", has figures.
#
#   bash Benchmarks/proxy-bench.sh        (REACTOR_BIN: .build/release/reactor, built when missing)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}
WORK=$(mktemp -d /tmp/proxy-bench.XXXXXX)
SERVER=
cleanup() {
    if [[ -n $SERVER ]]; then kill -KILL "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "proxy-bench: $*" >&2; exit 1; }

command -v valgrind >/dev/null || die "valgrind is missing (make valgrind installs it)"
[[ -x $REACTOR_BIN ]] || (cd "$ROOT" && swift build -c release --product reactor >&2)
# valgrind 3.19 cannot read the DWARF Swift 6.3 writes (see budgets.sh).
cp "$REACTOR_BIN" "$WORK/reactor"
strip --strip-debug "$WORK/reactor"

# instructions PROTO REQUESTS DRIVE-FLAGS -- SERVE-ARGS...: sets TOTAL to the server's
# instructions for one run.
instructions() {
    local proto=$1 requests=$2 flags=$3 port= i
    shift 4
    SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
        "$WORK/reactor" serve echo --host 127.0.0.1 --port 0 --tcp-only --idle-timeout 0 "$@" >"$WORK/out" 2>"$WORK/err" &
    SERVER=$!
    for ((i = 0; i < 600; i++)); do
        port=$(sed -nE 's/^listening tcp .*:([0-9]+) .*/\1/p' "$WORK/out")
        [[ -n $port ]] && break
        sleep 0.05
    done
    [[ -n $port ]] || die "reactor serve printed no listening line"
    # shellcheck disable=SC2086
    timeout -k 5 300 python3 "$HERE/budgets/drive.py" "$proto" 127.0.0.1 "$port" "$requests" $flags || die "drive.py failed"
    kill -TERM "$SERVER"
    wait "$SERVER" || die "reactor serve exited badly: $(cat "$WORK/err")"
    SERVER=
    TOTAL=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$WORK/callgrind.out")
}

# per NAME PROTO N DRIVE-FLAGS -- SERVE-ARGS...: prints NAME and (total of 2N - total of N) / N.
per() {
    local name=$1 proto=$2 n=$3 flags=$4 one
    shift 4
    [[ ${1:-} != -- ]] || shift
    instructions "$proto" "$n" "$flags" -- "$@"
    one=$TOTAL
    instructions "$proto" $((2 * n)) "$flags" -- "$@"
    python3 -c "print(f'{\"$name\":<44} {($TOTAL - $one) / $n:>10.1f}')"
}

echo "server instructions (callgrind), ${PROXY_BENCH_REQUESTS:=10000} ping-pong requests, ${PROXY_BENCH_CONNECTIONS:=1000} connections"
{
    per "ping-pong, per request" raw "$PROXY_BENCH_REQUESTS" ""
    per "ping-pong, per request, PROXY v2" raw "$PROXY_BENCH_REQUESTS" "--proxy-v2" -- --proxy-protocol v2
    per "churn, per connection" churn "$PROXY_BENCH_CONNECTIONS" ""
    per "churn, per connection, PROXY v2" churn "$PROXY_BENCH_CONNECTIONS" "--proxy-v2" -- --proxy-protocol v2
} | tee "$WORK/table"
python3 - "$WORK/table" <<'PY'
import sys
rows = {line[:44].strip(): float(line[44:]) for line in open(sys.argv[1])}
for base in ("ping-pong, per request", "churn, per connection"):
    print(f"{base}: PROXY v2 costs {rows[base + ', PROXY v2'] / rows[base]:.3f}x")
PY

# callgrind sees user space only; the kernel's share (the read at accept that finds no
# header yet, for one) shows in the server's CPU time, measured here without valgrind:
# utime + stime from /proc over a churn run (clock ticks: keep the run long enough).
cpu_per_connection() {
    local name=$1 flags=$2 port= i
    shift 2
    "$REACTOR_BIN" serve echo --host 127.0.0.1 --port 0 --tcp-only --idle-timeout 0 "$@" >"$WORK/out" 2>"$WORK/err" &
    SERVER=$!
    for ((i = 0; i < 200; i++)); do
        port=$(sed -nE 's/^listening tcp .*:([0-9]+) .*/\1/p' "$WORK/out")
        [[ -n $port ]] && break
        sleep 0.05
    done
    [[ -n $port ]] || die "reactor serve printed no listening line"
    # shellcheck disable=SC2086
    timeout -k 5 300 python3 "$HERE/budgets/drive.py" churn 127.0.0.1 "$port" "$PROXY_BENCH_CPU_CONNECTIONS" $flags || die "drive.py failed"
    local ticks
    ticks=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
    kill -TERM "$SERVER"
    wait "$SERVER" || true
    SERVER=
    python3 -c "print(f'{\"$name\":<44} {$ticks / $(getconf CLK_TCK) / $PROXY_BENCH_CPU_CONNECTIONS * 1e6:>10.1f}')"
}
echo "server CPU (user + system, µs) per connection, churn, ${PROXY_BENCH_CPU_CONNECTIONS:=20000} connections, no valgrind"
cpu_per_connection "churn, per connection" ""
cpu_per_connection "churn, per connection, PROXY v2" "--proxy-v2" --proxy-protocol v2
