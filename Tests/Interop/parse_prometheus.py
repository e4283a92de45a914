"""Parses a Prometheus text exposition with prometheus_client's own parser (PyPI's
`prometheus_client`), so that the tests check what `reactor serve --metrics` serves
against a reader we did not write.

    python3 parse_prometheus.py FILE

Prints one JSON object: {"families": {NAME: TYPE}, "samples": [[NAME, {LABEL: VALUE}, VALUE], ...]}.
A text the parser refuses makes it exit 1 with the parser's error.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    families = {}
    samples = []
    try:
        for family in text_string_to_metric_families(text):
            families[family.name] = family.type
            for sample in family.samples:
                samples.append([sample.name, dict(sample.labels), sample.value])
    except Exception as error:  # the parser raises ValueError and friends; all are a refusal
        print(f"parse error: {error}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"families": families, "samples": samples}))


if __name__ == "__main__":
    main()
