#!/usr/bin/env bash
# make demo: serve echo (raw and line-framed), drive load through it with the C load
# client, show what happened, and shut the servers down with SIGTERM.
# Usage: scripts/demo.sh [REACTOR_BIN]   (run from the repository root)
set -euo pipefail

REACTOR=${1:-.build/release/reactor}
LOADGEN=Benchmarks/bin/loadgen
SECONDS_PER_RUN=${DEMO_SECONDS:-3}
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Server on CPU 0 and load on CPU 1 when there are two CPUs, as in the benchmarks.
SERVER_CPU=() CLIENT_CPU=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 1)
fi

# start NAME ARGS...: starts `reactor serve echo ARGS`, waits for its listening line,
# and sets PORT and PID.
start() {
    local name=$1; shift
    "${SERVER_CPU[@]}" "$REACTOR" serve echo --port 0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PID=$!
    PIDS+=("$PID")
    for _ in $(seq 100); do
        if grep -q '^listening tcp ' "$WORK/$name.out"; then break; fi
        sleep 0.05
    done
    local line
    line=$(head -1 "$WORK/$name.out")
    [[ $line == "listening tcp "* ]] || { echo "server did not start:"; cat "$WORK/$name.err"; exit 1; }
    PORT=${line##*:}
    PORT=${PORT%% *}
    echo "  \$ reactor serve echo --port 0 $*"
    echo "  $line"
}

# stop NAME: SIGTERM, wait, show the exit status and the server's log.
stop() {
    kill -TERM "$PID"
    local status=0
    wait "$PID" || status=$?
    echo "  SIGTERM -> exit status $status"
    sed 's/^/  log: /' "$WORK/$1.err"
}

value() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" "$2" | head -1; }

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

echo "== 1. raw echo, ping-pong: 100 connections, one 64-byte request in flight each, ${SECONDS_PER_RUN}s"
start raw
"${CLIENT_CPU[@]}" "$LOADGEN" pingpong --port "$PORT" --connections 100 --size 64 \
    --duration "$SECONDS_PER_RUN" --warmup 1 --server-pid "$PID" >"$WORK/pingpong.txt"
printf '  %s requests/s, latency p50 %s us, p99 %s us, server CPU %s us/request\n' \
    "$(value rps "$WORK/pingpong.txt")" "$(value p50 "$WORK/pingpong.txt")" \
    "$(value p99 "$WORK/pingpong.txt")" "$(value server_cpu_us_per_request "$WORK/pingpong.txt")"

echo
echo "== 2. idle connections: 2000 open at once"
before=$(rss_kib "$PID")
"$LOADGEN" idle --port "$PORT" --connections 2000 --hold 3 >"$WORK/idle.txt" &
IDLE=$!
for _ in $(seq 200); do grep -q '^open=' "$WORK/idle.txt" && break; sleep 0.05; done
after=$(rss_kib "$PID")
echo "  $(head -1 "$WORK/idle.txt"); server RSS ${before} KiB -> ${after} KiB:" \
    "$(( (after - before) * 1024 / 2000 )) bytes per idle connection"
kill -TERM "$IDLE" 2>/dev/null || true
wait "$IDLE" || true
stop raw

echo
echo "== 3. line-framed echo: 50 connections x 64 pipelined 32-byte lines, ${SECONDS_PER_RUN}s"
start line --framing line
"${CLIENT_CPU[@]}" "$LOADGEN" pipeline --port "$PORT" --connections 50 --depth 64 --size 32 \
    --delimiter lf --duration "$SECONDS_PER_RUN" --warmup 1 --server-pid "$PID" >"$WORK/lines.txt"
printf '  %s lines/s, every echoed line checked byte for byte\n' "$(value lps "$WORK/lines.txt")"

echo
echo "== 4. a peer sending an oversized line is cut off; the others are not"
python3 - "$PORT" <<'PY'
import socket, sys
port = int(sys.argv[1])
good = socket.create_connection(("127.0.0.1", port), timeout=5)
bad = socket.create_connection(("127.0.0.1", port), timeout=5)
try:
    bad.sendall(b"x" * 70000 + b"\n")
    print("  oversized peer got:", repr(bad.recv(16)) or "end of file")
except OSError as error:
    print("  oversized peer:", error.strerror or error)
good.sendall(b"still served\n")
print("  well-behaved peer got:", good.recv(64))
PY
stop line

echo
echo "More: make test, make bench (docs/performance.md)."
