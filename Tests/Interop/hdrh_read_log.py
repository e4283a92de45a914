"""Reads what `reactor bench` wrote with HdrHistogram's Python implementation (PyPI's
`hdrhistogram`), so that the tests check our encoding against a reader we did not write.

    python3 hdrh_read_log.py LOG [RUN.json]

Prints one JSON object: the log's start time and every interval (start and end in Unix
seconds, count, mean, p50, p99, max and every non-empty bucket in the log's unit), and for RUN.json the count and
percentiles of its corrected histogram (nanoseconds).
"""
import json
import sys

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader


def summary(histogram):
    return {
        "count": histogram.get_total_count(),
        "mean": histogram.get_mean_value(),
        "p50": histogram.get_value_at_percentile(50),
        "p99": histogram.get_value_at_percentile(99),
        "max": histogram.get_max_value(),
        "buckets": [[item.value_iterated_to, item.count_at_value_iterated_to]
                    for item in histogram.get_recorded_iterator()],
    }


def main():
    reference = HdrHistogram(1, 3600 * 1000 * 1000, 3)
    reader = HistogramLogReader(sys.argv[1], reference)
    intervals = []
    while True:
        histogram = reader.get_next_interval_histogram()
        if histogram is None:
            break
        entry = summary(histogram)
        entry["start"] = histogram.get_start_time_stamp() / 1000.0
        entry["end"] = histogram.get_end_time_stamp() / 1000.0
        intervals.append(entry)
    out = {"start_time": reader.get_start_time_sec(), "intervals": intervals}
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as run:
            encoded = json.load(run)["histogram"]["corrected"]["encoded"]
        out["run"] = summary(HdrHistogram.decode(encoded))
    print(json.dumps(out))


main()
