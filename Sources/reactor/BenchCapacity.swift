import ArgumentParser
import Foundation
import ReactorBench

/// The options of `reactor bench` for finding capacity and for runs from several load
/// machines (docs/bench.md, "Finding capacity" and "More than one load machine").
struct CapacityOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Search for the highest open-loop rate meeting a latency target, e.g. 'p99<=5ms' (p50 … p99.99; us, ms, s); --warmup and --duration apply to each step.",
        valueName: "target"))
    var slo: String?

    @Option(help: ArgumentHelp("Run fixed open-loop rates FROM:TO:STEP instead of the search (with or without --slo).", valueName: "from:to:step"))
    var sweep: String?

    @Option(help: ArgumentHelp("With --slo or --sweep: write the throughput/latency curve, DIR/latency-curve.svg.", valueName: "dir"))
    var out: String?

    @Option(help: ArgumentHelp(
        "Write the HdrHistogram interval log (V2, one interval per second of the measured window, microseconds).", valueName: "file"))
    var histogramLog: String?

    @Option(help: ArgumentHelp("Start at this wall-clock time (Unix seconds), to start runs on several machines together.", valueName: "unix-seconds"))
    var startAt: Double?

    var searches: Bool { slo != nil || sweep != nil }

    func validate() throws {
        do {
            if let slo { _ = try LatencyTarget(parsing: slo) }
            if let sweep { _ = try SLOSearch.Plan(sweep: sweep) }
        } catch {
            throw ValidationError(error.message)
        }
        if out != nil, !searches { throw ValidationError("--out is where --slo and --sweep write their curve: give one of them") }
    }

    /// Checks against the run's own options, and sets what these options change.
    func apply(to options: inout BenchOptions) throws {
        if searches, options.mode != .requests { throw ValidationError("--slo and --sweep need --mode requests") }
        if sweep != nil, options.rate != nil { throw ValidationError("--sweep chooses the rates: leave out --rate") }
        options.startAt = startAt
        options.recordsIntervals = histogramLog != nil
    }

    /// Writes `--histogram-log` for a run.
    func writeHistogramLog(_ result: BenchResult) throws {
        guard let histogramLog, let record = result.record else { return }
        try BenchFiles.write(HistogramLog.text(record, target: result.target), to: histogramLog)
    }

    /// Runs the search or sweep: a line per step on stderr, the table and the found rate
    /// on stdout (the last line), the JSON with its `slo` object, the curve. Fails when a
    /// target was given and no rate met it.
    func search(_ options: BenchOptions, quiet: Bool, json: String?) throws {
        let target = try slo.map { text throws(BenchError) in try LatencyTarget(parsing: text) }
        let plan = try sweep.map { text throws(BenchError) in try SLOSearch.Plan(sweep: text) } ?? .search
        var search = SLOSearch(target: target, plan: plan, options: options)
        // The later steps need --start-at no more: they start when the one before ends.
        search.options.startAt = nil
        var first = true
        let report = try search.run(stepDone: { step in
            guard !quiet else { return }
            let rate = step.rate.map { "\(Int($0)) req/s" } ?? "closed-loop probe"
            let verdict = step.meetsTarget.map { $0 ? "meets" : "misses" } ?? "-"
            let latency = step.value.map { String(format: "%.3f ms", $0 / 1000) } ?? (step.rate == nil ? "-" : "too slow")
            FileHandle.standardError.write(Data(
                "step \(step.phase.rawValue) \(rate): \(Int(step.result.rps.rounded())) req/s achieved, \(latency), \(step.result.errors.total) errors: \(verdict)\n".utf8))
        }) { stepOptions throws(BenchError) in
            var stepOptions = stepOptions
            if first { stepOptions.startAt = options.startAt }
            first = false
            let progress = ProgressPrinter(enabled: !quiet)
            defer { progress.finish() }
            return try BenchRunner.run(stepOptions, progress: quiet ? nil : { progress.show($0) })
        }
        if let json { try BenchFiles.write(report.json, to: json) }
        if let out { try BenchFiles.write(report.svg, to: "\(out)/latency-curve.svg") }
        if let reported = report.reported?.result { try writeHistogramLog(reported) }
        print(report.text)
        if target != nil, report.found == nil { throw ExitCode(1) }
    }
}

struct BenchMergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Make one result of runs from several load machines (their --json files).",
        discussion: """
            Counts add, latency percentiles come from the sum of the runs' whole histograms \
            (never an average of percentiles), and the rate is every request over the span \
            the runs' measured windows covered together. Start the runs together with \
            --start-at; each file records when its run actually started.
            """
    )

    @Argument(help: "The runs' JSON files.")
    var files: [String]

    @Option(help: "Write the merged figures as JSON to this file.")
    var json: String?

    func run() throws {
        do {
            let merged = try BenchMerge.merge(files: files)
            print(merged.text)
            if let json { try BenchFiles.write(merged.json, to: json) }
        } catch {
            throw CommandFailure(message: error.message)
        }
    }
}
