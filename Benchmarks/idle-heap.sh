#!/usr/bin/env bash
# idle-heap.sh (issue 15): where the heap of an idle connection goes. Runs the release
# `reactor serve echo --tcp-only` under valgrind's massif, takes a detailed snapshot
# before and after N Python clients connect (each served one 64-byte echo, then idle),
# and prints (after - before) / N, useful bytes and malloc's extra, with the allocation
# sites that grew. Not CI; docs/performance.md, "Heap per idle connection".
#
#   bash Benchmarks/idle-heap.sh                       # the idle timer on (300 s, serve's default)
#   IDLE_TIMEOUT=0 bash Benchmarks/idle-heap.sh        # off
#
# Environment: REACTOR_BIN (.build/release/reactor), IDLE_CONNECTIONS (5000),
#   IDLE_TIMEOUT (300), IDLE_KEEP (a directory to keep the snapshots in).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}
N=${IDLE_CONNECTIONS:-5000}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-300}
WORK=$(mktemp -d /tmp/idle-heap.XXXXXX)
SERVER=
CLIENTS=
cleanup() {
    [[ -n $CLIENTS ]] && kill "$CLIENTS" 2>/dev/null || true
    [[ -n $SERVER ]] && kill -KILL "$SERVER" 2>/dev/null || true
    if [[ -n ${IDLE_KEEP:-} ]]; then mkdir -p "$IDLE_KEEP" && cp "$WORK"/before "$WORK"/after "$IDLE_KEEP"/ 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
say() { echo "idle-heap: $*" >&2; }
die() { say "$*"; exit 1; }

command -v valgrind >/dev/null && command -v vgdb >/dev/null || die "valgrind (with vgdb) is missing"
[[ -x $REACTOR_BIN ]] || die "no reactor at $REACTOR_BIN: make release first"
ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > N + 200 )) || die "the descriptor limit $(ulimit -n) is too low for $N connections"
# valgrind 3.19 cannot read the DWARF Swift 6.3 writes; the symbol table stays.
cp "$REACTOR_BIN" "$WORK/reactor"
strip --strip-debug "$WORK/reactor"

valgrind --tool=massif --depth=14 --threshold=0.1 --vgdb=yes --massif-out-file="$WORK/massif.out" \
    "$WORK/reactor" serve echo --host 127.0.0.1 --port 0 --tcp-only --idle-timeout "$IDLE_TIMEOUT" \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER=$!
port=
for _ in $(seq 600); do
    port=$(sed -n 's/^listening tcp .*:\([0-9]*\) echo$/\1/p' "$WORK/server.out")
    [[ -n $port ]] && break
    sleep 0.1
done
[[ -n $port ]] || { cat "$WORK/server.err" >&2; die "the server did not start"; }
sleep 1
vgdb --pid="$SERVER" detailed_snapshot "$WORK/before" >/dev/null

mkfifo "$WORK/hold"
cat >"$WORK/clients.py" <<'PY'
import socket, sys
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
clients = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"x" * 64)
    got = b""
    while len(got) < 64:
        chunk = s.recv(64 - len(got))
        if not chunk:
            sys.exit("the server closed a connection")
        got += chunk
    clients.append(s)
open(ready, "w").write("ready\n")
sys.stdin.read()  # hold them open until the script closes the pipe
PY
python3 "$WORK/clients.py" "$port" "$N" "$WORK/ready" <"$WORK/hold" &
CLIENTS=$!
exec 3>"$WORK/hold"
for _ in $(seq 1200); do
    [[ -s $WORK/ready ]] && break
    kill -0 "$CLIENTS" 2>/dev/null || die "the clients failed"
    sleep 0.1
done
[[ -s $WORK/ready ]] || die "the clients did not connect within 120 s"
sleep 1
vgdb --pid="$SERVER" detailed_snapshot "$WORK/after" >/dev/null
exec 3>&-
wait "$CLIENTS" || true
CLIENTS=

python3 - "$WORK/before" "$WORK/after" "$N" "$IDLE_TIMEOUT" <<'PY'
import re, subprocess, sys
before, after, n, idle = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

def parse(path):
    """Totals, and bytes per call path (tuple of function names from the allocator up)."""
    totals, paths, stack = {}, {}, []
    for line in open(path):
        m = re.match(r"(mem_heap_B|mem_heap_extra_B)=(\d+)", line)
        if m:
            totals[m.group(1)] = int(m.group(2))
            continue
        m = re.match(r"( *)n\d+: (\d+) (.*)", line)
        if not m:
            continue
        depth, size, what = len(m.group(1)), int(m.group(2)), m.group(3)
        what = re.sub(r"^0x[0-9A-F]+: ", "", what)
        what = re.sub(r" \(in .*\)$| \([^)]*:\d+\)$", "", what)
        del stack[depth:]
        stack.append(what)
        paths[tuple(stack)] = paths.get(tuple(stack), 0) + size
    return totals, paths

tb, pb = parse(before)
ta, pa = parse(after)
useful = (ta["mem_heap_B"] - tb["mem_heap_B"]) / n
extra = (ta["mem_heap_extra_B"] - tb["mem_heap_extra_B"]) / n
print(f"idle timeout {idle}: {n} connections: {useful:.1f} useful + {extra:.1f} extra = {useful + extra:.1f} bytes per connection")
names = sorted({name for path in pa for name in path})
try:
    out = subprocess.run(["swift", "demangle", "--simplified"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    demangled = dict(zip(names, out.splitlines()))
except Exception:
    demangled = {}
print("allocation sites that grew by at least 1 byte per connection (massif's tree, depth first):")
for path in sorted(pa):
    grown = (pa[path] - pb.get(path, 0)) / n
    if len(path) < 2 or abs(grown) < 1:
        continue
    name = demangled.get(path[-1], path[-1])
    print(f"{'  ' * (len(path) - 2)}{grown:8.1f}  {name[:150]}")
PY
