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

    /// Adds the latencies counted per request (``LatencyCounts``), and empties the counts.
    mutating func add(corrected fromIntended: inout LatencyCounts, uncorrected fromSent: inout LatencyCounts?) {
        fromIntended.add(to: &corrected)
        fromSent?.add(to: &uncorrected)
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

/// Latencies counted per request in plain memory, in the bucket layout of a
/// ``LatencyRecorder``'s histograms (HdrHistogram, 1 ns to `highestTrackable`, 3
/// significant digits), and added to a histogram only when it is read: by the timers of
/// the progress line and the histogram log (once a second each) and at the end. The histogram's own
/// record, with its range checks, a uniqueness check of its counts array (a call) and
/// the shift checks of its index arithmetic, cost 48 instructions per request more
/// (callgrind, Redis GET: the client's handling of a read 609 instructions per response
/// with it, 561 with these counts); the counts and the exact minimum and maximum the
/// histogram ends with are the same.
struct LatencyCounts {
    /// The histograms' layout for 3 significant digits from 1 ns: 2,048 sub-buckets per
    /// bucket (the lower half of each bucket past the first lies in the one before).
    private static let subBucketHalfCountMagnitude = 10
    private static let leadingZeroCountBase = 53
    private static let subBucketMask: UInt64 = 2047

    private let counts: UnsafeMutablePointer<UInt64>
    private let length: Int
    private var minimum = UInt64.max
    private var maximum: UInt64 = 0
    /// The lowest and highest index counted since the last ``add(to:)``.
    private var lowestIndex = Int.max
    private var highestIndex = -1

    /// Counts for values up to `highestTrackable` (larger ones are the caller's to clamp).
    init(highestTrackable: UInt64) {
        length = LatencyCounts.index(of: highestTrackable) + 1
        counts = .allocate(capacity: length)
        counts.initialize(repeating: 0, count: length)
    }

    /// Frees the counts; the owner calls it once.
    func deallocate() {
        counts.deallocate()
    }

    /// The histogram's counts index for `value`.
    @inline(__always)
    static func index(of value: UInt64) -> Int {
        let bucket = leadingZeroCountBase &- (value | subBucketMask).leadingZeroBitCount
        return ((bucket &+ 1) &<< subBucketHalfCountMagnitude) &+ Int(truncatingIfNeeded: value &>> UInt64(bucket))
            &- (1 &<< subBucketHalfCountMagnitude)
    }

    /// The lowest value the histogram counts at `index`.
    static func value(at index: Int) -> UInt64 {
        var bucket = (index >> subBucketHalfCountMagnitude) - 1
        var subBucket = (index & ((1 << subBucketHalfCountMagnitude) - 1)) + (1 << subBucketHalfCountMagnitude)
        if bucket < 0 {
            subBucket -= 1 << subBucketHalfCountMagnitude
            bucket = 0
        }
        return UInt64(subBucket) << UInt64(bucket)
    }

    /// Counts `value`, at most the `highestTrackable` of ``init(highestTrackable:)``.
    @inline(__always)
    mutating func record(_ value: UInt64) {
        let index = LatencyCounts.index(of: value)
        counts[index] &+= 1
        if value < minimum { minimum = value }
        if value > maximum { maximum = value }
        if index < lowestIndex { lowestIndex = index }
        if index > highestIndex { highestIndex = index }
    }

    /// Adds what was counted to `histogram` (one of the layout above) and starts again
    /// from nothing.
    mutating func add(to histogram: inout Histogram<UInt64>) {
        guard highestIndex >= 0 else { return }
        for index in lowestIndex...highestIndex where counts[index] != 0 {
            histogram.record(LatencyCounts.value(at: index), count: counts[index])
            counts[index] = 0
        }
        // The exact extremes, as the histogram's own record keeps them: a count of none.
        histogram.record(minimum, count: 0)
        histogram.record(maximum, count: 0)
        minimum = .max
        maximum = 0
        lowestIndex = .max
        highestIndex = -1
    }
}
