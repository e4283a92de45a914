#!/usr/bin/env bash
# c1m (issue 15): hold N idle TCP connections to one `reactor serve echo` and report what
# they cost: server RSS per connection, kernel memory (slab) per connection, the connect
# rate, and whether a fresh client is still served in under 10 ms. Not CI.
#
#   C1M_CONNECTIONS=19000 REACTOR_BIN=.build/release/reactor bash Benchmarks/c1m.sh
#
# Knobs (environment):
#   C1M_CONNECTIONS   connections to hold (default 1000000; here 19000, see below)
#   C1M_PER_PROCESS   most connections one client process holds (default: its descriptor
#                     hard limit less 100); the clients are split over as many processes
#                     as that needs
#   C1M_PER_ADDRESS   connections per source address (default 1000): the clients bind
#                     127.1.0.1, 127.1.0.2, ... (all of 127.0.0.0/8 is loopback), so
#                     ephemeral ports never run out (one address has about 28,000)
#   C1M_IDLE_TIMEOUT  the server's --idle-timeout in seconds (default 300, serve's own
#                     default: each connection has its idle timer; 0 turns it off)
#   C1M_HOLD          seconds to hold the connections before measuring (default 2)
#
# Before anything it checks the limits a run of N needs and says what to raise: the
# descriptor hard limit (`ulimit -Hn`, at least N + 100 for the server), fs.nr_open (the
# ceiling of that limit), fs.file-max (both ends of every connection are on this host:
# 2N), and the ephemeral ports per source address. On the development machines a process
# may hold at most 20,000 descriptors and cannot raise that (no CAP_SYS_RESOURCE; `ulimit
# -Hn 50000` is refused even as root), so the figures in docs/performance.md and
# docs/operations.md were measured at 19,000.
#
# What is measured:
#   server RSS per connection   (VmRSS with N open - VmRSS before) / N
#   slab per connection         (Slab in /proc/meminfo with N open - before) / N: the whole
#                               host's kernel objects, so both ends of each connection
#                               (the client's socket too) and anything else running then
#   connect rate                N / (last connect done - first started), the client's view
#                               (Python clients: the figure is bound by them)
#   a fresh client              20 times: connect, 64 bytes echoed; median and max in ms
# Prints a summary and PASS or FAIL (the fresh client's median must be under 10 ms and every
# connection must have been accepted); exits 1 on FAIL, 2 when a limit is too low.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}
N=${C1M_CONNECTIONS:-1000000}
PER_ADDRESS=${C1M_PER_ADDRESS:-1000}
IDLE_TIMEOUT=${C1M_IDLE_TIMEOUT:-300}
HOLD=${C1M_HOLD:-2}
HARD=$(ulimit -Hn)
[[ $HARD == unlimited ]] && HARD=1073741824
PER_PROCESS=${C1M_PER_PROCESS:-$((HARD - 100))}

say() { printf 'c1m: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 2; }

[[ -x $REACTOR_BIN ]] || die "no reactor at $REACTOR_BIN: make release first"

# ---- limits
short=()
NEED_FDS=$((N + 100))
NR_OPEN=$(sysctl -n fs.nr_open)
FILE_MAX=$(sysctl -n fs.file-max)
read -r PORT_LOW PORT_HIGH < <(sysctl -n net.ipv4.ip_local_port_range)
PORTS=$((PORT_HIGH - PORT_LOW + 1))
((HARD >= NEED_FDS)) || short+=("the descriptor hard limit is $HARD; the server needs $NEED_FDS: raise it (root with CAP_SYS_RESOURCE: ulimit -Hn $NEED_FDS; systemd: LimitNOFILE=$NEED_FDS; /etc/security/limits.conf: * hard nofile $NEED_FDS)")
((NR_OPEN >= NEED_FDS)) || short+=("fs.nr_open is $NR_OPEN, the ceiling of any descriptor limit: sysctl -w fs.nr_open=$NEED_FDS")
((FILE_MAX >= 2 * N + 10000)) || short+=("fs.file-max is $FILE_MAX; both ends of $N connections take $((2 * N)): sysctl -w fs.file-max=$((2 * N + 100000))")
((PER_ADDRESS <= PORTS)) || short+=("$PER_ADDRESS connections per source address but only $PORTS ephemeral ports: lower C1M_PER_ADDRESS or widen net.ipv4.ip_local_port_range")
((PER_PROCESS >= 1)) || short+=("C1M_PER_PROCESS must be positive")
if ((${#short[@]})); then
    for line in "${short[@]}"; do say "too low: $line"; done
    say "or measure fewer: C1M_CONNECTIONS=$((HARD > 200 ? HARD - 1000 : 100)) fits this machine's descriptor limit"
    exit 2
fi
PROCESSES=$(((N + PER_PROCESS - 1) / PER_PROCESS))
ADDRESSES=$(((N + PER_ADDRESS - 1) / PER_ADDRESS))
((ADDRESSES <= 250 * 250)) || die "$ADDRESSES source addresses is more than 127.1.0.0 to 127.250.255.255 offer: raise C1M_PER_ADDRESS"
say "$N connections: $PROCESSES client process(es) of at most $PER_PROCESS, $ADDRESSES source address(es) of $PER_ADDRESS; limits: ulimit -Hn $HARD, fs.nr_open $NR_OPEN, fs.file-max $FILE_MAX, ports $PORT_LOW-$PORT_HIGH"

WORK=$(mktemp -d /tmp/c1m.XXXXXX)
SERVER_PID=
CLIENT_PIDS=()
cleanup() {
    local pid
    for pid in "${CLIENT_PIDS[@]}" $SERVER_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.3
    for pid in "${CLIENT_PIDS[@]}" $SERVER_PID; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$WORK/client.py" <<'EOF'
# One client process: COUNT connections from source addresses 127.1.0.1 onwards (starting
# at connection FIRST, PER_ADDRESS per address), at most 512 connects in flight; prints
# "ready START END" (monotonic-free wall times) when all are connected, then holds them.
import resource, select, socket, sys, time
port, first, count, per_address = map(int, sys.argv[1:5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
IP_BIND_ADDRESS_NO_PORT = 24  # the port is chosen at connect, by the 4-tuple, not at bind
def source(i):
    a = i // per_address
    return f"127.{1 + a // 62500}.{a // 250 % 250}.{a % 250 + 1}"
held, pending = [], {}
poller = select.epoll()
start = time.time()
i = first
while i < first + count or pending:
    while i < first + count and len(pending) < 512:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((source(i), 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        pending[s.fileno()] = s
        poller.register(s.fileno(), select.EPOLLOUT)
        i += 1
    for fd, _ in poller.poll(1.0):
        s = pending.pop(fd)
        poller.unregister(fd)
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sys.exit(f"connect from {s.getsockname()[0]}: error {err}")
        held.append(s)
end = time.time()
print(f"ready {start:.6f} {end:.6f}", flush=True)
time.sleep(3600)
EOF

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
slab_kb() { awk '/^Slab:/ {print $2}' /proc/meminfo; }
# slabinfo FILE: each cache's active bytes (objects x size), when /proc/slabinfo is readable.
slabinfo() { awk 'NR > 2 {print $1, $2 * $4}' /proc/slabinfo >"$1" 2>/dev/null || : >"$1"; }
# slab_breakdown: the caches that grew most, in bytes per connection (both ends).
slab_breakdown() {
    python3 - "$WORK/slab-before" "$WORK/slab-after" "$N" <<'EOF'
import sys
read = lambda path: {l.split()[0]: int(l.split()[1]) for l in open(path) if l.strip()}
before, after, n = read(sys.argv[1]), read(sys.argv[2]), int(sys.argv[3])
grown = sorted(((after[k] - before.get(k, 0)) / n, k) for k in after)
top = [f"{k} {d:.0f}" for d, k in reversed(grown[-8:]) if d >= 8]
print(", ".join(top) if top else "(/proc/slabinfo not readable)")
EOF
}
# Established connections to the server's port, from ss: listing /proc/PID/fd instead
# would make the kernel build an inode and a dentry per descriptor, 2 KiB of slab each.
established() { ss -Htn state established "( sport = :$PORT )" | wc -l; }

"$REACTOR_BIN" serve echo --port 0 --tcp-only --max-connections "$((N + 10))" --idle-timeout "$IDLE_TIMEOUT" \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for ((i = 0; i < 200; i++)); do grep -qs '^listening' "$WORK/server.out" && break; sleep 0.05; done
PORT=$(sed -nE 's/^listening tcp .*:([0-9]+) echo$/\1/p' "$WORK/server.out")
[[ $PORT =~ ^[0-9]+$ ]] || die "the server did not start: $(cat "$WORK/server.err")"
sleep 0.5
RSS_BEFORE=$(rss_kb "$SERVER_PID")
SLAB_BEFORE=$(slab_kb)
slabinfo "$WORK/slab-before"

first=0
for ((p = 0; p < PROCESSES; p++)); do
    count=$((N - first < PER_PROCESS ? N - first : PER_PROCESS))
    python3 "$WORK/client.py" "$PORT" "$first" "$count" "$PER_ADDRESS" >"$WORK/client$p.out" 2>"$WORK/client$p.err" &
    CLIENT_PIDS+=($!)
    first=$((first + count))
done
# Bounded: a minute plus a millisecond per connection.
deadline=$((SECONDS + 60 + N / 1000))
while (($(cat "$WORK"/client*.out 2>/dev/null | grep -c '^ready') < PROCESSES)); do
    for ((p = 0; p < PROCESSES; p++)); do
        kill -0 "${CLIENT_PIDS[$p]}" 2>/dev/null || die "client $p failed: $(tail -1 "$WORK/client$p.err")"
    done
    ((SECONDS < deadline)) || die "the clients did not connect within $((60 + N / 1000)) s"
    sleep 0.2
done
# The server may still be accepting the last of the backlog.
while (($(established) < N)) && ((SECONDS < deadline)); do sleep 0.2; done
sleep "$HOLD"
OPEN=$(established)
RSS_AFTER=$(rss_kb "$SERVER_PID")
SLAB_AFTER=$(slab_kb)
slabinfo "$WORK/slab-after"
RATE=$(cat "$WORK"/client*.out | python3 -c "
import sys
spans = [tuple(map(float, l.split()[1:3])) for l in sys.stdin if l.startswith('ready')]
print(round($N / (max(e for _, e in spans) - min(s for s, _ in spans))))")

FRESH=$(python3 - "$PORT" <<'EOF'
import socket, sys, time
port = int(sys.argv[1])
times = []
for i in range(20):
    t = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(b"x" * 64)
    got = b""
    while len(got) < 64:
        got += s.recv(64 - len(got))
    times.append((time.perf_counter() - t) * 1000)
    s.close()
times.sort()
print(f"{times[len(times) // 2]:.2f} {times[-1]:.2f}")
EOF
)
read -r FRESH_MEDIAN FRESH_MAX <<<"$FRESH"

per() { python3 -c "print(round(($2 - $1) * 1024 / $N))"; }
say "server (pid $SERVER_PID, --idle-timeout $IDLE_TIMEOUT): $OPEN connections open of $N"
say "server RSS: $RSS_BEFORE KiB -> $RSS_AFTER KiB: $(per "$RSS_BEFORE" "$RSS_AFTER") bytes per connection"
say "slab (the whole host, both ends of each connection): $SLAB_BEFORE KiB -> $SLAB_AFTER KiB: $(per "$SLAB_BEFORE" "$SLAB_AFTER") bytes per connection"
say "slab caches that grew, bytes per connection: $(slab_breakdown)"
say "connect rate: $RATE connections/s (client-bound: Python, $PROCESSES process(es))"
say "a fresh client with $N open: connect + 64-byte echo median $FRESH_MEDIAN ms, max $FRESH_MAX ms (20 tries)"

kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
STATUS=$?
SERVER_PID=
result=PASS
((OPEN >= N)) || { say "FAIL: only $OPEN of $N connections were accepted"; result=FAIL; }
python3 -c "import sys; sys.exit(0 if $FRESH_MEDIAN < 10 else 1)" || { say "FAIL: a fresh client took $FRESH_MEDIAN ms (median)"; result=FAIL; }
((STATUS == 0)) || { say "FAIL: the server exited $STATUS on SIGTERM"; result=FAIL; }
say "$result"
[[ $result == PASS ]]
