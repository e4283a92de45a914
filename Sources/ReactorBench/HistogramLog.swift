import Foundation

/// The HdrHistogram interval log (`--histogram-log FILE`): the text format HdrHistogram's
/// own log readers decode (Java's HistogramLogReader, Python's `hdrh.log`, HdrHistogram_c,
/// HdrHistogram_rust, HistogramLogAnalyzer). One line per second of the measured window
/// (no warm-up): start in seconds from `#[StartTime]`, length, the interval's largest
/// latency in milliseconds, and the interval's histogram in microseconds, compressed V2
/// base64.
public enum HistogramLog {
    /// The log of `record` (which must hold intervals: ``BenchOptions/recordsIntervals``).
    public static func text(_ record: RunRecord, target: String) -> String {
        let start = record.measureStart
        var lines = [
            "#[Histogram log format version 1.3]",
            "#[StartTime: \(format(start)) (seconds since epoch), \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: start)))]",
            "#[BaseTime: \(format(start)) (seconds since epoch)]",
            "#[reactor bench \(target) on \(record.machine): latency from the intended send time, values in microseconds, the measured period only]",
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"",
        ]
        for interval in record.intervals {
            let maxMilliseconds = interval.histogram.totalCount > 0 ? Double(interval.histogram.max) / 1e6 : 0
            lines.append(
                "\(format(interval.start)),\(format(interval.length)),\(format(maxMilliseconds)),"
                    + HistogramCoding.encode(interval.histogram, divisor: 1000))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private static func format(_ value: Double) -> String { String(format: "%.3f", value) }
}
