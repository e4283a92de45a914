#!/usr/bin/env bash
# make demo: serve echo (raw and line-framed), drive load through it with the C load
# client, show what happened, and shut the servers down with SIGTERM.
# Usage: scripts/demo.sh [REACTOR_BIN]   (run from the repository root)
# Server start and stop, and reading loadgen's results, come from Benchmarks/lib.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/Benchmarks
BENCH=demo
REACTOR_BIN=${1:-$ROOT/.build/release/reactor}
SECONDS_PER_RUN=${DEMO_SECONDS:-3}
# shellcheck source=../Benchmarks/lib.sh
source "$HERE/lib.sh"

server_command() {
    case $1 in
        raw) echo "$REACTOR_BIN serve echo --port 0" ;;
        line) echo "$REACTOR_BIN serve echo --port 0 --framing line" ;;
    esac
}

# start NAME: starts the server, shows its command and listening line.
start() {
    start_server "$1"
    echo "  \$ $(server_command "$1" | sed "s|$REACTOR_BIN|reactor|")"
    echo "  $(head -1 "$WORK/$1.out")"
}

# stop NAME: SIGTERM (lib.sh fails the demo unless the server exits 0), then its log.
stop() {
    stop_server "$1"
    echo "  SIGTERM -> exit status 0"
    sed 's/^/  log: /' "$WORK/$1.err"
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

build_c_programs

echo "== 1. raw echo, ping-pong: 100 connections, one 64-byte request in flight each, ${SECONDS_PER_RUN}s"
start raw
taskset -c "$CLIENT_CPU" "$LOADGEN" pingpong --port "$PORT" --connections 100 --size 64 \
    --duration "$SECONDS_PER_RUN" --warmup 1 --server-pid "$SERVER_PID" >"$WORK/pingpong.txt"
printf '  %s requests/s, latency p50 %s us, p99 %s us, server CPU %s us/request\n' \
    "$(field rps "$WORK/pingpong.txt")" "$(field p50 "$WORK/pingpong.txt")" \
    "$(field p99 "$WORK/pingpong.txt")" "$(field server_cpu_us_per_request "$WORK/pingpong.txt")"

echo
echo "== 2. idle connections: 2000 open at once"
before=$(rss_kib "$SERVER_PID")
"$LOADGEN" idle --port "$PORT" --connections 2000 --hold 3 >"$WORK/idle.txt" &
LOADGEN_PID=$!
for _ in $(seq 200); do grep -q '^open=' "$WORK/idle.txt" && break; sleep 0.05; done
after=$(rss_kib "$SERVER_PID")
echo "  $(head -1 "$WORK/idle.txt"); server RSS ${before} KiB -> ${after} KiB:" \
    "$(( (after - before) * 1024 / 2000 )) bytes per idle connection"
kill -TERM "$LOADGEN_PID" 2>/dev/null || true
wait "$LOADGEN_PID" || true
LOADGEN_PID=
stop raw

echo
echo "== 3. line-framed echo: 50 connections x 64 pipelined 32-byte lines, ${SECONDS_PER_RUN}s"
start line
taskset -c "$CLIENT_CPU" "$LOADGEN" pipeline --port "$PORT" --connections 50 --depth 64 --size 32 \
    --delimiter lf --duration "$SECONDS_PER_RUN" --warmup 1 --server-pid "$SERVER_PID" >"$WORK/lines.txt"
printf '  %s lines/s, every echoed line checked byte for byte\n' "$(field lps "$WORK/lines.txt")"

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
