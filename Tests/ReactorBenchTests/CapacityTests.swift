import Foundation
import Histogram
import ReactorBench
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension BenchTests {
    /// Issue 10's capacity search, histogram encoding and log, and merge (the command's
    /// side is in ReactorCommandTests' CapacityCommandTests).
    @Suite struct CapacityTests {
        private func options(port: Int) -> BenchOptions {
            var options = BenchOptions()
            options.port = port
            options.protocol = .line
            options.size = 16
            options.connections = 4
            options.warmup = .milliseconds(200)
            options.duration = .seconds(1)
            return options
        }

        @Test func latencyTargetsParseAsTheIssueSpellsThem() throws {
            let target = try LatencyTarget(parsing: "p99<=5ms")
            #expect(target.percentile == 99 && target.inclusive && target.microseconds == 5000)
            let strict = try LatencyTarget(parsing: "p99.99 < 800us")
            #expect(strict.percentile == 99.99 && !strict.inclusive && strict.microseconds == 800)
            #expect(try LatencyTarget(parsing: "p50<1s").microseconds == 1_000_000)
            #expect(try LatencyTarget(parsing: "p90<=250µs").microseconds == 250)
            #expect(target.description == "p99<=5ms")
            for bad in ["99<5ms", "p99>5ms", "p100<5ms", "p0<1ms", "p99<5", "p99<fast", "p99<=-1ms", ""] {
                #expect(throws: BenchError.self, "\(bad)") { try LatencyTarget(parsing: bad) }
            }
            #expect(throws: BenchError.self) { try SLOSearch.Plan(sweep: "1000:500:100") }
            #expect(try SLOSearch.Plan(sweep: "100:300:100") == .sweep(from: 100, to: 300, step: 100))
        }

        @Test func histogramsSurviveTheirEncoding() throws {
            var histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 80_000_000_000, numberOfSignificantValueDigits: .three)
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<20_000 { histogram.record(UInt64.random(in: 10_000...3_000_000, using: &generator)) }
            histogram.record(1)
            histogram.record(70_000_000_000, count: 3)
            // The encoding keeps buckets; the exact extremes, which percentiles are clamped
            // to, travel beside it.
            let decoded = try HistogramCoding.decode(
                HistogramCoding.encode(histogram), exactMin: histogram.min, exactMax: histogram.maxRecorded)
            #expect(decoded.totalCount == histogram.totalCount)
            #expect(decoded.min == histogram.min && decoded.maxRecorded == histogram.maxRecorded)
            for percentile in [0.0, 1, 50, 90, 99, 99.9, 99.99, 100] {
                #expect(decoded.valueAtPercentile(percentile) == histogram.valueAtPercentile(percentile), "p\(percentile)")
            }
            #expect(Array(decoded.recordedValues()).map(\.count) == Array(histogram.recordedValues()).map(\.count))
            let empty = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 1_000_000, numberOfSignificantValueDigits: .three)
            #expect(try HistogramCoding.decode(HistogramCoding.encode(empty)).totalCount == 0)
            #expect(throws: BenchError.self) { try HistogramCoding.decode("bm90IGEgaGlzdG9ncmFt") }
        }

        @Test(.enabled(if: hdrhAvailable || runningInCI, "python3 cannot import hdrh and pip could not install PyPI's hdrhistogram"))
        func pythonsHdrHistogramReadsTheIntervalLogAndTheRunsHistogram() throws {
            #expect(hdrhAvailable, "CI is set but PyPI's hdrhistogram is not installed: python3 -m pip install hdrhistogram")
            let result = try withEchoServer { server in
                var options = options(port: server.port)
                options.rate = 2000
                options.duration = .milliseconds(2500)
                options.recordsIntervals = true
                return try BenchRunner.run(options)
            }
            let record = try #require(result.record)
            #expect(result.requests > 4000)
            #expect(record.intervals.map(\.length) == [1, 1, 0.5])
            #expect(record.intervals.reduce(0) { $0 + $1.histogram.totalCount } == UInt64(result.requests))

            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hdrlog-\(getpid())").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try BenchFiles.write(HistogramLog.text(record, target: result.target), to: "\(folder)/run.hlog")
            try BenchFiles.write(result.json, to: "\(folder)/run.json")
            let script = packageRoot.appendingPathComponent("Tests/Interop/hdrh_read_log.py").path
            let child = try ChildProcess("/usr/bin/env", ["python3", script, "\(folder)/run.hlog", "\(folder)/run.json"])
            #expect(child.waitForExit(timeout: .seconds(30)) == 0, "\(child.standardError)")
            let read = try #require(try JSONSerialization.jsonObject(with: Data(child.standardOutput.utf8)) as? [String: Any])

            #expect(abs((read["start_time"] as? Double ?? 0) - record.measureStart) < 0.001)
            let intervals = try #require(read["intervals"] as? [[String: Any]])
            #expect(intervals.count == 3)
            for (index, (interval, ours)) in zip(intervals, record.intervals).enumerated() {
                #expect(abs((interval["start"] as? Double ?? 0) - (record.measureStart + ours.start)) < 0.001, "interval \(index)")
                #expect(abs((interval["end"] as? Double ?? 0) - (record.measureStart + ours.start + ours.length)) < 0.001)
                #expect(interval["count"] as? Int == Int(ours.histogram.totalCount), "interval \(index)")
                // The same buckets and counts as our own reading of the line (microseconds),
                // and the same mean, within the 3 digits both keep, as the seconds the
                // run measured. (Percentiles are not compared: the implementations round
                // a percentile's rank differently, which moves a sparse tail's p99.)
                let decoded = try HistogramCoding.decode(HistogramCoding.encode(ours.histogram, divisor: 1000))
                let buckets = (interval["buckets"] as? [[Int]]) ?? []
                #expect(buckets.map { $0[1] } == decoded.recordedValues().map { Int($0.count) }, "interval \(index)")
                #expect(zip(buckets, decoded.recordedValues()).allSatisfy { abs($0.0[0] - Int($0.1.value)) <= Swift.max(1, $0.0[0] / 1000) })
                let mean = interval["mean"] as? Double ?? 0
                #expect(abs(mean - ours.histogram.mean / 1000) <= Swift.max(1, mean / 200), "interval \(index) mean \(mean) µs")
            }
            let run = try #require(read["run"] as? [String: Any])
            #expect(run["count"] as? Int == result.requests)
            let p50 = Double(record.latency.corrected.valueAtPercentile(50))
            #expect(abs((run["p50"] as? Double ?? 0) - p50) <= p50 / 500, "p50 \(run["p50"] ?? "-") ns against \(p50)")
            #expect(run["max"] as? Int == Int(record.latency.corrected.max))
        }

        @Test func mergeAddsHistogramsAndCountsOfRunsStartedTogether() throws {
            let startAt = Date().timeIntervalSince1970 + 1
            let results = Locked<[BenchResult]>([])
            try withEchoServer { server in
                let group = DispatchGroup()
                for rate in [1000.0, 3000] {
                    var options = options(port: server.port)
                    options.rate = rate
                    options.startAt = startAt
                    options.warmup = .milliseconds(100)
                    // A thread each: the global queue may run blocking work one at a time
                    // on a 2-core machine, which would start the second run late.
                    group.enter()
                    Thread { [options] in
                        if let result = try? BenchRunner.run(options) { results.update { $0.append(result) } }
                        group.leave()
                    }.start()
                }
                #expect(group.wait(timeout: .now() + 15) == .success)
            }
            let runs = results.value
            try #require(runs.count == 2)
            for run in runs {
                let skew = try #require(run.record?.startSkew)
                // Late by the time a sleeping thread takes to wake, which a loaded machine
                // stretches; never early.
                #expect(skew >= 0 && skew < 0.5, "started \(skew) s after --start-at")
            }

            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("merge-\(getpid())").path
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let files = try runs.enumerated().map { index, run in
                let path = "\(folder)/run\(index).json"
                try BenchFiles.write(run.json, to: path)
                return path
            }
            let merged = try BenchMerge.merge(files: files)
            let requests = runs.reduce(0) { $0 + $1.requests }
            #expect(merged.requests == requests)
            #expect(merged.corrected.totalCount == UInt64(requests))
            var sum = runs[0].record!.latency.corrected
            sum.add(runs[1].record!.latency.corrected)
            #expect(LatencySummary(merged.corrected) == LatencySummary(sum), "percentiles of the added histograms, exactly")
            #expect(merged.uncorrected != nil && merged.rate == 4000)
            let first = runs.map { $0.record!.measureStart }.min()!
            let last = runs.map { $0.record!.measureEnd }.max()!
            #expect(abs(merged.span - (last - first)) < 1e-5)
            #expect(abs(merged.rps - Double(requests) / (last - first)) < 1)
            #expect(merged.overlap > 0.5 && merged.startSpread < 0.5, "windows \(merged.span) s together, \(merged.overlap) s at once")
            let expected = 4000 * 1.0 / merged.span
            #expect(merged.rps > expected * 0.9 && merged.rps < expected * 1.03, "two runs at 1000 and 3000 req/s for 1 s: \(merged.rps)")
        }

        /// The search against a server whose capacity is known: serial, 1 ms a request,
        /// so 1000 requests/s. A generous bound (the machine runs other tests beside it);
        /// docs/performance.md has the precise figure from `Benchmarks/slo-bench.sh`.
        @Test func theSearchFindsTheCapacityOfASerialServer() throws {
            var found: Double?
            var report: SLOReport?
            for _ in 0..<3 {
                report = try withSerialServer(serviceTime: .milliseconds(1)) { server in
                    var options = options(port: server.port)
                    options.depth = 16
                    options.warmup = .milliseconds(300)
                    options.duration = .milliseconds(1500)
                    let search = SLOSearch(target: try LatencyTarget(parsing: "p50<=10ms"), plan: .search, options: options)
                    return try search.run { options throws(BenchError) in try BenchRunner.run(options) }
                }
                found = report?.found?.rate
                if let found, (800...1100).contains(found) { break }
            }
            let steps = try #require(report).steps
            #expect(steps.first?.phase == .probe && steps.first?.rate == nil)
            #expect(abs((steps.first?.result.rps ?? 0) - 1000) < 100, "the probe saturates the server: \(steps.first?.result.rps ?? 0)")
            let rate = try #require(found, "\(report!.text)")
            #expect((800...1100).contains(rate), "found \(rate) req/s for a capacity of 1000\n\(report!.text)")
            // Bisected to 3 %: a step that missed sits just above the found rate.
            let missed = steps.compactMap { $0.meetsTarget == false ? $0.rate : nil }.filter { $0 > rate }.min()
            #expect(missed.map { ($0 - rate) / rate <= 0.031 } == true, "\(report!.text)")
            let verdict = report!.text.split(separator: "\n").last.map(String.init) ?? ""
            #expect(verdict == report!.verdict)
            let named = verdict.dropFirst("found rate: ".count).prefix { $0 != " " }.filter { $0 != "," }
            #expect(verdict.hasPrefix("found rate: ") && Double(named) == rate, "\(verdict)")
        }

    }
}

/// True when `python3` can import PyPI's `hdrhistogram` (`hdrh`), after installing it
/// with pip if it was missing; false when pip cannot reach PyPI.
let hdrhAvailable: Bool = {
    func succeeds(_ arguments: [String], within seconds: Int) -> Bool {
        guard let child = try? ChildProcess("/usr/bin/env", arguments) else { return false }
        return child.waitForExit(timeout: .seconds(seconds)) == 0
    }
    if succeeds(["python3", "-c", "import hdrh.histogram, hdrh.log"], within: 30) { return true }
    return succeeds(["python3", "-m", "pip", "install", "--quiet", "hdrhistogram"], within: 120)
        && succeeds(["python3", "-c", "import hdrh.histogram, hdrh.log"], within: 30)
}()

let runningInCI: Bool = !(ProcessInfo.processInfo.environment["CI"] ?? "").isEmpty
