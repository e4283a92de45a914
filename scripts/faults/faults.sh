#!/usr/bin/env bash
# The hostile network (issue 15): `reactor serve` in a network namespace of its own, the
# clients in others, faults on the link between them. Root only (network namespaces,
# nftables). `make faults`; CI runs it. docs/operations.md ("A hostile network") has the
# figures of the last run.
#
# Topology, all of it made for this run and named after its pid, so parallel runs and the
# host never collide (the host's own interfaces and firewall rules are never touched):
#
#   namespace <id>c  10.77.0.2  --veth--+
#   (the clients, and the faults:      |-- bridge in namespace <id>s: 10.77.0.1 (servers)
#    nftables + NFQUEUE)               |
#   namespace <id>g  10.77.0.3  --veth--+  (the peer that vanishes)
#
# Faults are applied where the wire would apply them: a packet is dropped as it arrives
# (prerouting), never as it leaves, since a drop in the sender's output hook is an EPERM
# its socket sees (UDP senders count it as a send error, not a loss):
#   loss        nftables `numgen random mod 100 < 2 drop`, each direction (in the server's
#               namespace for what the clients send, in the clients' for what comes back)
#   duplication nftables `numgen random mod 100 < 1 dup to 10.77.0.1` (client to server)
#   delay       iptables-nft NFQUEUE (the kernel has no netem; nftables' own `queue` is not
#               built) and scripts/faults/delayq.py holding each packet 40 ms +- 20 ms
#               (client to server), so packets overtake one another
#   partition   nftables: every packet dropped on arrival, both directions
# Ports: inside the namespaces made here nothing else listens, so the servers use fixed
# ports there (serve all's offset) without colliding with anyone.
#
# Scenarios, each bounded in time and stopping by itself:
#   link       the faults measured before they are trusted: UDP probes to a reflector
#              (not the reactor) without and with the faults: loss, duplicates,
#              reordering, RTT
#   lossy      2 % loss, 40 +- 20 ms delay with reordering, 1 % duplication: 100
#              connections of raw TCP echo and 100 of line-framed echo, every byte checked;
#              the UDP services asked at a steady rate, replies checked and counted against
#              the requests that reached the server (nftables counters in its namespace);
#              reactor bench over TCP and UDP: its p50 against the injected delay, its
#              errors against the loss
#   partition  10 s with every packet dropped, in the middle of a run of line-framed
#              echo against a server with --idle-timeout 5 and one without an idle timeout:
#              the first closes its connections on time during the partition, the second
#              keeps them and they resume, nothing lost, duplicated or reordered, memory flat
#   vanish     a peer holding connections disappears without FIN or RST (its packets
#              dropped, its processes killed, its namespace deleted): a server with TCP
#              keepalive and one with an idle timeout free everything; one with neither
#              keeps the connections (the control)
# Each check prints PASS or FAIL; the run exits 1 on any FAIL. Figures go to stdout and
# to $FAULTS_OUT (a directory, default a temporary one that is removed).
#
#   REACTOR_BIN=.build/release/reactor bash scripts/faults/faults.sh [SCENARIO...]
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/scripts/faults
REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}
CLIENTS=$HERE/faultclients.py
LOSS=${FAULTS_LOSS:-2}
DUP=${FAULTS_DUP:-1}
DELAY_MS=${FAULTS_DELAY_MS:-40}
JITTER_MS=${FAULTS_JITTER_MS:-20}
SCENARIOS=("$@")
((${#SCENARIOS[@]})) || SCENARIOS=(link lossy partition vanish)

say() { printf 'faults: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 2; }

[[ $(id -u) == 0 ]] || die "root is required (network namespaces, nftables): run it as root or with sudo"
[[ -x $REACTOR_BIN ]] || die "no reactor at $REACTOR_BIN: make release first"
for tool in ip nft iptables-nft python3; do
    command -v "$tool" >/dev/null || die "$tool not found: make faults installs iproute2, nftables and iptables"
done
python3 -c "import netfilterqueue" 2>/dev/null || die "python3 cannot import netfilterqueue: make faults installs it (pip NetfilterQueue)"

ID=rf$$
NS_S=${ID}s
NS_C=${ID}c
NS_G=${ID}g
SERVER_IP=10.77.0.1
CLIENT_IP=10.77.0.2
GHOST_IP=10.77.0.3
if [[ -n ${FAULTS_OUT:-} ]]; then
    WORK=$FAULTS_OUT
    mkdir -p "$WORK"
    KEEP_WORK=1
else
    WORK=$(mktemp -d /tmp/faults.XXXXXX)
    KEEP_WORK=
fi

PIDS=()
cleanup() {
    local pid ns
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.3
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for ns in "$NS_G" "$NS_C" "$NS_S"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        ip netns del "$ns" 2>/dev/null || true
    done
    [[ -n $KEEP_WORK ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FAILURES=()
check() { # check NAME CONDITION-EXIT-STATUS DETAIL
    if [[ $2 == 0 ]]; then say "PASS $1: $3"; else FAILURES+=("$1"); say "FAIL $1: $3"; fi
}
# py EXPR FILE: evaluates EXPR over the JSON object in FILE (as j); prints the result.
py() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($1)" "$2"; }
# pytest EXPR FILE: exit status 0 when EXPR holds.
pytest() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" "$2"; }

in_s() { ip netns exec "$NS_S" "$@"; }
in_c() { ip netns exec "$NS_C" "$@"; }
in_g() { ip netns exec "$NS_G" "$@"; }
# The same as arrays, for what runs in the background: `ip netns exec` execs the command,
# so $! is the process itself (a function would put a subshell in between).
IN_S=(ip netns exec "$NS_S")
IN_C=(ip netns exec "$NS_C")
IN_G=(ip netns exec "$NS_G")

fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

setup_network() {
    ip netns add "$NS_S" && ip netns add "$NS_C" && ip netns add "$NS_G" || die "cannot create network namespaces"
    local ns
    for ns in "$NS_S" "$NS_C" "$NS_G"; do ip -n "$ns" link set lo up; done
    ip -n "$NS_S" link add br0 type bridge &&
        ip -n "$NS_S" addr add "$SERVER_IP/24" dev br0 &&
        ip -n "$NS_S" link set br0 up || die "cannot make the server's bridge"
    # veth ends made straight inside the namespaces: the host's namespace never has them.
    ip link add "${ID}c" netns "$NS_C" type veth peer name "${ID}cb" netns "$NS_S" &&
        ip link add "${ID}g" netns "$NS_G" type veth peer name "${ID}gb" netns "$NS_S" || die "cannot make veth pairs"
    ip -n "$NS_S" link set "${ID}cb" master br0 up && ip -n "$NS_S" link set "${ID}gb" master br0 up &&
        ip -n "$NS_C" addr add "$CLIENT_IP/24" dev "${ID}c" && ip -n "$NS_C" link set "${ID}c" up &&
        ip -n "$NS_G" addr add "$GHOST_IP/24" dev "${ID}g" && ip -n "$NS_G" link set "${ID}g" up || die "cannot configure the links"
    # Counters of UDP on the server's side, by port: what reached the services and what
    # they sent back, to tell a reply to a duplicated request from amplification.
    in_s nft -f - <<EOF || die "cannot add the server's counters"
table ip faultcount {
    chain in { type filter hook input priority 0; policy accept; }
    chain out { type filter hook output priority 0; policy accept; }
}
EOF
    local i=0
    # Up when a connect to a closed port is refused (the bridge answers at once).
    while [[ $(in_c python3 -c "import socket; socket.create_connection(('$SERVER_IP', 9), 0.2)" 2>&1) != *refused* ]]; do
        ((++i < 50)) || die "the link does not come up"
        sleep 0.1
    done
}

# udp_counters PORT...: an nftables counter per port and direction on the server's side.
udp_counters() {
    local port
    for port in "$@"; do
        in_s nft add counter ip faultcount "in_$port"
        in_s nft add counter ip faultcount "out_$port"
        in_s nft add rule ip faultcount in udp dport "$port" counter name "in_$port"
        in_s nft add rule ip faultcount out udp sport "$port" counter name "out_$port"
    done
}
# counter NAME: "packets bytes".
counter() {
    in_s nft list counter ip faultcount "$1" | awk '/packets/ {for (i = 1; i < NF; i++) {if ($i == "packets") p = $(i + 1); if ($i == "bytes") b = $(i + 1)}} END {print p, b}'
}

DELAY_PID=
faults_on() {
    in_c nft -f - <<EOF || die "cannot add the fault rules"
table ip faults {
    chain out {
        type filter hook output priority 0; policy accept;
        ip daddr $SERVER_IP numgen random mod 100 < $DUP dup to $SERVER_IP device "${ID}c"
    }
    chain in {
        type filter hook prerouting priority 0; policy accept;
        ip saddr $SERVER_IP numgen random mod 100 < $LOSS drop
    }
}
EOF
    in_s nft -f - <<EOF || die "cannot add the fault rules"
table ip faults {
    chain in {
        type filter hook prerouting priority 0; policy accept;
        ip saddr $CLIENT_IP numgen random mod 100 < $LOSS drop
    }
}
EOF
    "${IN_C[@]}" python3 "$HERE/delayq.py" 0 "$DELAY_MS" "$JITTER_MS" --seconds 900 >"$WORK/delayq.out" 2>&1 &
    DELAY_PID=$!
    PIDS+=("$DELAY_PID")
    local i
    # Up to 30 s: Python's start is slow on a busy machine.
    for ((i = 0; i < 300; i++)); do
        grep -qs '^delayq: queue' "$WORK/delayq.out" && break
        kill -0 "$DELAY_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -q '^delayq: queue' "$WORK/delayq.out" || die "delayq.py did not start: $(cat "$WORK/delayq.out")"
    # iptables-nft rather than nftables' `queue`: this kernel has NFQUEUE only as the xtables target.
    in_c iptables-nft -A OUTPUT -d "$SERVER_IP" -j NFQUEUE --queue-num 0 || die "cannot add the NFQUEUE rule"
}
faults_off() {
    in_c iptables-nft -D OUTPUT -d "$SERVER_IP" -j NFQUEUE --queue-num 0 2>/dev/null
    in_c nft delete table ip faults 2>/dev/null
    in_s nft delete table ip faults 2>/dev/null
    if [[ -n $DELAY_PID ]]; then
        kill -TERM "$DELAY_PID" 2>/dev/null
        wait "$DELAY_PID" 2>/dev/null
        DELAY_PID=
        say "$(tail -1 "$WORK/delayq.out")"
    fi
}
partition_on() {
    in_s nft add table ip partition &&
        in_s nft add chain ip partition in "{ type filter hook prerouting priority -10; policy accept; ip saddr $CLIENT_IP drop; }" &&
        in_c nft add table ip partition &&
        in_c nft add chain ip partition in "{ type filter hook prerouting priority -10; policy accept; ip saddr $SERVER_IP drop; }" ||
        die "cannot partition the link"
}
partition_off() { in_s nft delete table ip partition && in_c nft delete table ip partition; }

# serve NAME ARGS...: starts reactor serve in the server namespace; sets PID_<NAME>.
serve() {
    local name=$1 i
    shift
    "${IN_S[@]}" "$REACTOR_BIN" serve "$@" --host "$SERVER_IP" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    local pid=$!
    PIDS+=("$pid")
    for ((i = 0; i < 200; i++)); do
        grep -qs '^listening ' "$WORK/$name.out" && break
        kill -0 "$pid" 2>/dev/null || die "reactor serve $* did not start: $(tail -2 "$WORK/$name.err")"
        sleep 0.05
    done
    sleep 0.1 # serve all prints its lines together; one more moment for the rest
    printf -v "PID_$name" %s "$pid"
}
# port_of NAME SERVICE: the TCP port a server printed for SERVICE.
port_of() { sed -nE "s/^listening tcp .*:([0-9]+) $2\$/\\1/p" "$WORK/$1.out"; }
stop_server() { # stop_server NAME: SIGTERM, exit status checked
    local pid_var=PID_$1
    local pid=${!pid_var}
    kill -TERM "$pid" 2>/dev/null
    local i
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    wait "$pid"
    check "$1 exits 0 on SIGTERM" "$?" "status $?"
}

# ---------------------------------------------------------------- link
scenario_link() {
    say "== link: the faults measured against a UDP reflector (not the reactor)"
    "${IN_S[@]}" python3 "$CLIENTS" reflect 9999 60 >"$WORK/reflect.out" 2>&1 &
    PIDS+=($!)
    sleep 0.3
    in_c python3 "$CLIENTS" probe "$SERVER_IP" 9999 300 3 >"$WORK/probe-clean.json"
    say "clean link: $(cat "$WORK/probe-clean.json")"
    pytest 'j["loss"] == 0 and j["duplicates"] == 0 and j["rtt_ms"]["p50"] < 5' "$WORK/probe-clean.json"
    check "clean link" "$?" "no loss, no duplicates, p50 RTT under 5 ms"
    faults_on
    in_c python3 "$CLIENTS" probe "$SERVER_IP" 9999 1500 3 >"$WORK/probe-faults.json"
    faults_off
    say "faulty link: $(cat "$WORK/probe-faults.json")"
    # 2 % each way is 3.96 % of round trips; 1500 probes put 2 % to 6.5 % far outside noise.
    pytest 'j["loss"] >= 0.02 and j["loss"] <= 0.065' "$WORK/probe-faults.json"
    check "loss applied" "$?" "round-trip loss $(py 'j["loss"]' "$WORK/probe-faults.json") (2 % each way: 3.96 % expected)"
    pytest 'j["duplicates"] >= 3' "$WORK/probe-faults.json"
    check "duplication applied" "$?" "$(py 'j["duplicates"]' "$WORK/probe-faults.json") duplicates of 1500 (1 %: 15 expected)"
    pytest 'j["reordered"] >= 100' "$WORK/probe-faults.json"
    check "reordering applied" "$?" "$(py 'j["reordered"]' "$WORK/probe-faults.json") probes overtaken by a later one"
    pytest '30 <= j["rtt_ms"]["p50"] <= 60 and j["rtt_ms"]["min"] >= 19' "$WORK/probe-faults.json"
    check "delay applied" "$?" "RTT min/p50/max $(py '"%s/%s/%s ms" % (j["rtt_ms"]["min"], j["rtt_ms"]["p50"], j["rtt_ms"]["max"])' "$WORK/probe-faults.json") (40 +- 20 ms injected)"
}

# ---------------------------------------------------------------- lossy
scenario_lossy() {
    local seconds=${FAULTS_LOSSY_SECONDS:-15}
    say "== lossy: ${LOSS} % loss each way, ${DELAY_MS} +- ${JITTER_MS} ms delay with reordering, ${DUP} % duplication, ${seconds} s"
    serve all all --port-offset 10000
    serve line echo --framing line --port 10100 --tcp-only
    serve udpecho echo --udp-only --port 10101 --udp-rate 0
    local ports=(10007 10009 10013 10017 10019 10037)
    udp_counters "${ports[@]}" 10101
    local rss_all_before rss_line_before
    rss_all_before=$(rss_kb "$PID_all")
    rss_line_before=$(rss_kb "$PID_line")
    faults_on
    "${IN_C[@]}" python3 "$CLIENTS" stream "$SERVER_IP" 10007 --connections 100 --seconds "$seconds" --window 4096 --drain 30 \
        >"$WORK/lossy-raw.json" &
    local raw=$!
    "${IN_C[@]}" python3 "$CLIENTS" stream "$SERVER_IP" 10100 --connections 100 --seconds "$seconds" --framing line --window 4096 --drain 30 \
        >"$WORK/lossy-line.json" &
    local line=$!
    # 3 requests a second per service from one source address, 18 in all: under the reply
    # guard's 20 a second per source (shared by the services), so every request that
    # arrives must be answered.
    "${IN_C[@]}" python3 "$CLIENTS" udp "$SERVER_IP" --port echo=10007 --port discard=10009 --port daytime=10013 \
        --port qotd=10017 --port chargen=10019 --port time=10037 --rate 3 --seconds "$seconds" >"$WORK/lossy-udp.json" &
    local udp=$!
    PIDS+=("$raw" "$line" "$udp")
    wait "$raw" "$line" "$udp"
    local name
    for name in raw line; do
        say "$name echo: $(cat "$WORK/lossy-$name.json")"
        pytest 'j["mismatches"] == 0 and not j["errors"] and j["open_at_end"] == 100 and j["bytes_unanswered"] == 0 and j["min_verified_per_connection"] > 0' "$WORK/lossy-$name.json"
        check "lossy: $name echo byte-exact" "$?" "$(py 'j["bytes_verified"]' "$WORK/lossy-$name.json") bytes verified over 100 connections, $(py 'j["mismatches"]' "$WORK/lossy-$name.json") wrong, errors $(py 'j["errors"]' "$WORK/lossy-$name.json")"
    done
    say "UDP services: $(cat "$WORK/lossy-udp.json")"
    pytest 'all(s["bad"] == 0 for s in j.values()) and j["echo"]["max_replies_per_request"] <= 2 and j["discard"]["replies"] == 0' "$WORK/lossy-udp.json"
    check "lossy: UDP replies are right" "$?" "no wrong reply, at most one per copy of a request (echo: at most $(py 'j["echo"]["max_replies_per_request"]' "$WORK/lossy-udp.json")), discard silent"
    local port in out detail="" amplified=0 unanswered=0 answerable=0
    for port in "${ports[@]}"; do
        in=$(counter "in_$port")
        out=$(counter "out_$port")
        detail+=" $port: ${in% *} in ${out% *} out;"
        ((${out% *} <= ${in% *})) || amplified=1
        ((port == 10009)) || ((unanswered += ${in% *} - ${out% *}, answerable += ${in% *}))
    done
    in=$(counter in_10007)
    out=$(counter out_10007)
    ((${out#* } <= ${in#* })) || amplified=1
    check "lossy: UDP never amplifies" "$amplified" "packets at the server (duplicates included):$detail echo bytes ${in#* } in, ${out#* } out"
    # reactor bench, with the faults still on: one run over TCP, one over UDP.
    in_c "$REACTOR_BIN" bench "$SERVER_IP:10007" --connections 10 --size 64 --duration 8 --warmup 1 --request-timeout 5 \
        --quiet --json "$WORK/lossy-bench-tcp.json" >"$WORK/lossy-bench-tcp.out" 2>&1
    check "lossy: reactor bench (TCP) ran" "$?" "$(tail -1 "$WORK/lossy-bench-tcp.out")"
    in_c "$REACTOR_BIN" bench "$SERVER_IP:10101" --protocol udp --connections 8 --depth 4 --size 64 --duration 8 --warmup 1 \
        --request-timeout 1 --quiet --json "$WORK/lossy-bench-udp.json" >"$WORK/lossy-bench-udp.out" 2>&1
    check "lossy: reactor bench (UDP) ran" "$?" "$(tail -1 "$WORK/lossy-bench-udp.out")"
    faults_off
    local tcp_summary udp_summary
    tcp_summary=$(bench_summary "$WORK/lossy-bench-tcp.json")
    udp_summary=$(bench_summary "$WORK/lossy-bench-udp.json")
    say "bench TCP: $tcp_summary"
    say "bench UDP: $udp_summary"
    bench_p50_ok "$WORK/lossy-bench-tcp.json"
    check "lossy: bench TCP p50 reflects the delay" "$?" "$tcp_summary"
    bench_p50_ok "$WORK/lossy-bench-udp.json"
    check "lossy: bench UDP p50 reflects the delay" "$?" "$udp_summary"
    # Lost datagrams against all sent: the link loses 3.96 % of round trips.
    pytest '0.015 <= j["error_kinds"]["lost"] / max(1, j["requests"] + j["error_kinds"]["lost"]) <= 0.08' "$WORK/lossy-bench-udp.json"
    check "lossy: bench UDP reports the loss" "$?" "$udp_summary (3.96 % round-trip loss injected)"
    local rss_all_after rss_line_after
    rss_all_after=$(rss_kb "$PID_all")
    rss_line_after=$(rss_kb "$PID_line")
    say "server RSS KiB: serve all $rss_all_before -> $rss_all_after, line echo $rss_line_before -> $rss_line_after"
    stop_server all
    # The requests stay under the reply guard's rate, but a client or delay queue starved
    # of CPU for a few seconds sends what it owes at once, and the guard then rightly
    # refuses some: every request that arrived must be answered or counted as refused.
    local limited
    limited=$(sed -nE 's/.*UDP replies: [0-9]+ allowed, ([0-9]+) refused for their source port, ([0-9]+) rate-limited.*/\1 \2/p' "$WORK/all.err" | tail -1)
    # A stall that refuses more than a tenth is not one the guard's burst should allow.
    [[ -n $limited ]] && ((unanswered == ${limited% *} + ${limited#* } && ${limited#* } * 10 <= answerable))
    check "lossy: UDP services answer what arrives" "$?" "of $answerable datagrams that reached a service but discard (copies included), $unanswered went unanswered; the guard refused ${limited% *} for their source port and ${limited#* } for the rate"
    stop_server line
    stop_server udpecho
}

# bench_summary FILE: requests, errors by kind, p50 and p99 from a reactor bench --json.
bench_summary() {
    py '"%d requests, %d errors %s, p50 %.1f ms, p99 %.1f ms" % (j["requests"], j["errors"], {k: v for k, v in j["error_kinds"].items() if v}, j["latency_us"]["p50"] / 1000, j["latency_us"]["p99"] / 1000)' "$1"
}
# bench_p50_ok FILE: p50 between the injected delay's low end and 3x its mean.
bench_p50_ok() { pytest "$((DELAY_MS - JITTER_MS)) * 1000 <= j['latency_us']['p50'] <= 3 * $DELAY_MS * 1000" "$1"; }

# ---------------------------------------------------------------- partition
scenario_partition() {
    local before=8 partition=10 after=12
    say "== partition: ${partition} s of every packet dropped, ${before} s into a run of line-framed echo"
    # Debug logging: each idle close logs how long the connection had been quiet.
    serve idle echo --framing line --port 10200 --tcp-only --idle-timeout 5 --log-level debug
    serve keep echo --framing line --port 10201 --tcp-only --idle-timeout 0
    local base_idle base_keep
    base_idle=$(fds "$PID_idle")
    base_keep=$(fds "$PID_keep")
    local seconds=$((before + partition + after))
    "${IN_C[@]}" python3 "$CLIENTS" stream "$SERVER_IP" 10200 --connections 20 --seconds "$seconds" --framing line --window 2048 --drain 20 \
        >"$WORK/partition-idle.json" &
    local idle=$!
    "${IN_C[@]}" python3 "$CLIENTS" stream "$SERVER_IP" 10201 --connections 50 --seconds "$seconds" --framing line --window 2048 --drain 20 \
        >"$WORK/partition-keep.json" &
    local keep=$!
    PIDS+=("$idle" "$keep")
    sleep "$before"
    local open_idle open_keep rss_keep_before rss_idle_before
    open_idle=$(($(fds "$PID_idle") - base_idle))
    open_keep=$(($(fds "$PID_keep") - base_keep))
    rss_keep_before=$(rss_kb "$PID_keep")
    rss_idle_before=$(rss_kb "$PID_idle")
    local t0 closed_at="" now
    t0=$(date +%s.%N)
    partition_on
    # Sample the idle server's connections every 0.25 s during the partition.
    while now=$(date +%s.%N); python3 -c "import sys; sys.exit(0 if $now - $t0 < $partition else 1)"; do
        if [[ -z $closed_at ]] && (($(fds "$PID_idle") <= base_idle)); then
            closed_at=$(python3 -c "print(round($now - $t0, 2))")
        fi
        sleep 0.25
    done
    local during_keep during_idle rss_keep_during
    during_idle=$(($(fds "$PID_idle") - base_idle))
    during_keep=$(($(fds "$PID_keep") - base_keep))
    rss_keep_during=$(rss_kb "$PID_keep")
    partition_off
    wait "$idle" "$keep"
    local rss_keep_after rss_idle_after
    rss_keep_after=$(rss_kb "$PID_keep")
    rss_idle_after=$(rss_kb "$PID_idle")
    say "idle-timeout server: $open_idle connections before, $during_idle at the end of the partition (all closed ${closed_at:-never} s into it)"
    say "no-timeout server: $open_keep connections before, $during_keep at the end of the partition"
    say "idle-timeout clients: $(cat "$WORK/partition-idle.json")"
    say "no-timeout clients: $(cat "$WORK/partition-keep.json")"
    # The timeout counts from the last byte the server moved, which may be a little before
    # the partition began (a client stalled for a moment): the server's log says how long
    # each connection had been quiet when it closed it.
    local quiet
    quiet=$(sed -nE 's/.*idle for ([0-9.]+) seconds; closing.*/\1/p' "$WORK/idle.err" | sort -n | awk '{q[NR] = $1} END {if (NR) printf "%d closed after %.3f to %.3f s quiet", NR, q[1], q[NR]; else print "none closed for idleness"}')
    ((open_idle == 20 && during_idle == 0)) && [[ -n $closed_at && $quiet == "20 closed after "* ]] &&
        [[ $(sed -nE 's/.*idle for ([0-9.]+) seconds; closing.*/\1/p' "$WORK/idle.err" | awk '$1 < 5 || $1 > 6.5' | wc -l) == 0 ]]
    check "partition: idle timeout closes on time" "$?" "all 20 closed by ${closed_at:-never} s into the partition; $quiet (--idle-timeout 5; sampled every 0.25 s)"
    pytest 'j["mismatches"] == 0 and j["open_at_end"] == 0' "$WORK/partition-idle.json"
    check "partition: the closed connections lost nothing before closing" "$?" "$(py 'j["bytes_verified"]' "$WORK/partition-idle.json") bytes verified, ends $(py 'j["ends"]' "$WORK/partition-idle.json")"
    ((open_keep == 50 && during_keep == 50))
    check "partition: connections without a timeout stay open" "$?" "$open_keep before, $during_keep during"
    pytest "j['mismatches'] == 0 and not j['errors'] and j['open_at_end'] == 50 and j['bytes_unanswered'] == 0 and j['last_progress_s'] > $((before + partition))" "$WORK/partition-keep.json"
    check "partition: they resume, nothing lost, duplicated or reordered" "$?" "$(py 'j["bytes_verified"]' "$WORK/partition-keep.json") bytes verified in order, errors $(py 'j["errors"]' "$WORK/partition-keep.json")"
    local growth=$((rss_keep_after - rss_keep_before))
    ((growth < 4096))
    check "partition: memory bounded" "$?" "no-timeout server RSS KiB $rss_keep_before before, $rss_keep_during during, $rss_keep_after after; idle-timeout server $rss_idle_before -> $rss_idle_after"
    stop_server idle
    stop_server keep
}

# ---------------------------------------------------------------- vanish
scenario_vanish() {
    local n=50 bound=30
    say "== vanish: a peer with $n connections to each of three servers disappears without FIN or RST"
    serve ka echo --port 10300 --tcp-only --idle-timeout 0 --keepalive 2 --keepalive-interval 1 --keepalive-count 3
    serve it echo --port 10301 --tcp-only --idle-timeout 3
    serve none echo --port 10302 --tcp-only --idle-timeout 0
    local name base_ka base_it base_none rss_before
    for name in ka it none; do
        local pid_var=PID_$name
        printf -v "base_$name" %s "$(fds "${!pid_var}")"
    done
    local holders=()
    for port in 10300 10301 10302; do
        "${IN_G[@]}" python3 "$CLIENTS" hold "$SERVER_IP" "$port" "$n" >"$WORK/hold-$port.out" 2>&1 &
        holders+=($!)
        PIDS+=($!)
    done
    local i
    for ((i = 0; i < 200; i++)); do
        (($(cat "$WORK"/hold-*.out | grep -c '^ready') == 3)) && break
        sleep 0.1
    done
    local held_ka=$(($(fds "$PID_ka") - base_ka)) held_it=$(($(fds "$PID_it") - base_it)) held_none=$(($(fds "$PID_none") - base_none))
    say "held: $held_ka (keepalive), $held_it (idle timeout), $held_none (neither)"
    local rss_ka_before rss_it_before
    rss_ka_before=$(rss_kb "$PID_ka")
    rss_it_before=$(rss_kb "$PID_it")
    # Vanish: nothing leaves the peer's namespace any more, so killing its processes sends
    # neither FIN nor RST; then the namespace and its end of the link go.
    in_g nft add table ip vanish
    in_g nft add chain ip vanish out '{ type filter hook output priority -20; policy drop; }'
    kill -KILL "${holders[@]}" 2>/dev/null
    wait "${holders[@]}" 2>/dev/null
    ip netns del "$NS_G"
    local t0=$SECONDS freed_ka="" freed_it="" start
    start=$(date +%s.%N)
    while ((SECONDS - t0 < bound)); do
        local now
        now=$(date +%s.%N)
        [[ -z $freed_ka ]] && (($(fds "$PID_ka") <= base_ka)) && freed_ka=$(python3 -c "print(round($now - $start, 1))")
        [[ -z $freed_it ]] && (($(fds "$PID_it") <= base_it)) && freed_it=$(python3 -c "print(round($now - $start, 1))")
        [[ -n $freed_ka && -n $freed_it ]] && break
        sleep 0.25
    done
    local left_none=$(($(fds "$PID_none") - base_none))
    ((held_ka == n)) && [[ -n $freed_ka ]]
    check "vanish: TCP keepalive frees the connections" "$?" "$held_ka held, all freed ${freed_ka:-not within $bound} s after the peer vanished (--keepalive 2 --keepalive-interval 1 --keepalive-count 3: about 5 s)"
    ((held_it == n)) && [[ -n $freed_it ]]
    check "vanish: the idle timeout frees the connections" "$?" "$held_it held, all freed ${freed_it:-not within $bound} s after the peer vanished (--idle-timeout 3)"
    ((held_none == n && left_none == n))
    check "vanish: without either they stay (the control)" "$?" "$held_none held, $left_none still open after the others were freed"
    say "server RSS KiB: keepalive $rss_ka_before -> $(rss_kb "$PID_ka"), idle timeout $rss_it_before -> $(rss_kb "$PID_it")"
    stop_server ka
    stop_server it
    stop_server none
}

say "run $ID: namespaces $NS_S (servers), $NS_C (clients), $NS_G (the vanishing peer); scratch $WORK"
setup_network
for scenario in "${SCENARIOS[@]}"; do
    started=$SECONDS
    "scenario_$scenario"
    say "$scenario took $((SECONDS - started)) s"
done
if ((${#FAILURES[@]})); then
    say "FAIL (${#FAILURES[@]}): ${FAILURES[*]}"
    exit 1
fi
say "PASS: every check of ${SCENARIOS[*]}"
