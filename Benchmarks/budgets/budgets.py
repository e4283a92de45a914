#!/usr/bin/env python3
"""budgets.py: compares a measurement (budgets.sh writes it) with budgets.json.

    budgets.py table MEASURED [BUDGETS]    the table; exit 0
    budgets.py check MEASURED [BUDGETS]    the table; exit 1 when a metric is over budget
    budgets.py update MEASURED [BUDGETS]   rewrites BUDGETS with the measured values

MEASURED is a JSON object {"metrics": {NAME: VALUE, ...}, "commit": ..., "date": ...}.
BUDGETS (default: budgets.json next to this file) holds the tolerance in percent, the
budget of each metric (its name says its unit) and where the budgets were measured.
`update` replaces every budget with the measured figures, adding new metrics and dropping
ones no longer measured: the diff of budgets.json is what a reviewer checks.

A metric is over budget when it exceeds budget x (1 + tolerance / 100); with a budget of 0
that is any value above 0, so one allocation per request where there were none fails
whatever the tolerance. A metric in BUDGETS that the measurement lacks fails too (a check
that silently measured less would pass forever), and so does a measured metric without a
budget (it would be guarded by nothing).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def over(value, budget, tolerance_pct):
    return value > budget * (1 + tolerance_pct / 100)


def delta_pct(value, budget):
    if budget == 0:
        return "0.0%" if value == 0 else "new"
    return f"{(value - budget) * 100 / budget:+.1f}%"


def fmt(value):
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.4f}".rstrip("0").rstrip(".") or "0"


def compare(measured, budgets):
    """Prints the table; returns the names of the metrics over budget or missing."""
    tolerance = budgets["tolerance_pct"]
    failed = []
    print(f"| metric | measured | budget | delta | verdict (fails above +{tolerance:g}%) |")
    print("|---|---:|---:|---:|---|")
    for name, budget in budgets["metrics"].items():
        if name not in measured["metrics"]:
            failed.append(name)
            print(f"| {name} | missing | {fmt(budget)} | | FAIL: not measured |")
            continue
        value = measured["metrics"][name]
        verdict = "ok"
        if over(value, budget, tolerance):
            failed.append(name)
            verdict = "FAIL: over budget"
        elif budget > 0 and value < budget * (1 - tolerance / 100):
            verdict = "ok, well under: update the budget (docs/performance.md, Budgets)"
        print(f"| {name} | {fmt(value)} | {fmt(budget)} | {delta_pct(value, budget)} | {verdict} |")
    for name in measured["metrics"]:
        if name not in budgets["metrics"]:
            failed.append(name)
            print(f"| {name} | {fmt(measured['metrics'][name])} | none | | FAIL: no budget (make budgets-update) |")
    return failed


def update(measured, budgets):
    budgets["measured"] = {k: measured[k] for k in ("commit", "date", "machine") if k in measured}
    budgets["metrics"] = dict(measured["metrics"])


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in ("table", "check", "update"):
        sys.exit(__doc__)
    command, measured_path = sys.argv[1], sys.argv[2]
    budgets_path = sys.argv[3] if len(sys.argv) == 4 else os.path.join(HERE, "budgets.json")
    with open(measured_path) as f:
        measured = json.load(f)
    with open(budgets_path) as f:
        budgets = json.load(f)
    if command == "update":
        update(measured, budgets)
        with open(budgets_path, "w") as f:
            json.dump(budgets, f, indent=2)
            f.write("\n")
        print(f"budgets: {budgets_path} rewritten from the measurement")
        compare(measured, budgets)
        return
    failed = compare(measured, budgets)
    if command == "check" and failed:
        print(f"budgets: {len(failed)} over budget: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
