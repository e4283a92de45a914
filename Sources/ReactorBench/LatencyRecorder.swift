import Histogram

/// Latencies in nanoseconds, twice: from each request's intended send time (corrected
/// for coordinated omission) and from its actual send time (uncorrected). In closed loop
/// the two are the same and only the first is recorded.
public struct LatencyRecorder: Sendable {
    /// From the intended send time.
    public private(set) var corrected: Histogram<UInt64>
    /// From the actual send time (open loop only; empty in closed loop).
    public private(set) var uncorrected: Histogram<UInt64>
    /// The largest value tracked; longer latencies are recorded as this.
    public let highestTrackable: UInt64

    /// Histograms tracking 1 ns to `highestTrackable` ns with 3 significant digits.
    public init(highestTrackable: UInt64) {
        self.highestTrackable = Swift.max(highestTrackable, 1_000_000)
        corrected = Histogram(lowestDiscernibleValue: 1, highestTrackableValue: self.highestTrackable, numberOfSignificantValueDigits: .three)
        uncorrected = corrected
    }

    /// Records one closed-loop latency.
    @inline(__always)
    mutating func record(_ nanoseconds: UInt64) {
        corrected.record(Swift.min(nanoseconds, highestTrackable))
    }

    /// Records one open-loop latency, both ways.
    @inline(__always)
    mutating func record(corrected fromIntended: UInt64, uncorrected fromSent: UInt64) {
        corrected.record(Swift.min(fromIntended, highestTrackable))
        uncorrected.record(Swift.min(fromSent, highestTrackable))
    }

    /// Adds another recorder's values.
    public mutating func add(_ other: LatencyRecorder) {
        corrected.add(other.corrected)
        uncorrected.add(other.uncorrected)
    }
}

/// Latency percentiles in microseconds, as the report and the JSON show them.
public struct LatencySummary: Sendable, Equatable, Codable {
    /// The median.
    public var p50: Double
    /// The 90th percentile.
    public var p90: Double
    /// The 99th percentile.
    public var p99: Double
    /// The 99.9th percentile.
    public var p999: Double
    /// The 99.99th percentile.
    public var p9999: Double
    /// The largest latency recorded.
    public var max: Double

    /// The percentiles of a histogram of nanoseconds (all zero when it is empty).
    public init(_ histogram: Histogram<UInt64>) {
        func micro(_ nanoseconds: UInt64) -> Double { (Double(nanoseconds) / 100).rounded() / 10 }
        guard histogram.totalCount > 0 else {
            p50 = 0; p90 = 0; p99 = 0; p999 = 0; p9999 = 0; max = 0
            return
        }
        p50 = micro(histogram.valueAtPercentile(50))
        p90 = micro(histogram.valueAtPercentile(90))
        p99 = micro(histogram.valueAtPercentile(99))
        p999 = micro(histogram.valueAtPercentile(99.9))
        p9999 = micro(histogram.valueAtPercentile(99.99))
        max = micro(histogram.max)
    }
}
