import Foundation

/// The capacity search of `reactor bench --slo`: open-loop runs at chosen rates, each
/// with the options' own warmup and duration, to find the highest rate whose latency
/// (from the intended send time) meets a ``LatencyTarget``.
///
/// Without `--rate`, a closed-loop probe first measures what the connections can get
/// through at most; the search starts there (with `--rate`, there). It then brackets
/// (doubling after a step that meets the target, halving after one that does not, once a
/// second run at the same rate has missed too) and
/// bisects between the highest rate that met it and the lowest that did not until they
/// are within `precision` (3 %) of each other. `--sweep` runs fixed rates instead.
public struct SLOSearch {
    /// How the rates are chosen.
    public enum Plan: Sendable, Equatable {
        /// Probe, bracket, bisect.
        case search
        /// `FROM:TO:STEP`: every rate from `from` to `to`.
        case sweep(from: Double, to: Double, step: Double)

        /// Parses `FROM:TO:STEP` (requests per second).
        public init(sweep text: String) throws(BenchError) {
            let parts = text.split(separator: ":").map { Double($0) }
            guard parts.count == 3, let from = parts[0], let to = parts[1], let step = parts[2],
                  from > 0, to >= from, step > 0, from.isFinite, to.isFinite else {
                throw BenchError("--sweep '\(text)': write FROM:TO:STEP in requests per second, e.g. 1000:20000:1000")
            }
            guard (to - from) / step < 1000 else { throw BenchError("--sweep '\(text)': more than 1000 steps") }
            self = .sweep(from: from, to: to, step: step)
        }

        var rates: [Double] {
            guard case .sweep(let from, let to, let step) = self else { return [] }
            return stride(from: from, through: to + step * 1e-9, by: step).map { $0 }
        }
    }

    /// The objective; a sweep may go without one (a curve, nothing found).
    public var target: LatencyTarget?
    /// How rates are chosen: a search for the highest that meets the target, or a sweep.
    public var plan: Plan
    /// The options every step starts from (the rate is the search's).
    public var options: BenchOptions
    /// Bisection stops when the bracket is this narrow, relative to its lower end.
    public var precision = 0.03
    /// A bound on the search's steps whatever the server does.
    public var maximumSteps = 30

    /// A search or sweep over `options`, each step a run at the rate the plan picks.
    public init(target: LatencyTarget?, plan: Plan, options: BenchOptions) {
        self.target = target
        self.plan = plan
        self.options = options
    }

    /// Runs the steps through `runStep` (``BenchRunner/run(_:progress:)`` in the
    /// command), telling `stepDone` about each as it ends.
    public func run(
        stepDone: (SLOStep) -> Void = { _ in }, runStep: (BenchOptions) throws(BenchError) -> BenchResult
    ) throws(BenchError) -> SLOReport {
        var steps: [SLOStep] = []
        func step(_ phase: SLOStep.Phase, rate: Double?) throws(BenchError) -> SLOStep {
            var stepOptions = options
            stepOptions.rate = rate
            let result = try runStep(stepOptions)
            let done = SLOStep(phase: phase, rate: rate, result: result, target: rate == nil ? nil : target)
            steps.append(done)
            stepDone(done)
            return done
        }

        switch plan {
        case .sweep:
            for rate in plan.rates { _ = try step(.sweep, rate: rate.rounded()) }
        case .search:
            guard let target else { throw BenchError("the search needs a target (--slo)") }
            var rate: Double
            if let given = options.rate {
                rate = given
            } else {
                let probe = try step(.probe, rate: nil)
                guard probe.result.requests > 0 else {
                    return SLOReport(target: target, plan: plan, steps: steps, precision: precision)
                }
                rate = probe.result.rps
            }
            var highestMet: Double?
            var lowestMissed: Double?
            while steps.count < maximumSteps {
                rate = rate.rounded()
                let phase: SLOStep.Phase = highestMet != nil && lowestMissed != nil ? .bisect : .bracket
                var met = try step(phase, rate: rate).meetsTarget == true
                // Before anything has met the target, a miss halves the rate: one stall of
                // the machine during one step would send the search far below the
                // capacity, so such a miss is run again and must repeat.
                if !met, highestMet == nil, steps.count < maximumSteps {
                    met = try step(.confirm, rate: rate).meetsTarget == true
                }
                if met {
                    highestMet = Swift.max(highestMet ?? 0, rate)
                } else {
                    lowestMissed = Swift.min(lowestMissed ?? .infinity, rate)
                }
                switch (highestMet, lowestMissed) {
                case (let low?, let high?):
                    guard (high - low) / low > precision, (high - low) >= 2 else { return report(steps) }
                    rate = (low + high) / 2
                case (let low?, nil):
                    rate = low * 2
                case (nil, let high?):
                    guard high >= 2 else { return report(steps) }
                    rate = high / 2
                case (nil, nil):
                    return report(steps)
                }
            }
        }
        return report(steps)
    }

    private func report(_ steps: [SLOStep]) -> SLOReport {
        SLOReport(target: target, plan: plan, steps: steps, precision: precision)
    }
}

/// One step of a search or sweep.
public struct SLOStep: Sendable {
    /// What the step was for.
    public enum Phase: String, Sendable {
        /// The closed-loop run that finds the rate to start from.
        case probe
        /// Doubling or halving the rate until one meets the target and one misses.
        case bracket
        /// Before any rate has met the target, a miss run again at the same rate before
        /// the rate halves (a stall of a shared machine is not the server's capacity).
        case confirm
        /// Halving the bracket between the highest rate that met the target and the
        /// lowest that missed it.
        case bisect
        /// One rate of a sweep.
        case sweep
    }

    /// What the step was for.
    public var phase: Phase
    /// The requested rate; nil for the closed-loop probe.
    public var rate: Double?
    /// The run's figures.
    public var result: BenchResult
    /// The target's percentile in µs (errors and unsent requests counted as too slow);
    /// nil when they alone miss it, or for the probe.
    public var value: Double?
    /// Whether the step met the target; nil for the probe, or without a target.
    public var meetsTarget: Bool?

    init(phase: Phase, rate: Double?, result: BenchResult, target: LatencyTarget?) {
        self.phase = phase
        self.rate = rate
        self.result = result
        value = target?.value(in: result)
        meetsTarget = target?.isMet(by: result)
    }
}

/// What a search or sweep found, with every step: the table, the JSON `slo` object and
/// the SVG curve.
public struct SLOReport: Sendable {
    /// The objective searched for, if any.
    public var target: LatencyTarget?
    /// The plan the steps followed.
    public var plan: SLOSearch.Plan
    /// Every step, in the order run.
    public var steps: [SLOStep]
    /// The relative width of the bracket at which bisection stopped.
    public var precision: Double

    /// The step at the highest rate that met the target.
    public var found: SLOStep? {
        steps.filter { $0.meetsTarget == true }.max { ($0.rate ?? 0) < ($1.rate ?? 0) }
    }

    /// The run the JSON reports in full: the found step, else the last.
    public var reported: SLOStep? { found ?? steps.last }

    /// The latency shown per step: the target's percentile, or p99 without a target.
    private func shown(_ step: SLOStep) -> Double? {
        if let target {
            return step.rate == nil ? step.result.record.map { Double($0.latency.corrected.valueAtPercentile(target.percentile)) / 1000 } : step.value
        }
        return step.result.latency.p99
    }

    private var percentileName: String { target.map { "p" + LatencyTarget.trimmed($0.percentile) } ?? "p99" }

    /// The steps as a table, then the line that names the found rate (the last line).
    public var text: String {
        var lines: [String] = []
        let options = steps.first?.result
        if let options {
            let shape = "\(options.connections) connection(s) x \(options.depth) in flight x \(options.size) B"
            let what = target.map { "SLO \($0.description)" } ?? "sweep"
            lines.append("\(what): \(options.target) \(options.protocol), \(shape), \(options.threads) thread(s), "
                + "each step \(BenchSummary.fixed(options.durationSeconds, 1)) s after \(BenchSummary.fixed(options.warmupSeconds, 1)) s warmup")
        }
        let header = ["step", "phase", "requested/s", "achieved/s", "\(percentileName) ms", "p50 ms", "errors", "meets"]
        var rows: [[String]] = [header]
        for (index, step) in steps.enumerated() {
            let latency = shown(step).map { BenchSummary.fixed($0 / 1000, 3) } ?? "too slow"
            rows.append([
                String(index + 1), step.phase.rawValue, step.rate.map(BenchSummary.number) ?? "closed loop",
                BenchSummary.number(step.result.rps), latency, BenchSummary.fixed(step.result.latency.p50 / 1000, 3),
                String(step.result.errors.total), step.meetsTarget.map { $0 ? "yes" : "no" } ?? "-",
            ])
        }
        let widths = header.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            lines.append("  " + row.enumerated().map { $0.element.leftPadded(widths[$0.offset]) }.joined(separator: "  "))
        }
        lines.append(verdict)
        return lines.joined(separator: "\n")
    }

    /// One line: the found rate, or that none met the target.
    public var verdict: String {
        guard let target else { return "sweep done: \(steps.count) step(s), no target given" }
        if let found, let rate = found.rate {
            let value = found.value.map { "\(percentileName) \(BenchSummary.fixed($0 / 1000, 3)) ms" } ?? ""
            return "found rate: \(BenchSummary.number(rate)) req/s meets \(target.description) (\(value), \(BenchSummary.number(found.result.rps)) req/s achieved)"
        }
        let tried = steps.compactMap(\.rate).min().map { " (lowest rate tried: \(BenchSummary.number($0)) req/s)" } ?? ""
        return "found rate: none; no rate met \(target.description)\(tried)"
    }

    /// The JSON `slo` object.
    public var jsonObject: [(String, Any?)] {
        let stepObjects: [[(String, Any?)]] = steps.map { step in
            [
                ("phase", step.phase.rawValue), ("rate", step.rate), ("rate_achieved", step.result.rps.rounded(toPlaces: 1)),
                ("value_us", shown(step).map { $0.rounded(toPlaces: 1) }), ("meets", step.meetsTarget),
                ("requests", step.result.requests), ("sent", step.result.sent), ("errors", step.result.errors.total),
                ("unsent", LatencyTarget.unsent(step.result)),
                ("latency_us", [("p50", step.result.latency.p50), ("p90", step.result.latency.p90), ("p99", step.result.latency.p99),
                                ("p999", step.result.latency.p999), ("max", step.result.latency.max)] as [(String, Any?)]),
            ]
        }
        var mode = "search"
        var sweep: [(String, Any?)]? = nil
        if case .sweep(let from, let to, let step) = plan {
            mode = "sweep"
            sweep = [("from", from), ("to", to), ("step", step)]
        }
        return [
            ("target", target?.description),
            ("percentile", target?.percentile), ("bound_us", target?.microseconds), ("inclusive", target?.inclusive),
            ("mode", mode), ("sweep", sweep), ("precision", mode == "search" ? precision : nil),
            ("found_rate", found?.rate), ("found_rate_achieved", found.map { $0.result.rps.rounded(toPlaces: 1) }),
            ("steps", stepObjects),
        ]
    }

    /// The JSON file: the reported step's full result, then the `slo` object.
    public var json: String {
        JSONText.render((reported?.result.jsonObject ?? []) + [("slo", jsonObject)]) + "\n"
    }

    /// The throughput/latency curve, SVG: one point per open-loop step at its achieved
    /// rate and latency, the target as a dashed line, the found rate marked.
    public var svg: String {
        LatencyCurve(
            title: target.map { "SLO \($0.description): \(found.flatMap(\.rate).map { "found \(BenchSummary.number($0)) req/s" } ?? "no rate met it")" }
                ?? "latency by throughput",
            percentileName: percentileName,
            points: steps.compactMap { step in
                guard let rate = step.rate else { return nil }
                return LatencyCurve.Point(rate: rate, achieved: step.result.rps, latencyMicroseconds: shown(step), meets: step.meetsTarget)
            },
            targetMicroseconds: target?.microseconds, foundRate: found?.rate
        ).svg
    }
}
