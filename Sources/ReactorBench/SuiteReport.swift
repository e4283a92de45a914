import Foundation

/// The suite's report folder: `README.md` with a table per scenario (absolute figures and
/// ratios against the baseline), an SVG chart per scenario, and (written as the runs
/// finish) each run's JSON.
struct SuiteReport {
    let configuration: BenchSuite.Configuration
    let outcomes: [BenchSuite.Outcome]

    var baseline: String { configuration.baseline ?? configuration.targets[0].name }

    func write() throws(BenchError) {
        let folder = configuration.outputFolder
        for scenario in configuration.scenarios {
            let chart = chart(for: scenario)
            guard !chart.bars.isEmpty else { continue }
            try BenchFiles.write(chart.svg, to: "\(folder)/\(scenario.name).svg")
        }
        try BenchFiles.write(markdown, to: "\(folder)/README.md")
    }

    var markdown: String {
        var out = "# reactor bench suite\n\n"
        out += "- date: \(ISO8601DateFormatter().string(from: Date()))\n"
        out += "- machine: \(Self.machine)\n"
        out += "- servers on CPU \(configuration.serverCPUs ?? "any"), client on CPU \(configuration.clientCPUs ?? "any"); "
        out += "\(configuration.duration.seconds) s measured per scenario after \(configuration.warmup.seconds) s warmup; one run each\n"
        out += "- baseline for ratios: \(baseline)\n"
        if !configuration.commandLine.isEmpty { out += "- command: `\(configuration.commandLine)`\n" }
        out += "- targets:\n"
        for target in configuration.targets {
            if target.commands.isEmpty {
                out += "  - \(target.name): \(target.host):\(target.port ?? 0)\(target.pid.map { ", pid \($0)" } ?? "")\n"
            }
            for command in target.commands {
                let scenarios = command.scenarios.map { $0.sorted().joined(separator: ", ") } ?? "all scenarios"
                out += "  - \(target.name) (\(scenarios)): `\(command.text)`\n"
            }
        }
        for scenario in configuration.scenarios {
            out += "\n## \(scenario.title)\n\n"
            let rows = outcomes.filter { $0.scenario == scenario }
            let base = rows.first { $0.target == baseline }?.result
            if scenario.metric == .bytesPerConnection {
                out += "| target | bytes per idle connection | vs \(baseline) | connections held | server peak RSS KiB |\n|---|---:|---:|---:|---:|\n"
                for row in rows {
                    guard let result = row.result else { continue }
                    out += "| \(row.target) | \(cell(result.serverRSSPerConnectionBytes)) | \(ratio(result.serverRSSPerConnectionBytes, base?.serverRSSPerConnectionBytes)) "
                    out += "| \(result.idleConnections ?? 0) | \(result.serverPeakRSSKiB.map(String.init) ?? "-") |\n"
                }
            } else {
                out += "| target | \(scenario.metric.label) | vs \(baseline) | p50 µs | p99 µs | p99.9 µs | server CPU µs/req | vs \(baseline) | client CPU | errors |\n"
                out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
                for row in rows {
                    guard let result = row.result else { continue }
                    out += "| \(row.target) | \(cell(result.rps)) | \(ratio(result.rps, base?.rps)) | \(result.latency.p50) | \(result.latency.p99) "
                    out += "| \(result.latency.p999) | \(cell(result.serverCPUPerRequestMicroseconds, places: 3)) "
                    out += "| \(ratio(result.serverCPUPerRequestMicroseconds, base?.serverCPUPerRequestMicroseconds)) "
                    out += "| \(Int((result.clientCPUShare * 100).rounded())) % | \(result.errors.total) |\n"
                }
            }
            if !chart(for: scenario).bars.isEmpty { out += "\n![\(scenario.name)](\(scenario.name).svg)\n" }
            let notes = rows.compactMap { row in row.note.map { "- \(row.target): \(row.result == nil ? "skipped: " : "")\($0)" } }
            if !notes.isEmpty { out += "\n" + notes.joined(separator: "\n") + "\n" }
        }
        out += "\nRatios are target / \(baseline): above 1 is more throughput, and for CPU per request and bytes per connection, more cost. "
        out += "Each run's JSON is `TARGET-SCENARIO.json` beside this file.\n"
        return out
    }

    func chart(for scenario: SuiteScenario) -> BarChart {
        let rows = outcomes.filter { $0.scenario == scenario }
        let baseValue = rows.first { $0.target == baseline }?.result.flatMap { scenario.value(of: $0) }
        let bars = rows.compactMap { row -> BarChart.Bar? in
            guard let value = row.result.flatMap({ scenario.value(of: $0) }) else { return nil }
            let ratio = baseValue.flatMap { $0 > 0 ? String(format: "%.2fx", value / $0) : nil }
            return BarChart.Bar(label: row.target, value: value, isBaseline: row.target == baseline, ratio: ratio)
        }
        let better = scenario.metric.higherIsBetter ? "higher is better" : "lower is better"
        return BarChart(title: scenario.title, unit: "\(scenario.metric.label), \(better)", bars: bars)
    }

    private func cell(_ value: Double?, places: Int = 0) -> String {
        guard let value else { return "-" }
        return places == 0 ? BenchSummary.number(value) : BenchSummary.fixed(value, places)
    }

    private func ratio(_ value: Double?, _ base: Double?) -> String {
        guard let value, let base, base > 0 else { return "-" }
        return String(format: "%.2fx", value / base)
    }

    /// CPU model and count, from /proc/cpuinfo.
    static var machine: String {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = info.split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        return "\(ProcessInfo.processInfo.activeProcessorCount) x \(model), Linux \(ProcessInfo.processInfo.operatingSystemVersionString)"
    }
}
