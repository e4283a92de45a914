import Foundation

/// A latency objective, `--slo 'p99<=5ms'`: a percentile (p50 … p99.99), `<` or `<=`, and
/// a latency in `us` (or `µs`), `ms` or `s`.
public struct LatencyTarget: Sendable, Equatable, CustomStringConvertible {
    /// The percentile, 0 < p < 100.
    public var percentile: Double
    /// `<=` rather than `<`.
    public var inclusive: Bool
    /// The bound in microseconds.
    public var microseconds: Double
    /// As written, for reports.
    public let description: String

    /// Parses `p99<=5ms`, `p99.9 < 800us`, `p50<1s`; the message says what is wrong.
    public init(parsing text: String) throws(BenchError) {
        let spec = text.filter { !$0.isWhitespace }
        let usage = "write it like p99<=5ms: a percentile p50 … p99.99, < or <=, a number and us, ms or s"
        guard spec.first == "p" || spec.first == "P", let operatorStart = spec.firstIndex(where: { $0 == "<" }) else {
            throw BenchError("--slo '\(text)': \(usage)")
        }
        guard let percentile = Double(spec[spec.index(after: spec.startIndex)..<operatorStart]), percentile > 0, percentile < 100 else {
            throw BenchError("--slo '\(text)': the percentile must be above 0 and below 100 (\(usage))")
        }
        var rest = spec[spec.index(after: operatorStart)...]
        inclusive = rest.first == "="
        if inclusive { rest = rest.dropFirst() }
        let units: [(String, Double)] = [("us", 1), ("µs", 1), ("ms", 1000), ("s", 1_000_000)]
        guard let (suffix, scale) = units.first(where: { rest.hasSuffix($0.0) }),
              let number = Double(rest.dropLast(suffix.count)), number > 0, number.isFinite else {
            throw BenchError("--slo '\(text)': the latency needs a unit, us, ms or s (\(usage))")
        }
        self.percentile = percentile
        microseconds = number * scale
        description = "p\(Self.trimmed(percentile))\(inclusive ? "<=" : "<")\(Self.trimmed(number))\(suffix)"
    }

    /// The latency at the percentile in a run, in microseconds, counting every request
    /// that failed (an error) or never left (an open-loop schedule the client fell behind)
    /// as slower than any bound; nil when those alone are more than the percentile
    /// allows. Uses the run's whole histogram (from the intended send time).
    public func value(in result: BenchResult) -> Double? {
        guard let histogram = result.record?.latency.corrected, histogram.totalCount > 0 else { return nil }
        let answered = Double(histogram.totalCount)
        let failed = Double(result.errors.total + Self.unsent(result))
        let allowed = 1 - percentile / 100
        guard failed / (answered + failed) < allowed else { return nil }
        let within = Swift.min(100, percentile * (answered + failed) / answered)
        return Double(histogram.valueAtPercentile(within)) / 1000
    }

    /// True when `result` meets the target.
    public func isMet(by result: BenchResult) -> Bool {
        guard let value = value(in: result) else { return false }
        return inclusive ? value <= microseconds : value < microseconds
    }

    /// Open loop: requests the schedule held for the window but never sent, because the
    /// server (or the depth) held the client back. The connections' offsets within one
    /// interval make the count uncertain by one request each.
    static func unsent(_ result: BenchResult) -> Int {
        guard let rate = result.rate, result.mode == .requests else { return 0 }
        let scheduled = Int((rate * result.durationSeconds).rounded(.down))
        return Swift.max(0, scheduled - result.sent - result.connections)
    }

    static func trimmed(_ value: Double) -> String {
        value == value.rounded() ? String(Int64(value)) : String(value)
    }
}
