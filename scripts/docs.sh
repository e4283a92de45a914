#!/usr/bin/env bash
# `make docs`: builds the DocC catalog of every library product (Sources/M/M.docc) with
# swift-docc-plugin, warnings as errors (an unresolved link, an undocumented parameter),
# then scripts/check-docs.py: every public symbol has a doc comment and a topic.
# The archives go to DOCS_OUT (default .build/docs), one M.doccarchive per module.
set -euo pipefail
cd "$(dirname "$0")/.."
MODULES=(ReactorCore ReactorFraming ReactorServices ReactorLifecycle ReactorAsync ReactorBench ReactorMetrics)
OUT=${DOCS_OUT:-.build/docs}
targets=()
for module in "${MODULES[@]}"; do targets+=(--target "$module"); done
swift package --allow-writing-to-directory "$OUT" generate-documentation "${targets[@]}" \
    --output-path "$OUT" --warnings-as-errors
python3 scripts/check-docs.py "${MODULES[@]}"
