#!/usr/bin/env bash
# Builds the libFuzzer target for the PROXY protocol header parser (Fuzz/FuzzProxyHeader.swift
# with the parser's sources, -sanitize=fuzzer,address) and runs it for FUZZ_SECONDS
# (default 30). Corpus and crash inputs go to .build-fuzz/. Exits non-zero when the parser
# crashed, hung or broke a promise; the crashing input is named in the log.
#
#   bash Fuzz/run-fuzz-proxy.sh
#   FUZZ_SECONDS=300 bash Fuzz/run-fuzz-proxy.sh
set -euo pipefail

seconds=${FUZZ_SECONDS:-30}
swiftc=${SWIFTC:-swiftc}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/.build-fuzz
mkdir -p "$build/proxy-src"
cp "$root"/Sources/ReactorCore/TCP/{ProxyHeader,ProxyHeaderParser,ProxyProtocolOptions}.swift \
   "$root"/Sources/ReactorCore/Common/{SocketAddress,SocketAddress+Key,ReactorError}.swift "$build/proxy-src/"

echo "building $build/fuzz-proxy"
if ! "$swiftc" -sanitize=fuzzer,address -parse-as-library -swift-version 6 -O -g -package-name swift_reactor \
    "$root/Fuzz/FuzzProxyHeader.swift" "$build"/proxy-src/*.swift -o "$build/fuzz-proxy" 2> "$build/build-proxy.log"; then
    cat "$build/build-proxy.log" >&2
    echo "fuzz: the build failed (is -sanitize=fuzzer supported by this toolchain?)" >&2
    exit 1
fi

corpus=$build/corpus-proxy
mkdir -p "$corpus"
# Seeds: byte 0 versions, byte 1 cap, byte 2 cuts, then the stream.
printf '\002\004\001PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n\r\n' > "$corpus/seed-v1"
printf '\002\004\002PROXY UNKNOWN\r\n' > "$corpus/seed-unknown"
printf '\002\004\003PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n' > "$corpus/seed-v1-ipv6"
printf '\001\004\004\r\n\r\n\000\r\nQUIT\n\041\021\000\014\300\250\000\001\300\250\000\013\334\004\001\273ping' > "$corpus/seed-v2"
printf '\001\004\005\r\n\r\n\000\r\nQUIT\n\040\000\000\007\002\000\004abcd' > "$corpus/seed-v2-local-tlv"

log=$build/proxy.log
status=0
SWIFT_BACKTRACE=enable=no timeout $((seconds + 120)) "$build/fuzz-proxy" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=1024 -print_final_stats=1 \
    -artifact_prefix="$build/crash-proxy-" "$corpus" > "$log" 2>&1 || status=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
if [ "$status" -eq 0 ]; then
    echo "fuzz proxy: ok, ${runs:-?} executions in ${seconds}s (${rate:-?}/s), ${coverage:-cov: ?}"
else
    echo "fuzz proxy: FAILED (exit $status) after ${runs:-?} executions; see $log" >&2
    grep -E 'CHECK FAILED|Fatal error|ERROR: |Test unit written|deadly signal|timeout' "$log" | head -5 >&2 || true
    exit 1
fi
