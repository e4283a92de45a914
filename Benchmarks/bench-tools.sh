#!/usr/bin/env bash
# bench-tools.sh: `reactor bench` side by side with the load tools people use on the
# same real servers (issue 10's "Performance to reach"):
#   redis SET and GET, 50 connections x 16 pipelined, 32-byte values, 100k keys,
#     against redis-benchmark -c 50 -P 16 -d 32 -r 100000;
#   redis PING, 100 connections x 1 in flight, against redis-benchmark -c 100 -t ping_mbulk;
#   nginx serving a 13-byte static file over 50 keep-alive connections, against wrk -c 50.
# The server runs on SERVER_CPU (taskset), the load tool on CLIENT_CPU; ROUNDS rounds,
# alternating which tool goes first, medians reported. For each run: requests/s, the load
# tool's CPU per request (getrusage of the child: user + system, startup included for the
# other tools; reactor's from its JSON, the measured window only), the server's CPU share
# from /proc, and which side bound the run (the one whose core was busiest).
#
#   bash Benchmarks/bench-tools.sh        # ROUNDS=5 DURATION=5 WARMUP=1 SERVER_CPU=0 CLIENT_CPU=1
# `make bench-tools` builds the release reactor and installs the servers first.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}
export ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-5} WARMUP=${WARMUP:-1} SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
[[ -x $REACTOR_BIN ]] || (cd "$ROOT" && swift build -c release --product reactor >&2)
for tool in redis-server redis-benchmark nginx wrk taskset; do
    command -v "$tool" >/dev/null || { echo "bench-tools: $tool not found (make servers)" >&2; exit 1; }
done
exec python3 - "$@" <<'PYTHON'
import json, os, re, resource, signal, socket, statistics, subprocess, sys, tempfile, time

REACTOR = os.environ["REACTOR_BIN"]
ROUNDS, DURATION, WARMUP = int(os.environ["ROUNDS"]), float(os.environ["DURATION"]), float(os.environ["WARMUP"])
SERVER_CPU, CLIENT_CPU = os.environ["SERVER_CPU"], os.environ["CLIENT_CPU"]
WORK = tempfile.mkdtemp(prefix="bench-tools.")
TICKS = os.sysconf("SC_CLK_TCK")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close(); return port

def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"bench-tools: nothing listens on {port}")

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS

def start(command):
    process = subprocess.Popen(["taskset", "-c", SERVER_CPU] + command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process

def stop(process):
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(3)
    except subprocess.TimeoutExpired:
        process.kill(); process.wait()  # redis-server may ignore SIGTERM (inherited mask)

def timed(command):
    """Runs the load tool on CLIENT_CPU; returns its stdout and its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["taskset", "-c", CLIENT_CPU] + command, capture_output=True, text=True, timeout=DURATION * 10 + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        sys.exit(f"bench-tools: {' '.join(command)} failed: {out.stderr[-2000:]}")
    return out.stdout, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

def reactor(port, args):
    path = os.path.join(WORK, "run.json")
    _, _ = timed([REACTOR, "bench", f"127.0.0.1:{port}", "--duration", str(DURATION), "--warmup", str(WARMUP),
                  "--quiet", "--json", path] + args)
    result = json.load(open(path))
    if result["errors"]:
        sys.exit(f"bench-tools: reactor bench {args}: errors {result['error_kinds']}")
    return result["rps"], result["client_cpu_s"] / max(result["requests"], 1) * 1e6, result["duration_s"]

LAST_RATE = {}

def redis_benchmark(port, args, rate_guess):
    # redis-benchmark runs a number of requests, not a time: as many as the last run of
    # this scenario (either tool) did in DURATION.
    requests = int(LAST_RATE.get(tuple(args), rate_guess) * DURATION)
    out, cpu = timed(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--csv", "-n", str(requests)] + args)
    rows = [line for line in out.splitlines() if line.startswith('"') and not line.startswith('"test"')]
    rps = float(rows[0].split('","')[1].strip('"'))
    LAST_RATE[tuple(args)] = rps
    return rps, cpu / requests * 1e6, requests / rps

def wrk(port, path):
    out, cpu = timed(["wrk", "-t1", "-c50", f"-d{int(DURATION)}s", f"http://127.0.0.1:{port}{path}"])
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"bench-tools: wrk saw errors: {out}")
    total = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, cpu / total * 1e6, total / rps

def measure(server_pid, run):
    """One run with the server's CPU share over it."""
    start_cpu, start_time = cpu_seconds(server_pid), time.monotonic()
    rps, client_us, seconds = run()
    server_share = (cpu_seconds(server_pid) - start_cpu) / (time.monotonic() - start_time)
    client_share = client_us * rps / 1e6
    return {"rps": rps, "client_us": client_us, "server_share": server_share, "client_share": client_share}

def scenario(name, server_pid, ours, theirs, tool):
    print(f"... {name}", file=sys.stderr, flush=True)
    runs = {"reactor": [], tool: []}
    for round in range(ROUNDS):
        order = [("reactor", ours), (tool, theirs)]
        if round % 2: order.reverse()
        for label, run in order:
            runs[label].append(measure(server_pid, run))
    def med(label, key): return statistics.median(r[key] for r in runs[label])
    line = [name]
    for label in ("reactor", tool):
        server, client = med(label, "server_share"), med(label, "client_share")
        # A side bound the run when its core was (nearly) full; with neither, something
        # else on the machine took the CPU.
        bound = ("server" if server >= client else "client") + "-bound" if max(server, client) >= 0.8 else "neither core full: other load"
        line.append(f"{label}: {med(label, 'rps'):,.0f} req/s, client {med(label, 'client_us'):.3f} µs CPU/request "
                    f"(client core {client * 100:.0f} %, server core {server * 100:.0f} %: {bound})")
    ratio = med("reactor", "rps") / med(tool, "rps")
    cpu_ratio = med("reactor", "client_us") / med(tool, "client_us")
    line.append(f"ratio reactor/{tool}: {ratio:.2f}x requests/s, {cpu_ratio:.2f}x client CPU per request")
    print("\n  ".join(line), flush=True)
    return runs

print(f"bench-tools: {ROUNDS} rounds, {DURATION:g} s each (reactor: + {WARMUP:g} s warmup), server on CPU {SERVER_CPU}, "
      f"load tool on CPU {CLIENT_CPU}; medians", flush=True)
try:
    port = free_port()
    redis = start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", WORK])
    wait_port(port)
    try:
        for command, test in (("SET key:{key} {value}", "set"), ("GET key:{key}", "get")):
            scenario(f"redis {test.upper()} 50 x 16 pipelined, 32 B, 100k keys", redis.pid,
                     lambda: reactor(port, ["--protocol", "redis", "--command", command, "--size", "32", "--keyspace", "100000",
                                            "--connections", "50", "--depth", "16"]),
                     lambda: redis_benchmark(port, ["-c", "50", "-P", "16", "-d", "32", "-r", "100000", "-t", test], 400_000),
                     "redis-benchmark")
        scenario("redis PING 100 x 1", redis.pid,
                 lambda: reactor(port, ["--protocol", "redis", "--connections", "100"]),
                 lambda: redis_benchmark(port, ["-c", "100", "-t", "ping_mbulk"], 60_000), "redis-benchmark")
    finally:
        stop(redis)

    port = free_port()
    root = os.path.join(WORK, "nginx")
    os.makedirs(root)
    open(os.path.join(root, "index.html"), "w").write("hello, world\n")
    open(os.path.join(root, "nginx.conf"), "w").write(f"""daemon off; master_process off; worker_processes 1;
error_log {root}/error.log; pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 100000000; client_body_temp_path {root}; proxy_temp_path {root};
       fastcgi_temp_path {root}; uwsgi_temp_path {root}; scgi_temp_path {root};
       server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
    nginx = start(["nginx", "-c", f"{root}/nginx.conf", "-p", root, "-e", f"{root}/error.log"])
    wait_port(port)
    try:
        scenario("nginx 13-byte static file, 50 keep-alive connections", nginx.pid,
                 lambda: reactor(port, ["--protocol", "http", "--path", "/index.html", "--connections", "50"]),
                 lambda: wrk(port, "/index.html"), "wrk")
    finally:
        stop(nginx)
finally:
    subprocess.run(["rm", "-rf", WORK])
PYTHON
