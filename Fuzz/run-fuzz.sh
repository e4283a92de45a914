#!/usr/bin/env bash
# Builds the libFuzzer targets for the framing decoders (Fuzz/FuzzFramers.swift with the
# framer sources, -sanitize=fuzzer,address) and runs each decoder for FUZZ_SECONDS
# (default 30). Corpora and crash inputs go to .build-fuzz/. Exits non-zero when a
# decoder crashed, hung or broke a promise; the crashing input is named in its log.
#
#   bash Fuzz/run-fuzz.sh                      # every decoder, 30 s each
#   FUZZ_SECONDS=300 FUZZ_DECODERS="netstring" bash Fuzz/run-fuzz.sh
set -euo pipefail

seconds=${FUZZ_SECONDS:-30}
decoders=${FUZZ_DECODERS:-"delimiter fixed lengthprefix netstring raw"}
swiftc=${SWIFTC:-swiftc}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/.build-fuzz
mkdir -p "$build/src"

# The framer sources compiled as one module with the harness: `import ReactorCore` is
# dropped and the RawSpan byte helpers it provided come along.
for name in Framer DelimiterFramer FixedLengthFramer LengthPrefixFramer NetstringFramer RawFramer; do
    sed '/^import ReactorCore$/d' "$root/Sources/ReactorFraming/$name.swift" > "$build/src/$name.swift"
done
cp "$root/Sources/ReactorCore/Common/RawSpan+Bytes.swift" "$build/src/"

echo "building $build/fuzz-framers"
# -package-name: the framer sources use `package` access (helpers for tests and tools).
if ! "$swiftc" -sanitize=fuzzer,address -parse-as-library -swift-version 6 -O -g -package-name swift_reactor \
    "$root/Fuzz/FuzzFramers.swift" "$build"/src/*.swift -o "$build/fuzz-framers" 2> "$build/build.log"; then
    cat "$build/build.log" >&2
    echo "fuzz: the build failed (is -sanitize=fuzzer supported by this toolchain?)" >&2
    exit 1
fi

seed() {  # seed NAME BYTES...: one seed input for the current corpus
    printf "$2" > "$corpus/seed-$1"
}

failed=0
for decoder in $decoders; do
    corpus=$build/corpus-$decoder
    mkdir -p "$corpus"
    case $decoder in
        delimiter) seed lines '\000\004\003one\ntwo\n\nthree'; seed crlf '\001\005\007a\r\nb\r\n\r'; seed end '\002\005\001x--END---END--' ;;
        fixed) seed records '\000\004\002abcdefghijk' ;;
        lengthprefix) seed int32 '\002\006\005\000\000\000\003abc\000\000\000\000'; seed int8le '\004\005\000\002hi\000' ;;
        netstring) seed ns '\000\006\0035:hello,0:,3:a:,,' ;;
        raw) seed raw '\000\004\001some raw bytes' ;;
    esac
    log=$build/$decoder.log
    status=0
    SWIFT_BACKTRACE=enable=no FUZZ_DECODER=$decoder timeout $((seconds + 120)) "$build/fuzz-framers" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=4096 -print_final_stats=1 \
        -artifact_prefix="$build/crash-$decoder-" "$corpus" > "$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    if [ "$status" -eq 0 ]; then
        echo "fuzz $decoder: ok, ${runs:-?} executions in ${seconds}s (${rate:-?}/s), ${coverage:-cov: ?}"
    else
        failed=1
        echo "fuzz $decoder: FAILED (exit $status) after ${runs:-?} executions; see $log" >&2
        grep -E 'CHECK FAILED|Fatal error|ERROR: |Test unit written|deadly signal|timeout' "$log" | head -5 >&2 || true
    fi
done
exit $failed
