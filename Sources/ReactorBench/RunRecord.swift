import Foundation
import Histogram
import ReactorCore

/// What a run keeps besides its summary figures so that runs from several load machines
/// can be made one (`reactor bench merge`): when it ran on the wall clock, and its whole
/// latency histograms (percentiles cannot be averaged; histograms add exactly).
public struct RunRecord: Sendable {
    /// The host name of the load machine.
    public var machine: String
    /// `--start-at` as given (Unix seconds), if it was.
    public var requestedStart: Double?
    /// When this machine actually started the run (Unix seconds): connects began then.
    public var actualStart: Double
    /// The measured window on the wall clock (Unix seconds).
    public var measureStart: Double
    /// The end of the measured window (Unix seconds).
    public var measureEnd: Double
    /// The run's latencies in nanoseconds, all threads.
    public var latency: LatencyRecorder
    /// True in open loop: `latency.uncorrected` holds the latencies from the actual send.
    public var isOpenLoop: Bool
    /// With ``BenchOptions/recordsIntervals``: the corrected latencies of each second of
    /// the measured window (the last may be shorter), each with its start in seconds from
    /// the window's start.
    public var intervals: [(start: Double, length: Double, histogram: Histogram<UInt64>)] = []

    /// How late this machine started against `--start-at`, in seconds.
    public var startSkew: Double? { requestedStart.map { actualStart - $0 } }

    /// The keys the run's JSON ends with.
    var jsonObject: [(String, Any?)] {
        [
            ("machine", machine),
            ("clock", [
                ("start_at", requestedStart), ("started_unix", actualStart.rounded(toPlaces: 6)),
                ("start_skew_s", startSkew.map { $0.rounded(toPlaces: 6) }),
                ("measure_start_unix", measureStart.rounded(toPlaces: 6)), ("measure_end_unix", measureEnd.rounded(toPlaces: 6)),
            ] as [(String, Any?)]),
            ("histogram", [
                ("unit", "ns"), ("encoding", "HdrHistogram V2 compressed, base64"),
                ("corrected", HistogramCoding.jsonObject(latency.corrected)),
                ("uncorrected", isOpenLoop ? HistogramCoding.jsonObject(latency.uncorrected) : nil),
            ] as [(String, Any?)]),
        ]
    }

    /// The monotonic time (`Reactor/now`) a run of `options` starts at: `--start-at` on
    /// the wall clock, or at once; never sooner than 100 ms from now, the time the
    /// workers need to set up.
    static func scheduledStart(_ options: BenchOptions) -> UInt64 {
        let soonest = Reactor.now + 100_000_000
        guard let startAt = options.startAt else { return soonest }
        let ahead = startAt - Date().timeIntervalSince1970
        guard ahead > 0 else { return soonest }
        return Swift.max(soonest, Reactor.now + UInt64(ahead * 1e9))
    }

    /// A monotonic time (`Reactor/now`) on the wall clock, in Unix seconds.
    static func unixTime(ofMonotonic time: UInt64) -> Double {
        let now = Reactor.now
        let wall = Date().timeIntervalSince1970
        return wall - (Double(now) - Double(time)) / 1e9
    }

    /// The per-second histograms of a run from its workers' cumulative snapshots: each
    /// worker's snapshot `k` holds what it recorded up to `k + 1` seconds into the
    /// window, and its final histogram everything.
    static func intervals(
        snapshots: [[Histogram<UInt64>]], finals: [Histogram<UInt64>], duration: Double, highestTrackable: UInt64
    ) -> [(start: Double, length: Double, histogram: Histogram<UInt64>)] {
        let empty = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: highestTrackable, numberOfSignificantValueDigits: .three)
        let boundaries = Int(duration.rounded(.up)) - 1
        guard boundaries >= 0 else { return [] }
        var cumulative: [Histogram<UInt64>] = []
        for k in 0...boundaries {
            var sum = empty
            for (worker, final) in finals.enumerated() {
                let own = snapshots[worker]
                // A snapshot the worker missed (its timer came after its end) is its final.
                sum.add(k < boundaries && k < own.count ? own[k] : final)
            }
            cumulative.append(sum)
        }
        var out: [(start: Double, length: Double, histogram: Histogram<UInt64>)] = []
        var previous = empty
        for (k, histogram) in cumulative.enumerated() {
            let start = Double(k)
            out.append((start, Swift.min(1, duration - start), difference(histogram, minus: previous)))
            previous = histogram
        }
        return out
    }

    /// `later - earlier`, for a cumulative histogram and an earlier snapshot of it.
    static func difference(_ later: Histogram<UInt64>, minus earlier: Histogram<UInt64>) -> Histogram<UInt64> {
        var out = Histogram<UInt64>(
            lowestDiscernibleValue: later.lowestDiscernibleValue, highestTrackableValue: later.highestTrackableValue,
            numberOfSignificantValueDigits: later.numberOfSignificantValueDigits)
        for bucket in later.recordedValues() {
            let before = earlier.totalCount > 0 ? earlier.countForValue(bucket.value) : 0
            if bucket.count > before { _ = out.record(bucket.value, count: bucket.count - before) }
        }
        return out
    }
}

extension BenchWorker {
    /// Snapshots the corrected histogram at every whole second of the measured window
    /// before its end (the final histogram closes the last interval): the per-second
    /// histograms of `--histogram-log` are their differences. Nothing is added per
    /// request.
    func scheduleIntervalSnapshots() -> ReactorTimer {
        let first = schedule.measureStart + 1_000_000_000
        let boundaries = Int((Double(schedule.end - schedule.measureStart) / 1e9).rounded(.up)) - 1
        return reactor.schedule(
            after: .nanoseconds(Int64(first - Swift.min(first, Reactor.now))), repeating: .seconds(1)
        ) { [self] _ in
            guard intervalSnapshots.count < boundaries else { return }
            flushLatencies()
            intervalSnapshots.append(latency.corrected)
        }
    }
}
