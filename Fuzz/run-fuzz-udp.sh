#!/usr/bin/env bash
# Builds the libFuzzer target for the UDP services (Fuzz/UDPServices, a package of its own
# that depends on this one) with SwiftPM and -sanitize=fuzzer,address, and runs it for
# FUZZ_SECONDS (default 30). Every UDP service handler and the ReplyGuard get arbitrary
# datagrams from arbitrary loopback senders; the promises checked are listed at the top of
# Fuzz/UDPServices/Sources/FuzzUDPServices/FuzzUDPServices.swift. Corpus and crash inputs
# go to .build-fuzz-udp/. Exits non-zero when the target crashed, hung or broke a promise;
# the crashing input is named in the log.
#
#   bash Fuzz/run-fuzz-udp.sh                  # 30 s
#   FUZZ_SECONDS=600 bash Fuzz/run-fuzz-udp.sh
set -euo pipefail

seconds=${FUZZ_SECONDS:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/.build-fuzz-udp
corpus=$build/corpus
mkdir -p "$corpus"

echo "building $build/release/FuzzUDPServices"
if ! swift build --package-path "$root/Fuzz/UDPServices" --scratch-path "$build" -c release \
    -Xswiftc -sanitize=fuzzer,address > "$build/build.log" 2>&1; then
    cat "$build/build.log" >&2
    echo "fuzz udp: the build failed (is -sanitize=fuzzer supported by this toolchain?)" >&2
    exit 1
fi

# Seeds: rate, burst, table size, clock start (8 bytes), date (8 bytes), then requests of
# 6 bytes (control, host, port, clock step, length) and a payload; see the target's header.
header='\003\003\006\000\000\000\000\000\000\000\001\000\000\000\000\151\045\000\000'
seed() { printf "$header$2" > "$corpus/seed-$1"; }
seed echo '\000\001\047\020\000\005hello\000\001\047\020\000\000'
seed every '\000\002\047\021\001\001x\001\002\047\021\001\000\002\002\047\021\001\000\003\002\047\021\001\000\004\002\047\021\001\000\005\002\047\021\001\000'
seed refused '\010\003\000\000\000\003abc\012\003\000\001\000\000\014\003\000\005\000\000\015\003\000\006\000\000\210\000\000\002\000\000'
seed burst '\002\004\100\000\000\000\002\004\100\000\000\000\002\004\100\000\000\000\002\004\100\000\000\000\002\004\100\000\040\000'
seed wire '\100\001\047\020\000\005hello\100\002\047\020\000\003abc\102\003\047\021\000\000\103\003\047\022\000\000\104\004\047\023\000\000\105\005\047\024\000\000\110\006\000\001\000\002hi\101\007\047\025\000\004drop'
seed ipv6 '\200\000\060\071\000\004ping\205\000\060\071\000\000'
printf '\000\000\000\177\377\377\377\377\377\377\377\200\000\000\000\000\000\000\000\004\005\047\022\000\000\005\005\047\022\000\000' > "$corpus/seed-extremes"

log=$build/fuzz.log
status=0
SWIFT_BACKTRACE=enable=no timeout $((seconds + 120)) "$build/release/FuzzUDPServices" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$build/crash-" "$corpus" > "$log" 2>&1 || status=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
if [ "$status" -eq 0 ]; then
    echo "fuzz udp services: ok, ${runs:-?} executions in ${seconds}s (${rate:-?}/s), ${coverage:-cov: ?}"
else
    echo "fuzz udp services: FAILED (exit $status) after ${runs:-?} executions; see $log" >&2
    grep -E 'CHECK FAILED|Fatal error|ERROR: |Test unit written|deadly signal|timeout' "$log" | head -5 >&2 || true
    exit 1
fi
