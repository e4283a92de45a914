#!/usr/bin/env bash
# make demo: serve echo (raw and line-framed), drive load through it with the C load
# client, show what happened, and shut the servers down with SIGTERM; then run every
# bundled service with `reactor serve all` and ask each one once over TCP and UDP
# (socat, rdate, python3). Each section is one block below, separated by `== N.` titles.
# Usage: scripts/demo.sh [REACTOR_BIN]   (run from the repository root)
# Server start and stop, and reading loadgen's results, come from Benchmarks/lib.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HERE=$ROOT/Benchmarks
BENCH=demo
REACTOR_BIN=${1:-$ROOT/.build/release/reactor}
# serve all's default: echo on 10007, discard 10009, daytime 10013, qotd 10017, chargen 10019, time 10037.
SERVICES_OFFSET=10000
SECONDS_PER_RUN=${DEMO_SECONDS:-3}
# shellcheck source=../Benchmarks/lib.sh
source "$HERE/lib.sh"

server_command() {
    case $1 in
        raw) echo "$REACTOR_BIN serve echo --port 0" ;;
        line) echo "$REACTOR_BIN serve echo --port 0 --framing line" ;;
        all) echo "$REACTOR_BIN serve all --port-offset $SERVICES_OFFSET" ;;
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
echo "== 5. the bundled services: reactor serve all, each asked once over TCP and UDP"
for tool in socat rdate python3; do
    command -v "$tool" >/dev/null || die "$tool is required for the services demo (make demo installs socat and rdate)"
done
# The ports are fixed (offset $SERVICES_OFFSET), so say plainly when something else holds one.
python3 - "$SERVICES_OFFSET" <<'PY' || die "reactor serve all needs ports $((SERVICES_OFFSET + 7))-$((SERVICES_OFFSET + 37)) free on 127.0.0.1; stop what holds them and rerun"
import socket, sys
offset, taken = int(sys.argv[1]), []
for port in (7, 9, 13, 17, 19, 37):
    for kind, name in ((socket.SOCK_STREAM, "tcp"), (socket.SOCK_DGRAM, "udp")):
        with socket.socket(socket.AF_INET, kind) as probe:
            if kind == socket.SOCK_STREAM:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", offset + port))
            except OSError:
                taken.append(f"{offset + port}/{name}")
if taken:
    print("  taken:", ", ".join(taken), file=sys.stderr)
    sys.exit(1)
PY
start all
sed -n '2,$s/^/  /p' "$WORK/all.out"
show() { sed 's/\r$//; s/^/      /'; }
tcp() { socat -t 1 -T 2 - "TCP:127.0.0.1:$((SERVICES_OFFSET + $1))"; }
udp() { socat -t 0.5 -T 2 - "UDP:127.0.0.1:$((SERVICES_OFFSET + $1))"; }
echo "  echo     tcp:"; printf 'hello over tcp\n' | tcp 7 | show
echo "           udp:"; printf 'hello over udp\n' | udp 7 | show
echo "  discard  tcp: $(head -c 100000 /dev/zero | tcp 9 | wc -c) bytes back for 100000 sent"
echo "           udp: $(printf 'into the void' | udp 9 | wc -c) bytes back"
echo "  daytime  tcp:"; tcp 13 </dev/null | show
echo "           udp:"; printf '\n' | udp 13 | show
echo "  qotd     tcp:"; tcp 17 </dev/null | show
echo "           udp:"; printf '\n' | udp 17 | show
echo "  chargen  tcp (first 3 lines of the stream):"
python3 - "$((SERVICES_OFFSET + 19))" <<'PY' | show
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as s:
    data = b""
    while len(data) < 3 * 74:
        data += s.recv(4096)
print(data[:3 * 74].decode("ascii"), end="")
PY
printf '\n' | udp 19 >"$WORK/chargen.udp"
echo "           udp ($(wc -c <"$WORK/chargen.udp") bytes in one datagram; its first 2 lines):"
head -2 "$WORK/chargen.udp" | show
echo "  time     tcp: rdate -p says $(TZ=UTC rdate -p -o $((SERVICES_OFFSET + 37)) 127.0.0.1)"
echo "           udp: rdate -p -u says $(TZ=UTC rdate -p -u -o $((SERVICES_OFFSET + 37)) 127.0.0.1)"
echo "  the UDP guard: 100 datagrams from one source to echo at once get" \
    "$(python3 - "$((SERVICES_OFFSET + 7))" <<'PY'
import socket, sys
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(0.3)
    for i in range(100):
        s.sendto(b"x", ("127.0.0.1", int(sys.argv[1])))
    replies = 0
    try:
        while True:
            s.recv(64)
            replies += 1
    except socket.timeout:
        pass
print(replies)
PY
) replies (burst 40, then 20 per second per source: --udp-rate, --udp-burst)"
stop all

echo
echo "== 6. reactor bench suite, short: reactor serve against the C libevent servers, ${SUITE_SECONDS:=2}s per scenario"
SUITE_OUT=$HERE/results/demo-suite
libevent=$HERE/bin
"$REACTOR_BIN" bench suite --out "$SUITE_OUT" --duration "$SUITE_SECONDS" --warmup 0.5 --baseline libevent \
    --server-cpus "$SERVER_CPU" --client-cpus "$CLIENT_CPU" \
    --spawn "reactor=$REACTOR_BIN serve echo --port {port} --framing {framing} --udp-rate 0" \
    --spawn "libevent:pingpong,churn,idle=$libevent/libevent_echo 127.0.0.1 {port}" \
    --spawn "libevent:lines=$libevent/libevent_line_echo 127.0.0.1 {port}" \
    --spawn "libevent:int32=$libevent/libevent_int32_echo 127.0.0.1 {port}" \
    --spawn "libevent:udp=$libevent/libevent_udp_echo 127.0.0.1 {port}" 2>"$WORK/suite.err" |
    grep -E '^(## |\| (target|reactor|libevent) )' | sed 's/^/  /' || { cat "$WORK/suite.err" >&2; die "the suite failed"; }
echo "  tables, SVG charts and JSON: ${SUITE_OUT#"$ROOT"/}/ (one short run each on a shared machine: indicative only)"

echo
echo "More: make test, make bench (docs/performance.md, docs/bench.md), docs/services.md."
