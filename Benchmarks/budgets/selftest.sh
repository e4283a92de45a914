#!/usr/bin/env bash
# selftest.sh: shows that the budget comparison (budgets.py) can fail. Against a budget of
# 1000 with the 3% tolerance, 1040 must fail and 1020 pass; against a budget of 0, one
# allocation in a thousand requests must fail and none pass; a metric the measurement
# lacks must fail, and so must one without a budget; `update` must take the measured
# figures.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$(mktemp -d /tmp/budgets-selftest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cat >"$WORK/budgets.json" <<'JSON'
{"tolerance_pct": 3, "metrics": {"instructions": 1000, "allocations": 0}}
JSON

failures=0
# expect pass|fail INSTRUCTIONS ALLOCATIONS: runs `budgets.py check` on that measurement
# (a value of - leaves the metric out).
expect() {
    local want=$1 instructions=$2 allocations=$3 got=pass
    python3 - "$instructions" "$allocations" >"$WORK/measured.json" <<'PY'
import json, sys
metrics = {name: float(value) for name, value in zip(("instructions", "allocations"), sys.argv[1:]) if value != "-"}
print(json.dumps({"metrics": metrics}))
PY
    python3 "$HERE/budgets.py" check "$WORK/measured.json" "$WORK/budgets.json" >"$WORK/out" 2>&1 || got=fail
    if [[ $got == "$want" ]]; then
        echo "ok: instructions $instructions, allocations $allocations: $got"
    else
        echo "WRONG: instructions $instructions, allocations $allocations: $got, expected $want"
        cat "$WORK/out"
        failures=$((failures + 1))
    fi
}

expect pass 1000 0
expect pass 1020 0     # 2% over
expect pass 1030 0     # at the tolerance
expect fail 1040 0     # 4% over
expect pass 500 0      # under budget passes (and says to update)
expect fail 1000 0.001 # a budget of 0: any allocation fails
expect fail 1000 -     # a metric not measured fails
expect fail - 0

python3 - >"$WORK/measured.json" <<'PY'
import json
print(json.dumps({"metrics": {"instructions": 1000.0, "allocations": 0.0, "unbudgeted": 1.0}}))
PY
if python3 "$HERE/budgets.py" check "$WORK/measured.json" "$WORK/budgets.json" >"$WORK/out" 2>&1; then
    echo "WRONG: a measured metric without a budget passed"
    failures=$((failures + 1))
else
    echo "ok: a measured metric without a budget fails"
fi

python3 - >"$WORK/measured.json" <<'PY'
import json
print(json.dumps({"commit": "test", "metrics": {"instructions": 1100.0, "allocations": 0.0}}))
PY
python3 "$HERE/budgets.py" update "$WORK/measured.json" "$WORK/budgets.json" >/dev/null
if python3 -c "import json, sys; b = json.load(open(sys.argv[1])); sys.exit(0 if b['metrics']['instructions'] == 1100 and b['tolerance_pct'] == 3 and b['measured']['commit'] == 'test' else 1)" "$WORK/budgets.json"; then
    echo "ok: update rewrote the budget to 1100 and kept the tolerance"
else
    echo "WRONG: update did not rewrite the budget"
    failures=$((failures + 1))
fi
expect pass 1120 0     # 1.8% over the updated budget

((failures == 0)) || { echo "budgets selftest: $failures wrong"; exit 1; }
echo "budgets selftest: all passed"
