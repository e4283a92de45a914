#!/usr/bin/env bash
# What the idle timeout costs at scale: CONNS connections (default 10000) to
# `reactor serve echo`, each sending one byte per second (so the idle timeout keeps finding
# every connection active and files it again), for SECONDS (default 10). Run once with --idle-timeout 2 and
# once with it off; prints the server's CPU (utime+stime) and RSS per connection for each.
#
#   bash scripts/hardening/idle-connections.sh
#   CONNS=5000 SECONDS_=20 bash scripts/hardening/idle-connections.sh
#
# REACTOR_BIN picks the binary (default .build/release/reactor, built when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${CONNS:-10000}
seconds=${SECONDS_:-10}
bin=${REACTOR_BIN:-.build/release/reactor}
if [ ! -x "$bin" ]; then swift build -c release --product reactor >&2; fi
ulimit -n "$(ulimit -Hn)"

run() {  # run IDLE_SECONDS
    local out; out=$(mktemp)
    "$bin" serve echo --port 0 --idle-timeout "$1" > "$out" 2> "$out.err" &
    local server=$!
    for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.1; done
    local port; port=$(sed -n 's/^listening tcp .*:\([0-9]*\) echo$/\1/p' "$out")
    python3 - "$server" "$port" "$conns" "$seconds" "$1" <<'PY'
import os, socket, sys, time
pid, port, conns, seconds, idle = map(float, sys.argv[1:6])
pid, port, conns = int(pid), int(port), int(conns)
tick = os.sysconf("SC_CLK_TCK")
def rss():
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
def cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick
time.sleep(0.2)
before = rss()
socks = []
for _ in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    socks.append(s)
time.sleep(0.5)
opened = rss()
start_cpu, start = cpu(), time.monotonic()
sent = 0
# One byte per connection per second, spread evenly over the second; replies drained.
while time.monotonic() - start < seconds:
    for i, s in enumerate(socks):
        s.send(b"x")
        sent += 1
        if i % 500 == 499:
            for r in socks[i - 499:i + 1]:
                try: r.recv(64)
                except BlockingIOError: pass
            time.sleep(max(0, (i + 1) / conns - (time.monotonic() - start) % 1) * 0.9)
used = cpu() - start_cpu
elapsed = time.monotonic() - start
alive = 0
for s in socks:
    try:
        s.send(b"y"); alive += 1
    except OSError: pass
print(f"idle_timeout={idle:g}s conns={conns} bytes_sent={sent} over {elapsed:.1f}s: "
      f"server_cpu={used:.2f}s ({100 * used / elapsed:.1f}% of a core) "
      f"rss_per_conn={(opened - before) * 1024 / conns:.0f}B still_open={alive}")
for s in socks: s.close()
PY
    kill -TERM $server; wait $server || true
    rm -f "$out" "$out.err"
}
run 2
run 0
