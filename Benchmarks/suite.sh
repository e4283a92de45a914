#!/usr/bin/env bash
# suite.sh: `make bench`. Builds the peers, then runs `reactor bench suite` against
# `reactor serve echo` (a fresh server per scenario with the scenario's framing, the UDP
# reply rate limit off) and every peer of Benchmarks/peers.txt. The report (README.md
# with a table per scenario, an SVG chart per scenario, each run's JSON) goes to $OUT.
#
# Knobs (environment): DURATION (5 s measured per scenario), WARMUP (1 s), SCENARIOS
# (comma-separated subset, default all), BASELINE (default libevent when peers.txt has
# it, else reactor), SERVER_CPU (0), CLIENT_CPU (1), PEERS_FILE (Benchmarks/peers.txt;
# absent: reactor alone), OUT (Benchmarks/results/suite-DATE), REACTOR_BIN.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
cd "$ROOT"  # peers.txt commands are relative to the repository root

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
SCENARIOS=${SCENARIOS:-}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PEERS_FILE=${PEERS_FILE:-$HERE/peers.txt}
OUT=${OUT:-$HERE/results/suite-$(date +%Y%m%d-%H%M%S)}
REACTOR_BIN=${REACTOR_BIN:-$ROOT/.build/release/reactor}

say() { echo "suite.sh: $*" >&2; }

if [[ ! -x $REACTOR_BIN ]]; then
    say "building reactor (swift build -c release)"
    swift build -c release --product reactor >&2
fi

args=(--spawn "reactor=$REACTOR_BIN serve echo --port {port} --framing {framing} --udp-rate 0")
if [[ -f $PEERS_FILE ]]; then
    say "building the C peers (make -C Benchmarks)"
    make -s -C "$HERE" >&2
    if grep -q $'^swiftnio\t' "$PEERS_FILE"; then
        say "building the SwiftNIO peer (Benchmarks/swift, nio-echo)"
        swift build -c release --package-path "$HERE/swift" --scratch-path "$HERE/swift/.build" --product nio-echo >&2 ||
            say "the SwiftNIO peer did not build: its scenarios will be skipped"
    fi
    if grep -q $'^twisted\t' "$PEERS_FILE" && ! python3 -c 'import twisted' 2>/dev/null; then
        python3 -m pip install --quiet twisted >&2 || say "twisted is not installed: its scenarios will be skipped"
    fi
    args+=(--peers "$PEERS_FILE")
    BASELINE=${BASELINE:-$(grep -q $'^libevent\t' "$PEERS_FILE" && echo libevent || echo reactor)}
else
    say "no $PEERS_FILE: reactor alone"
fi
args+=(--baseline "${BASELINE:-reactor}" --duration "$DURATION" --warmup "$WARMUP" --out "$OUT")
[[ -n $SCENARIOS ]] && args+=(--scenarios "$SCENARIOS")
command -v taskset >/dev/null || say "taskset not found: servers run unpinned"
args+=(--server-cpus "$SERVER_CPU" --client-cpus "$CLIENT_CPU")

say "reactor bench suite ${args[*]}"
"$REACTOR_BIN" bench suite "${args[@]}"
say "report: $OUT/README.md"
