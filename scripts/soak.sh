#!/usr/bin/env bash
# Soak (issue 6): mixed load against `reactor serve all` and a line-framed echo, then
# checks that nothing leaked and nothing was lost. `make soak` (60 s), `make soak-ci` (short).
#
# Servers, on free ports (serve all at a port offset whose 12 ports are free):
#   reactor serve all --port-offset N --udp-rate 1000000 --udp-burst 100000
#       (the UDP reply guard stays on, with limits no client here reaches)
#   reactor serve echo --framing line --max-frame 4096 --port 0 --tcp-only
#       (the bad-frame clients need a framed echo; serve all's echo is raw)
# Load, all at once for SOAK_SECONDS after a warm-up of SOAK_WARMUP seconds of the same:
#   ping-pong      loadgen pingpong, 16 connections x 64 B, on serve all's echo
#   pipelined      loadgen pipeline, 8 x 32 lines of 32 B in flight, through the raw echo;
#                  reactor bench --protocol line, 8 x 16 in flight, through the line echo
#   churn          reactor bench --mode churn, 4 clients connecting, one echo, closing
#   UDP echo       loadgen udp, 4 sockets x 4 datagrams of 256 B in flight
#   bad frames     soak-clients.py badframes (over-long lines, garbage) on the line echo
#   resets         soak-clients.py resets: RST with output queued, mid-line, mid-echo
#   other services soak-clients.py misc: chargen, daytime, time, qotd, discard over TCP
#                  and UDP, UDP from thousands of source addresses, a refused source port
# Every echo client checks every byte it gets back; loadgen and reactor bench fail on a
# wrong or missing byte, the Python clients on a wrong or missing reply.
#
# Checks: each server's open descriptors (/proc/PID/fd) back to the count after the
# warm-up, VmRSS within SOAK_RSS_SLACK % (10) of its post-warm-up value, zero lost or
# corrupted echo bytes and zero client errors, and exit status 0 on SIGTERM. Prints a
# summary and PASS or FAIL; exits 1 on FAIL.
#
#   SOAK_SECONDS=60 SOAK_WARMUP=10 REACTOR_BIN=.build/release/reactor bash scripts/soak.sh
set -uo pipefail

SOAK_SECONDS=${SOAK_SECONDS:-60}
SOAK_WARMUP=${SOAK_WARMUP:-10}
SOAK_RSS_SLACK=${SOAK_RSS_SLACK:-10}
MAX_FRAME=4096

BENCH=soak
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/Benchmarks
# shellcheck source=../Benchmarks/lib.sh
source "$HERE/lib.sh"
CLIENTS=$ROOT/scripts/soak-clients.py

ALL_PID=
LINE_PID=
CLIENT_PIDS=()
soak_cleanup() {
    local pid
    for pid in "${CLIENT_PIDS[@]}" $ALL_PID $LINE_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.2
    for pid in "${CLIENT_PIDS[@]}" $ALL_PID $LINE_PID; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap soak_cleanup EXIT

FAILURES=()
fail_check() { FAILURES+=("$*"); say "FAIL: $*"; }

fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# True when none of the given TCP and UDP ports on 127.0.0.1 is bound.
ports_free() {
    python3 - "$@" <<'EOF'
import socket, sys
for port in map(int, sys.argv[1:]):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            sys.exit(1)
        finally:
            s.close()
EOF
}

# wait_listening OUT PID COUNT: waits until the server wrote COUNT 'listening' lines.
wait_listening() {
    local i
    for ((i = 0; i < 200; i++)); do
        (($(grep -c '^listening ' "$1") >= $3)) && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

start_servers() {
    local attempt offset
    for ((attempt = 0; attempt < 10; attempt++)); do
        offset=$((20000 + RANDOM % 400 * 100))
        ports_free $((offset + 7)) $((offset + 9)) $((offset + 13)) $((offset + 17)) $((offset + 19)) $((offset + 37)) || continue
        "$REACTOR_BIN" serve all --port-offset "$offset" --udp-rate 1000000 --udp-burst 100000 \
            >"$WORK/all.out" 2>"$WORK/all.err" &
        ALL_PID=$!
        if wait_listening "$WORK/all.out" "$ALL_PID" 12; then
            OFFSET=$offset
            ECHO_PORT=$((offset + 7))
            break
        fi
        wait "$ALL_PID" 2>/dev/null
        ALL_PID=
        say "serve all on offset $offset did not start ($(tail -1 "$WORK/all.err")); another offset"
    done
    [[ -n $ALL_PID ]] || die "could not start reactor serve all on a free port offset"
    "$REACTOR_BIN" serve echo --framing line --max-frame "$MAX_FRAME" --port 0 --tcp-only \
        >"$WORK/line.out" 2>"$WORK/line.err" &
    LINE_PID=$!
    wait_listening "$WORK/line.out" "$LINE_PID" 1 || { cat "$WORK/line.err" >&2; die "the line echo did not start"; }
    LINE_PORT=$(sed -nE 's/^listening tcp .*:([0-9]+) echo$/\1/p' "$WORK/line.out")
    [[ $LINE_PORT =~ ^[0-9]+$ ]] || die "cannot read the line echo's port from $(cat "$WORK/line.out")"
}

# run_load PHASE SECONDS: every client at once; waits for all; FAILs a client that failed.
run_load() {
    local phase=$1 seconds=$2 dir=$WORK/$1 i name
    mkdir -p "$dir"
    local -a names=(pingpong pipeline line churn udp badframes resets misc)
    local -a commands=(
        "$LOADGEN pingpong --port $ECHO_PORT --connections 16 --size 64 --duration $seconds --warmup 0"
        "$LOADGEN pipeline --port $ECHO_PORT --connections 8 --depth 32 --size 32 --delimiter lf --duration $seconds --warmup 0"
        "$REACTOR_BIN bench 127.0.0.1:$LINE_PORT --protocol line --connections 8 --depth 16 --size 48 --duration $seconds --warmup 0 --request-timeout 10 --quiet --json $dir/line.json"
        "$REACTOR_BIN bench 127.0.0.1:$ECHO_PORT --mode churn --connections 4 --size 64 --duration $seconds --warmup 0 --request-timeout 10 --connect-timeout 10 --quiet --json $dir/churn.json"
        "$LOADGEN udp --port $ECHO_PORT --sockets 4 --depth 4 --size 256 --timeout-ms 2000 --duration $seconds --warmup 0"
        "python3 $CLIENTS badframes --port $LINE_PORT --max-frame $MAX_FRAME --duration $seconds"
        "python3 $CLIENTS resets --echo-port $ECHO_PORT --line-port $LINE_PORT --duration $seconds"
        "python3 $CLIENTS misc --offset $OFFSET --duration $seconds"
    )
    CLIENT_PIDS=()
    for i in "${!names[@]}"; do
        # shellcheck disable=SC2086
        ${commands[$i]} >"$dir/${names[$i]}.out" 2>"$dir/${names[$i]}.err" &
        CLIENT_PIDS+=($!)
    done
    for i in "${!names[@]}"; do
        name=${names[$i]}
        if ! wait "${CLIENT_PIDS[$i]}"; then
            fail_check "$phase: $name failed: $(grep -v '^$' "$dir/$name.err" | tail -2 | tr '\n' ' ')"
        fi
    done
    CLIENT_PIDS=()
}

# settle PID FDS: waits up to 15 s for the server's descriptors to come back to FDS.
settle() {
    local i
    for ((i = 0; i < 150; i++)); do
        (($(fds "$1") <= $2)) && return 0
        sleep 0.1
    done
    return 1
}

# stop PID NAME: SIGTERM; FAILs unless it exits 0 within 15 s. Sets RC.
stop() {
    local pid=$1 name=$2 i rc=0
    RC=killed
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        fail_check "$name did not exit within 15 s of SIGTERM"
        wait "$pid" 2>/dev/null
        return
    fi
    wait "$pid" || rc=$?
    ((rc == 0)) || fail_check "$name exited with status $rc after SIGTERM (expected 0)"
    RC=$rc
}

json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))" "$@"; }

build_c_programs
ensure_reactor
start_servers
say "serve all (pid $ALL_PID) on port offset $OFFSET, line echo (pid $LINE_PID) on $LINE_PORT"

ALL_FDS0=$(fds "$ALL_PID")
LINE_FDS0=$(fds "$LINE_PID")
ALL_RSS0=$(rss_kb "$ALL_PID")
LINE_RSS0=$(rss_kb "$LINE_PID")

say "warm-up: ${SOAK_WARMUP}s of the whole mix"
run_load warmup "$SOAK_WARMUP"
settle "$ALL_PID" "$ALL_FDS0" || fail_check "serve all: $(fds "$ALL_PID") descriptors 15 s after the warm-up, $ALL_FDS0 before it"
settle "$LINE_PID" "$LINE_FDS0" || fail_check "line echo: $(fds "$LINE_PID") descriptors 15 s after the warm-up, $LINE_FDS0 before it"
ALL_FDS1=$(fds "$ALL_PID")
LINE_FDS1=$(fds "$LINE_PID")
ALL_RSS1=$(rss_kb "$ALL_PID")
LINE_RSS1=$(rss_kb "$LINE_PID")

say "soak: ${SOAK_SECONDS}s of the whole mix"
ALL_PEAK_FDS=0 ALL_PEAK_RSS=0 LINE_PEAK_FDS=0 LINE_PEAK_RSS=0
(
    while sleep 1; do echo "$(fds "$ALL_PID") $(rss_kb "$ALL_PID") $(fds "$LINE_PID") $(rss_kb "$LINE_PID")"; done
) >"$WORK/samples" &
SAMPLER=$!
START=$SECONDS
run_load soak "$SOAK_SECONDS"
ELAPSED=$((SECONDS - START))
kill "$SAMPLER" 2>/dev/null
wait "$SAMPLER" 2>/dev/null
read -r ALL_PEAK_FDS ALL_PEAK_RSS LINE_PEAK_FDS LINE_PEAK_RSS < <(
    awk '{for (i = 1; i <= 4; i++) if ($i > m[i]) m[i] = $i} END {print m[1] + 0, m[2] + 0, m[3] + 0, m[4] + 0}' "$WORK/samples")

settle "$ALL_PID" "$ALL_FDS1" || fail_check "serve all: $(fds "$ALL_PID") descriptors 15 s after the soak, $ALL_FDS1 after the warm-up"
settle "$LINE_PID" "$LINE_FDS1" || fail_check "line echo: $(fds "$LINE_PID") descriptors 15 s after the soak, $LINE_FDS1 after the warm-up"
ALL_FDS2=$(fds "$ALL_PID")
LINE_FDS2=$(fds "$LINE_PID")
ALL_RSS2=$(rss_kb "$ALL_PID")
LINE_RSS2=$(rss_kb "$LINE_PID")
# Fewer than after the warm-up would mean a listener or UDP socket was lost.
((ALL_FDS2 == ALL_FDS1)) || fail_check "serve all: $ALL_FDS2 descriptors after the soak, $ALL_FDS1 after the warm-up"
((LINE_FDS2 == LINE_FDS1)) || fail_check "line echo: $LINE_FDS2 descriptors after the soak, $LINE_FDS1 after the warm-up"
for server in "ALL serve all" "LINE line echo"; do
    before=${server%% *}_RSS1 after=${server%% *}_RSS2
    if ((${!after} * 100 > ${!before} * (100 + SOAK_RSS_SLACK))); then
        fail_check "${server#* }: RSS ${!after} KiB after the soak, over ${!before} KiB after the warm-up + ${SOAK_RSS_SLACK}%"
    fi
done

stop "$ALL_PID" "serve all"
ALL_RC=$RC ALL_PID=
stop "$LINE_PID" "line echo"
LINE_RC=$RC LINE_PID=

# ---- what the clients verified in the soak phase ----
D=$WORK/soak
num() { local v; v=$("$@" 2>/dev/null); [[ $v =~ ^[0-9]+$ ]] && echo "$v" || echo 0; }
PP=$(num field requests "$D/pingpong.out")
PL=$(num field lines "$D/pipeline.out")
UDP=$(num field datagrams "$D/udp.out")
UDP_LOST=$(num field lost "$D/udp.out")
LINE_REQ=$(num json "$D/line.json" requests)
LINE_ERR=$(num json "$D/line.json" 'errors + warmup_errors')
CHURN_REQ=$(num json "$D/churn.json" requests)
CHURN_ERR=$(num json "$D/churn.json" 'errors + warmup_errors')
BAD=$(num field bad_closed "$D/badframes.out")
RESETS=$(($(num field reset_full "$D/resets.out") + $(num field reset_half_line "$D/resets.out") + $(num field reset_half_echo "$D/resets.out")))
PY_BYTES=$(($(num field verified_bytes "$D/badframes.out") + $(num field verified_bytes "$D/resets.out") + $(num field verified_bytes "$D/misc.out")))
SOURCES=$(num field udp_sources "$D/misc.out")
((UDP_LOST == 0)) || fail_check "UDP echo: $UDP_LOST datagrams lost"
((LINE_ERR == 0)) || fail_check "line echo bench: $LINE_ERR errors ($(json "$D/line.json" error_kinds 2>/dev/null))"
((CHURN_ERR == 0)) || fail_check "churn bench: $CHURN_ERR errors ($(json "$D/churn.json" error_kinds 2>/dev/null))"
for count in PP PL UDP LINE_REQ CHURN_REQ BAD RESETS; do
    ((${!count} > 0)) || fail_check "the soak phase verified no $count"
done
ECHO_BYTES=$((PP * 64 + PL * 32 + LINE_REQ * 49 + CHURN_REQ * 64 + UDP * 256 + PY_BYTES))
MISC=$(sed 's/verified_bytes=[0-9]*//' "$D/misc.out" 2>/dev/null)

cat <<EOF

soak: ${ELAPSED}s of mixed load after ${SOAK_WARMUP}s of warm-up (reactor: $REACTOR_BIN)
                     serve all (offset $OFFSET)     line echo (:$LINE_PORT)
  open fds           start $ALL_FDS0, warm $ALL_FDS1, peak $ALL_PEAK_FDS, end $ALL_FDS2    start $LINE_FDS0, warm $LINE_FDS1, peak $LINE_PEAK_FDS, end $LINE_FDS2
  RSS KiB            start $ALL_RSS0, warm $ALL_RSS1, peak $ALL_PEAK_RSS, end $ALL_RSS2    start $LINE_RSS0, warm $LINE_RSS1, peak $LINE_PEAK_RSS, end $LINE_RSS2
  exit on SIGTERM    ${ALL_RC:-?}                            ${LINE_RC:-?}
  echo verified      $ECHO_BYTES bytes: ping-pong $PP x 64 B, pipelined $PL x 32 B, line bench $LINE_REQ x 49 B,
                     churn $CHURN_REQ connections x 64 B, UDP $UDP x 256 B (lost $UDP_LOST), Python clients $PY_BYTES B
  bad frames         $BAD offending connections closed, the good one answered throughout
  resets             $RESETS clients reset mid-stream
  other services     $MISC
  UDP sources        $SOURCES daytime requests from 8192 source addresses (127.1.x.y) in turn; $(grep -o 'UDP replies: .*' "$WORK/all.err" | tail -1)
EOF
if ((${#FAILURES[@]} == 0)); then
    echo "soak: PASS"
    exit 0
fi
echo "soak: FAIL"
printf '  %s\n' "${FAILURES[@]}"
exit 1
