#!/usr/bin/env bash
# instr-bench.sh: user-space instructions per request of `reactor serve echo` under load
# with several requests per wakeup (issue 15's figures), where Benchmarks/budgets counts
# one request per wakeup. The release binary runs under callgrind (a `strip --strip-debug`
# copy: valgrind 3.19 cannot read Swift 6.3's DWARF) while Benchmarks/bin/loadgen drives it
# for S1 and then, in a second server run, S2 seconds (--warmup 0); the figure is
# (Ir(S2) - Ir(S1)) / (requests(S2) - requests(S1)), so start-up, accept and shutdown
# cancel out. loadgen is timed, so how many requests each wakeup finds varies a little
# from run to run: the figures repeat to about 1 %, not to the instruction.
#
#   bash Benchmarks/instr-bench.sh [pingpong|pingpong-noidle|line|int32|udp]...   (all by default)
#     pingpong         20 connections, 64-byte requests, serve's default idle timer
#     pingpong-noidle  the same with --idle-timeout 0
#     line             50 connections x 64 pipelined 32-byte lines, --framing line
#     int32            the same with int32 frames of 4 + 32 bytes, --framing int32
#     udp              8 sockets x 16 datagrams of 64 bytes in flight, --udp-only --udp-rate 0
#
# Environment: REACTOR_BIN (.build/release/reactor, built when missing), S1 and S2
# (seconds, 3 and 6), RUNS (pairs of runs per scenario, 1), KEEP (a directory to keep each
# run's callgrind output in, as NAME-SECONDS.out, for callgrind_annotate).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}
S1=${S1:-3}
S2=${S2:-6}
RUNS=${RUNS:-1}
KEEP=${KEEP:-}
WORK=$(mktemp -d /tmp/instr-bench.XXXXXX)
SERVER=
cleanup() {
    if [[ -n $SERVER ]]; then kill -KILL "$SERVER" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
die() { echo "instr-bench: $*" >&2; exit 1; }

command -v valgrind >/dev/null || die "valgrind is missing (make valgrind installs it)"
make -s -C "$HERE" bin/loadgen >&2 || die "building loadgen failed"
[[ -x $REACTOR_BIN ]] || (cd "$ROOT" && swift build -c release --product reactor >&2)
cp "$REACTOR_BIN" "$WORK/reactor"
strip --strip-debug "$WORK/reactor"

# run NAME SECONDS LISTEN SERVE-ARGS -- LOADGEN-ARGS: one server run; sets TOTAL
# (instructions) and COUNT (requests loadgen saw answered).
run() {
    local name=$1 seconds=$2 listen=$3 port= i serve=() out
    shift 3
    while [[ $1 != -- ]]; do serve+=("$1"); shift; done
    shift
    # Emptied here, not by the redirection below, which happens only once the server's
    # process starts: the port must not be read from the previous run's output.
    : >"$WORK/out"
    SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
        "$WORK/reactor" serve echo --host 127.0.0.1 --port 0 "${serve[@]}" >"$WORK/out" 2>"$WORK/err" &
    SERVER=$!
    for ((i = 0; i < 600; i++)); do
        port=$(sed -nE "s/^listening $listen .*:([0-9]+) .*/\\1/p" "$WORK/out")
        [[ -n $port ]] && break
        kill -0 "$SERVER" 2>/dev/null || die "reactor serve exited: $(cat "$WORK/err")"
        sleep 0.05
    done
    [[ -n $port ]] || die "reactor serve printed no 'listening $listen' line"
    out=$("$HERE/bin/loadgen" "$@" --port "$port" --warmup 0 --duration "$seconds") || die "loadgen $* failed"
    kill -TERM "$SERVER"
    wait "$SERVER" || die "reactor serve exited badly: $(cat "$WORK/err")"
    SERVER=
    TOTAL=$(sed -n 's/^totals: \([0-9]*\).*/\1/p' "$WORK/callgrind.out")
    [[ -z $KEEP ]] || cp "$WORK/callgrind.out" "$KEEP/$name-$seconds.out"
    COUNT=$(sed -nE 's/^(requests|lines|frames|datagrams)=([0-9]+) .*/\2/p' <<<"$out")
    [[ $TOTAL =~ ^[0-9]+$ && $COUNT =~ ^[0-9]+$ ]] || die "no total or count ($TOTAL, $COUNT): $out"
}

# scenario NAME LISTEN SERVE-ARGS -- LOADGEN-ARGS: prints NAME and the figure of each run pair.
scenario() {
    local name=$1 listen=$2 r total1 count1 figures=()
    shift 2
    for ((r = 0; r < RUNS; r++)); do
        run "$name" "$S1" "$listen" "$@"
        total1=$TOTAL count1=$COUNT
        run "$name" "$S2" "$listen" "$@"
        ((COUNT > count1)) || die "$name: the longer run answered no more requests ($count1, $COUNT)"
        figures+=("$(python3 -c "print(f'{($TOTAL - $total1) / ($COUNT - $count1):.1f}')") ($((COUNT - count1)) requests)")
    done
    printf '%-18s %s\n' "$name" "${figures[*]}"
}

SCENARIOS=("$@")
[[ ${#SCENARIOS[@]} -gt 0 ]] || SCENARIOS=(pingpong pingpong-noidle line int32 udp)
echo "server instructions per request (callgrind), runs of $S1 s and $S2 s"
for name in "${SCENARIOS[@]}"; do
    case $name in
        pingpong) scenario "$name" tcp --tcp-only -- pingpong --connections 20 --size 64 ;;
        pingpong-noidle) scenario "$name" tcp --tcp-only --idle-timeout 0 -- pingpong --connections 20 --size 64 ;;
        line) scenario "$name" tcp --tcp-only --framing line -- pipeline --connections 50 --depth 64 --size 32 --delimiter lf ;;
        int32) scenario "$name" tcp --tcp-only --framing int32 -- pipeline --connections 50 --depth 64 --size 32 --framing int32 ;;
        udp) scenario "$name" udp --udp-only --udp-rate 0 -- udp --sockets 8 --depth 16 --size 64 --timeout-ms 5000 ;;
        *) die "unknown scenario '$name' (pingpong, pingpong-noidle, line, int32, udp)" ;;
    esac
done
