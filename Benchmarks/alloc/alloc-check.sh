#!/usr/bin/env bash
# alloc-check.sh: shows that `reactor bench` allocates nothing per request in steady
# state. For each echo protocol (and once in open loop) it runs the client twice against
# `reactor serve echo` (raw: it echoes every framing byte for byte, and UDP), for 1 s and
# for 4 s, under an LD_PRELOAD malloc counter (malloc_count.c); then custom templates
# against the same echo, and Redis, memcached and HTTP against redis-server, memcached
# and nginx (`make servers` installs them). The longer run's extra allocations divided by
# its extra requests must be about 0: what remains is the once-a-second bookkeeping of
# the run itself, not of requests.
#
#   bash Benchmarks/alloc/alloc-check.sh          # REACTOR_BIN=... for another build
#
# Environment: ALLOC_SHORT, ALLOC_LONG (the two runs' seconds: 1 and 4); ALLOC_RESULTS (a
# file that gets one "client|allocations per request" line per row, for budgets.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}
ALLOC_SHORT=${ALLOC_SHORT:-1}
ALLOC_LONG=${ALLOC_LONG:-4}
WORK=$(mktemp -d /tmp/alloc-check.XXXXXX)
SERVER=
OTHERS=()
cleanup() {
    if [[ -n $SERVER ]]; then kill "$SERVER" 2>/dev/null || true; fi
    # redis-server may ignore SIGTERM (an inherited signal mask): SIGKILL.
    for pid in "${OTHERS[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

[[ -x $REACTOR_BIN ]] || (cd "$ROOT" && swift build -c release --product reactor >&2)
cc -O2 -shared -fPIC -o "$WORK/malloc_count.so" "$HERE/malloc_count.c" -ldl

"$REACTOR_BIN" serve echo --port 0 --udp-rate 0 >"$WORK/server.out" 2>/dev/null &
SERVER=$!
for _ in $(seq 100); do grep -q "^listening udp" "$WORK/server.out" && break; sleep 0.05; done
PORT=$(sed -nE 's/^listening tcp .*:([0-9]+) .*/\1/p' "$WORK/server.out")
[[ -n $PORT ]] || { echo "alloc-check: the server did not start" >&2; exit 1; }

# free_port: a port nothing listens on (the kernel's pick for port 0).
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

# wait_port PORT: until something accepts on it (5 s at most).
wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2)" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# run SECONDS ARGS...: prints "allocations requests" of one run (TARGET_PORT, else the echo).
run() {
    local seconds=$1
    shift
    LD_PRELOAD=$WORK/malloc_count.so "$REACTOR_BIN" bench "127.0.0.1:${TARGET_PORT:-$PORT}" --duration "$seconds" --warmup 0.5 \
        --quiet --json "$WORK/run.json" "$@" >/dev/null 2>"$WORK/run.err"
    echo "$(sed -n 's/^malloc_count=//p' "$WORK/run.err") $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['requests'])" "$WORK/run.json")"
}

[[ -z ${ALLOC_RESULTS:-} ]] || : >"$ALLOC_RESULTS"
printf "| client | allocations $ALLOC_SHORT s | allocations $ALLOC_LONG s | extra requests | allocations per request |\n|---|---:|---:|---:|---:|\n"
status=0
check() {
    local label=$1
    shift
    read -r short_allocs short_requests < <(run "$ALLOC_SHORT" "$@")
    read -r long_allocs long_requests < <(run "$ALLOC_LONG" "$@")
    local extra=$((long_requests - short_requests))
    local per=$(python3 -c "print(f'{($long_allocs - $short_allocs) / max($extra, 1):.6f}')")
    printf '| %s | %s | %s | %s | %s |\n' "$label" "$short_allocs" "$long_allocs" "$extra" "$per"
    [[ -z ${ALLOC_RESULTS:-} ]] || echo "$label|$per" >>"$ALLOC_RESULTS"
    # The client allocates a few times a second for its own bookkeeping (each second's
    # histogram snapshot for the interval log, progress): time, not requests, and from run
    # to run the counts move by about 5 either way. A failure is more extra allocations
    # than 10 and 5 per extra second (a loaded machine makes fewer requests in that time,
    # not fewer seconds) that also come to one per 10,000 extra requests.
    python3 -c "import sys; d = $long_allocs - $short_allocs; sys.exit(0 if d <= 10 + 5 * ($ALLOC_LONG - $ALLOC_SHORT) or d * 10000 <= max($extra, 1) else 1)" || status=1
}
check "raw 50x1x64" --protocol raw --connections 50
check "line 50x64x32" --protocol line --connections 50 --depth 64 --size 32
check "int32 50x64x32" --protocol int32 --connections 50 --depth 64 --size 32
check "netstring 20x8x64" --protocol netstring --connections 20 --depth 8
check "line open loop 20000/s" --protocol line --connections 20 --depth 4 --rate 20000
check "udp 16x4x64" --protocol udp --connections 16 --depth 4
check "2 threads raw 50x4x64" --protocol raw --connections 50 --depth 4 --threads 2
check "custom line templates 20x4" --protocol custom --request 'k{key} {seq} {rand:1-999} {value}' --response line --connections 20 --depth 4
check "custom int32 echo 20x4" --protocol custom --request 'v {value}' --response int32 --connections 20 --depth 4

if command -v redis-server >/dev/null; then
    TARGET_PORT=$(free_port)
    redis-server --port "$TARGET_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" >/dev/null 2>&1 &
    OTHERS+=($!)
    wait_port "$TARGET_PORT"
    check "redis SET/GET 50x16x32" --protocol redis --command 'SET key:{key} {value}' --command 'GET key:{key}' --weight 9 \
        --connections 50 --depth 16 --size 32
    check "redis PING 50x1" --protocol redis --connections 50
else
    echo "alloc-check: redis-server not installed (make servers): Redis not checked" >&2; status=1
fi
if command -v memcached >/dev/null; then
    TARGET_PORT=$(free_port)
    memcached -p "$TARGET_PORT" -l 127.0.0.1 -U 0 -u root -t 1 >/dev/null 2>&1 &
    OTHERS+=($!)
    wait_port "$TARGET_PORT"
    check "memcached set/get 20x8x32" --protocol memcached --command 'set key:{key} {value}' --command 'get key:{key}' --weight 3 \
        --connections 20 --depth 8 --size 32
else
    echo "alloc-check: memcached not installed (make servers): memcached not checked" >&2; status=1
fi
if command -v nginx >/dev/null; then
    TARGET_PORT=$(free_port)
    mkdir -p "$WORK/nginx"
    echo hello >"$WORK/nginx/index.html"
    cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; error_log $WORK/nginx/error.log; pid $WORK/nginx/nginx.pid;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
       uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx; keepalive_requests 100000000;
       server { listen 127.0.0.1:$TARGET_PORT; root $WORK/nginx; } }
EOF
    nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -e "$WORK/nginx/error.log" >/dev/null 2>&1 &
    OTHERS+=($!)
    wait_port "$TARGET_PORT"
    check "http GET 20x4" --protocol http --path /index.html --connections 20 --depth 4
else
    echo "alloc-check: nginx not installed (make servers): HTTP not checked" >&2; status=1
fi
exit $status
