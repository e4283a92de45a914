import Foundation
import Histogram

/// `reactor bench merge A.json B.json ...`: one result from runs on several load machines.
/// Counts add; latency comes from the sum of the runs' whole histograms (carried in each
/// run's JSON), never from averaging their percentiles; the rate is every request over
/// the span the runs covered together, from the earliest start of a measured window to
/// the latest end.
public struct BenchMerge: Sendable {
    /// One run as its JSON file gave it.
    public struct Run: Sendable {
        /// The JSON file it was read from.
        public var file: String
        /// The machine that ran it (its host name).
        public var machine: String
        /// The server it loaded.
        public var target: String
        /// Requests answered correctly in its measured window.
        public var requests: Int
        /// Its own requests per second.
        public var rps: Double
        /// When it actually started (Unix seconds).
        public var startedAt: Double
        /// How far its start was from the start asked for (`--start-at`), in seconds.
        public var startSkew: Double?
        /// The start of its measured window (Unix seconds).
        public var measureStart: Double
        /// The end of its measured window (Unix seconds).
        public var measureEnd: Double
    }

    /// The runs merged, in the order given.
    public var runs: [Run]
    /// The summed counts, in a fixed order (`requests`, `sent`, `errors`, ... `misses`).
    public var counts: [(String, Int)]
    /// Summed per-key counts (`error_kinds`, `status_codes`).
    public var countObjects: [(String, [(String, Int)])]
    /// The sum of the runs' latency histograms (nanoseconds; corrected for coordinated
    /// omission where a run was open loop).
    public var corrected: Histogram<UInt64>
    /// Nil unless every run was open loop.
    public var uncorrected: Histogram<UInt64>?
    /// Bytes sent and received by every run together.
    public var bytes: Double
    /// CPU seconds the load generators used together.
    public var clientCPUSeconds: Double
    /// The requested rates added up; nil unless every run was open loop.
    public var rate: Double?
    /// The protocol the runs spoke (they must agree).
    public var protocolName: String

    /// Integer figures that add across machines.
    static let summedKeys = [
        "requests", "sent", "errors", "in_flight_at_end", "answered_after_end", "warmup_errors", "connections", "threads", "hits", "misses",
    ]
    /// Objects of counts that add key by key.
    static let summedObjects = ["error_kinds", "status_codes"]

    /// The measured windows together: earliest start to latest end.
    public var span: Double { (runs.map(\.measureEnd).max() ?? 0) - (runs.map(\.measureStart).min() ?? 0) }
    /// How long every run was measuring at once (negative: some windows do not meet).
    public var overlap: Double { (runs.map(\.measureEnd).min() ?? 0) - (runs.map(\.measureStart).max() ?? 0) }
    /// The latest start less the earliest.
    public var startSpread: Double { (runs.map(\.startedAt).max() ?? 0) - (runs.map(\.startedAt).min() ?? 0) }
    /// Requests answered correctly, all runs together.
    public var requests: Int { counts.first { $0.0 == "requests" }?.1 ?? 0 }
    /// All requests over the span.
    public var rps: Double { span > 0 ? Double(requests) / span : 0 }

    /// Reads and merges the runs' JSON files; the message names the file and what is
    /// missing.
    public static func merge(files: [String]) throws(BenchError) -> BenchMerge {
        guard files.count >= 1 else { throw BenchError("merge needs at least one run's JSON file") }
        var runs: [Run] = []
        var sums = [String: Int]()
        var objectSums = [String: [String: Int]]()
        var corrected: Histogram<UInt64>?
        var uncorrected: Histogram<UInt64>?
        var allOpenLoop = true
        var bytes = 0.0
        var cpu = 0.0
        var rate = 0.0
        var protocols: Set<String> = []
        for file in files {
            guard let data = FileManager.default.contents(atPath: file),
                  let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw BenchError("\(file): cannot read it as a JSON object (a file written by reactor bench --json)")
            }
            guard let clock = object["clock"] as? [String: Any], let histogram = object["histogram"] as? [String: Any],
                  let started = clock["started_unix"] as? Double, let start = clock["measure_start_unix"] as? Double,
                  let end = clock["measure_end_unix"] as? Double else {
                throw BenchError("\(file): no clock and histogram: it was not written by a reactor bench that records them")
            }
            do throws(BenchError) {
                guard let decoded = try HistogramCoding.decode(jsonObject: histogram["corrected"]) else {
                    throw BenchError("no corrected histogram")
                }
                guard decoded.lowestDiscernibleValue == 1, decoded.numberOfSignificantValueDigits == .three else {
                    throw BenchError("not a histogram reactor bench writes (1 ns to its range, 3 digits)")
                }
                corrected = add(decoded, to: corrected)
                if allOpenLoop, let other = try HistogramCoding.decode(jsonObject: histogram["uncorrected"]),
                   other.lowestDiscernibleValue == 1, other.numberOfSignificantValueDigits == .three {
                    uncorrected = add(other, to: uncorrected)
                } else {
                    allOpenLoop = false
                    uncorrected = nil
                }
            } catch {
                throw BenchError("\(file): histogram: \(error.message)")
            }
            for key in summedKeys { if let value = object[key] as? Int { sums[key, default: 0] += value } }
            for key in summedObjects {
                guard let counts = object[key] as? [String: Any] else { continue }
                for (name, value) in counts { if let value = value as? Int { objectSums[key, default: [:]][name, default: 0] += value } }
            }
            let duration = object["duration_s"] as? Double ?? (end - start)
            bytes += (object["bytes_per_s"] as? Double ?? 0) * duration
            cpu += object["client_cpu_s"] as? Double ?? 0
            if let runRate = object["rate"] as? Double { rate += runRate } else { allOpenLoop = false }
            if let name = object["protocol"] as? String { protocols.insert(name) }
            runs.append(Run(
                file: file, machine: object["machine"] as? String ?? "?", target: object["target"] as? String ?? "?",
                requests: object["requests"] as? Int ?? 0, rps: object["rps"] as? Double ?? 0, startedAt: started,
                startSkew: clock["start_skew_s"] as? Double, measureStart: start, measureEnd: end))
        }
        return BenchMerge(
            runs: runs, counts: summedKeys.compactMap { key in sums[key].map { (key, $0) } },
            countObjects: summedObjects.compactMap { key in
                objectSums[key].map { (key, $0.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }) }
            },
            corrected: corrected!, uncorrected: allOpenLoop ? uncorrected : nil, bytes: bytes, clientCPUSeconds: cpu,
            rate: allOpenLoop ? rate : nil, protocolName: protocols.sorted().joined(separator: "+"))
    }

    /// `histogram` added to `sum`, in a histogram wide enough for both.
    private static func add(_ histogram: Histogram<UInt64>, to sum: Histogram<UInt64>?) -> Histogram<UInt64> {
        let highest = Swift.max(histogram.highestTrackableValue, sum?.highestTrackableValue ?? 0)
        var out = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: highest, numberOfSignificantValueDigits: .three)
        if let sum { out.add(sum) }
        out.add(histogram)
        return out
    }

    /// The merged JSON: the figures of a run where they add up, the runs, the windows.
    public var jsonObject: [(String, Any?)] {
        func latency(_ histogram: Histogram<UInt64>) -> [(String, Any?)] {
            let summary = LatencySummary(histogram)
            return [("p50", summary.p50), ("p90", summary.p90), ("p99", summary.p99), ("p999", summary.p999),
                    ("p9999", summary.p9999), ("max", summary.max)]
        }
        let targets = Array(Set(runs.map(\.target))).sorted()
        var object: [(String, Any?)] = [
            ("merged_runs", runs.count), ("target", targets.joined(separator: ",")), ("protocol", protocolName), ("rate", rate),
            ("span_s", span.rounded(toPlaces: 6)), ("overlap_s", overlap.rounded(toPlaces: 6)),
            ("start_spread_s", startSpread.rounded(toPlaces: 6)),
            ("rps", rps.rounded(toPlaces: 1)), ("bytes_per_s", span > 0 ? (bytes / span).rounded() : 0),
            ("latency_us", latency(corrected)), ("latency_uncorrected_us", latency(uncorrected ?? corrected)),
            ("client_cpu_s", clientCPUSeconds.rounded(toPlaces: 3)),
        ]
        object += counts.map { ($0.0, $0.1) }
        object += countObjects.map { ($0.0, $0.1.map { ($0.0, $0.1) as (String, Any?) }) }
        object.append(("runs", runs.map { run -> [(String, Any?)] in
            [("file", run.file), ("machine", run.machine), ("target", run.target), ("requests", run.requests), ("rps", run.rps),
             ("started_unix", run.startedAt), ("start_skew_s", run.startSkew),
             ("measure_start_unix", run.measureStart), ("measure_end_unix", run.measureEnd)]
        }))
        // As a run's: so that a merged result merges again, spanning what its runs spanned.
        object.append(("machine", Array(Set(runs.map(\.machine))).sorted().joined(separator: ",")))
        object.append(("clock", [
            ("start_at", nil), ("started_unix", runs.map(\.startedAt).min()), ("start_skew_s", nil),
            ("measure_start_unix", runs.map(\.measureStart).min()), ("measure_end_unix", runs.map(\.measureEnd).max()),
        ] as [(String, Any?)]))
        object.append(("histogram", [
            ("unit", "ns"), ("encoding", "HdrHistogram V2 compressed, base64"),
            ("corrected", HistogramCoding.jsonObject(corrected)), ("uncorrected", uncorrected.map { HistogramCoding.jsonObject($0) }),
        ] as [(String, Any?)]))
        return object
    }

    /// The merged result as the JSON `--json` writes.
    public var json: String { JSONText.render(jsonObject) + "\n" }

    /// The report: the runs, then the merged throughput and latency.
    public var text: String {
        var lines = ["merged \(runs.count) run(s):"]
        for run in runs {
            let skew = run.startSkew.map { String(format: ", started %+.3f s from --start-at", $0) } ?? ""
            lines.append("  \(run.file): \(run.machine) -> \(run.target), \(run.requests) responses, \(BenchSummary.number(run.rps)) req/s\(skew)")
        }
        lines.append(String(format: "  windows: %.3f s together, %.3f s all at once; starts %.3f s apart", span, overlap, startSpread))
        let errors = counts.first { $0.0 == "errors" }?.1 ?? 0
        lines.append("  requests/s: \(BenchSummary.number(rps))   responses: \(requests)   errors: \(errors)")
        let summary = LatencySummary(corrected)
        lines.append("  latency µs   " + ["p50", "p90", "p99", "p99.9", "p99.99", "max"].map { $0.leftPadded(10) }.joined())
        lines.append("  " + (uncorrected == nil ? "           " : "corrected  ") + " "
            + [summary.p50, summary.p90, summary.p99, summary.p999, summary.p9999, summary.max].map { BenchSummary.fixed($0, 1).leftPadded(10) }.joined())
        if let uncorrected {
            let other = LatencySummary(uncorrected)
            lines.append("  uncorrected  " + [other.p50, other.p90, other.p99, other.p999, other.p9999, other.max]
                .map { BenchSummary.fixed($0, 1).leftPadded(10) }.joined())
        }
        return lines.joined(separator: "\n")
    }
}
