#!/usr/bin/env bash
# redis-client-cost.sh: the load tool's own user-space instructions per Redis request
# (callgrind), `reactor bench --protocol redis` against `redis-benchmark`, on the same
# local redis-server: SET and GET, 50 connections x 16 pipelined, 32-byte values, 100k
# keys. Instructions, not CPU time, because they repeat on a shared machine; callgrind
# sees user space only, so the kernel's share of each read and write (the same system
# calls for both tools, give or take batching) is left out.
#
# Each figure is (total of the longer run - total of the shorter) / (requests of the
# longer - requests of the shorter), so start-up and shutdown cancel out. reactor runs
# for a time (--warmup 0: every response counts; --quiet, so no progress line and no
# p99 computed each second), redis-benchmark for a count (-n). The runs' own figures are
# printed under the table, so a difference that rests on too few requests shows.
#
#   bash Benchmarks/redis-client-cost.sh  (REACTOR_BIN: .build/release/reactor, built when missing;
#                                          COST_SECONDS=3, COST_REQUESTS=100000: the shorter runs,
#                                          the longer ones twice that; COST_TESTS="set get")
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}
SECONDS_SHORT=${COST_SECONDS:-3}
REQUESTS_SHORT=${COST_REQUESTS:-100000}
TESTS=${COST_TESTS:-set get}
WORK=$(mktemp -d /tmp/redis-client-cost.XXXXXX)
SERVER=
cleanup() {
    if [[ -n $SERVER ]]; then kill -KILL "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "redis-client-cost: $*" >&2; exit 1; }

for tool in valgrind redis-server redis-benchmark python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (make servers and make valgrind install them)"
done
[[ -x $REACTOR_BIN ]] || (cd "$ROOT" && swift build -c release --product reactor >&2)
# valgrind 3.19 cannot read the DWARF Swift 6.3 writes (see budgets.sh).
cp "$REACTOR_BIN" "$WORK/reactor"
strip --strip-debug "$WORK/reactor"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
SERVER=$!
disown "$SERVER"  # no "Killed" notice from the shell when the cleanup ends it
for ((i = 0; i < 200; i++)); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.05
done
redis-cli -p "$PORT" ping >/dev/null 2>&1 || die "redis-server did not start: $(cat "$WORK/redis.log")"

total() { sed -n 's/^totals: \([0-9]*\).*/\1/p' "$WORK/callgrind.out"; }

# reactor SECONDS COMMAND: sets TOTAL (instructions) and COUNT (responses).
reactor() {
    # A fixed hashing seed keeps dictionary probes, and so the count, the same each run.
    SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" "$WORK/reactor" bench "127.0.0.1:$PORT" \
        --protocol redis --command "$2" --size 32 --keyspace 100000 --connections 50 --depth 16 \
        --duration "$1" --warmup 0 --quiet --json "$WORK/run.json" >"$WORK/summary.txt" 2>"$WORK/valgrind.err" \
        || die "reactor bench failed: $(tail -5 "$WORK/valgrind.err")"
    TOTAL=$(total)
    COUNT=$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["requests"] + r["errors"])' "$WORK/run.json")
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); sys.exit(r["errors"] and "errors " + str(r["error_kinds"]))' "$WORK/run.json" \
        || die "reactor bench counted errors"
}

# others REQUESTS TEST: sets TOTAL.
others() {
    valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" redis-benchmark -h 127.0.0.1 -p "$PORT" -q \
        -c 50 -P 16 -d 32 -r 100000 -n "$1" -t "$2" >/dev/null 2>"$WORK/valgrind.err" \
        || die "redis-benchmark failed: $(tail -5 "$WORK/valgrind.err")"
    TOTAL=$(total)
}

echo "client instructions per request (callgrind, user space only), 50 connections x 16 pipelined, 32 B values, 100k keys"
printf '%-6s %12s %16s %8s\n' test reactor redis-benchmark ratio
details=()
for test in $TESTS; do
    if [[ $test == set ]]; then command='SET key:{key} {value}'; else command='GET key:{key}'; fi
    reactor "$SECONDS_SHORT" "$command"
    t1=$TOTAL n1=$COUNT
    reactor $((2 * SECONDS_SHORT)) "$command"
    (( COUNT > n1 )) || die "the longer reactor run answered no more requests ($n1, then $COUNT)"
    ours=$(python3 -c "print(($TOTAL - $t1) / ($COUNT - $n1))")
    details+=("$test: reactor ${SECONDS_SHORT} s: $t1 instructions, $n1 requests; $((2 * SECONDS_SHORT)) s: $TOTAL, $COUNT")
    others "$REQUESTS_SHORT" "$test"
    t1=$TOTAL
    others $((2 * REQUESTS_SHORT)) "$test"
    theirs=$(python3 -c "print(($TOTAL - $t1) / $REQUESTS_SHORT)")
    details+=("$test: redis-benchmark $REQUESTS_SHORT requests: $t1 instructions; $((2 * REQUESTS_SHORT)): $TOTAL")
    python3 -c "print(f'{\"$test\":<6} {$ours:>12.1f} {$theirs:>16.1f} {$ours / $theirs:>7.2f}x')"
done
printf '%s\n' "${details[@]}"
