#!/usr/bin/env bash
# The output-budget figure: CLIENTS clients (default 100) each try to send MIB MiB
# (default 64) to `reactor serve echo` and never read a byte back. Prints the server's RSS
# before, its peak while the clients were stalled, the growth, and what the clients got
# in; then checks the server still answers a new client and exits 0 on SIGTERM.
#
#   bash scripts/hardening/nonreading-clients.sh                    # 100 x 64 MiB, defaults
#   CLIENTS=1000 SERVE_ARGS="--output-budget 16" bash scripts/hardening/nonreading-clients.sh
#
# REACTOR_BIN picks the binary (default .build/release/reactor, built when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
clients=${CLIENTS:-100}
mib=${MIB:-64}
bin=${REACTOR_BIN:-.build/release/reactor}
if [ ! -x "$bin" ]; then swift build -c release --product reactor >&2; fi
ulimit -n "$(ulimit -Hn)"

out=$(mktemp)
"$bin" serve echo --port 0 ${SERVE_ARGS:-} > "$out" 2> "$out.err" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$out" "$out.err"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.1; done
port=$(sed -n 's/^listening tcp .*:\([0-9]*\) echo$/\1/p' "$out")
[ -n "$port" ] || { echo "the server did not start: $(cat "$out.err")" >&2; exit 1; }

python3 - "$server" "$port" "$clients" "$mib" <<'PY'
import os, selectors, socket, sys, time

pid, port, clients, mib = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def rss_kib(field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit("no " + field)

time.sleep(0.2)
before = rss_kib()
target = mib * 1024 * 1024
chunk = bytes(range(256)) * 256  # 64 KiB
selector = selectors.DefaultSelector()
sent = {}
for _ in range(clients):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(False)
    selector.register(s, selectors.EVENT_WRITE)
    sent[s] = 0

peak = before
last_progress = time.monotonic()
started = last_progress
# Send until every client has sent its share or nothing moved for 3 s (all stalled).
while selector.get_map() and time.monotonic() - last_progress < 3:
    for key, _ in selector.select(timeout=0.1):
        s = key.fileobj
        try:
            n = s.send(chunk[: min(len(chunk), target - sent[s])])
        except BlockingIOError:
            continue
        sent[s] += n
        last_progress = time.monotonic()
        if sent[s] >= target:
            selector.unregister(s)
    peak = max(peak, rss_kib())
peak = max(peak, rss_kib())
hwm = rss_kib("VmHWM")
total = sum(sent.values())
finished = sum(1 for n in sent.values() if n >= target)

# The server still serves a newcomer while the others are stalled.
probe = socket.create_connection(("127.0.0.1", port), timeout=5)
probe.sendall(b"still here\n")
reply = b""
while len(reply) < 11:
    reply += probe.recv(64)
probe.close()
for s in sent:
    s.close()

print(f"clients={clients} each_target={mib}MiB sent_total={total / 2**20:.1f}MiB "
      f"per_client_avg={total / clients / 2**20:.2f}MiB finished={finished} stalled_after={time.monotonic() - started - 3:.1f}s")
print(f"server_rss_before={before / 1024:.1f}MB server_rss_peak={peak / 1024:.1f}MB "
      f"vmhwm={hwm / 1024:.1f}MB growth={(max(peak, hwm) - before) / 1024:.1f}MB")
print("new client served while stalled:", reply == b"still here\n")
PY
kill -TERM $server
status=0; wait $server || status=$?
echo "server exit status after SIGTERM: $status"
grep -i "budget" "$out.err" | head -3 || true
