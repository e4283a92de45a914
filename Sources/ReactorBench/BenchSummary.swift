import Foundation

/// The human-readable report of a run, and the progress line.
public enum BenchSummary {
    /// A few lines: what ran, throughput, latency percentiles, CPU, errors, and a warning
    /// when the client may have been the bottleneck.
    public static func text(_ result: BenchResult) -> String {
        var lines: [String] = []
        let shape = "\(result.connections) connection(s) x \(result.depth) in flight x \(result.size) B"
        var loop = result.rate.map { ", open loop at \(number($0)) req/s" } ?? ", closed loop"
        if result.mode != .requests { loop = "" }
        lines.append("\(result.target) \(result.protocolName) \(result.mode.rawValue), \(shape)\(loop), \(result.threads) thread(s)")
        lines.append("  \(fixed(result.durationSeconds, 1)) s measured after \(fixed(result.warmupSeconds, 1)) s warmup")
        switch result.mode {
        case .churn:
            lines.append("  connections/s: \(number(result.rps))   (\(result.requests) connect + request + close)")
        case .idle:
            let held = result.idleConnections ?? 0
            if result.idleHeldAll == false {
                let failed = result.errors.total + result.warmupErrors.total
                lines.append("  idle connections held: \(held) of \(result.connections); \(failed) error(s): not every connection was held")
                lines.append("  server memory per connection: not given (the connections did not all stay open)")
            } else {
                lines.append("  idle connections held: \(held) of \(result.connections)")
                if let perConnection = result.serverRSSPerConnectionBytes {
                    lines.append("  server memory per connection: \(number(perConnection)) bytes (VmRSS growth)")
                }
            }
        case .requests:
            var rate = "  requests/s: \(number(result.rps))"
            if let requested = result.rate { rate += " achieved of \(number(requested)) requested (\(fixed(result.rps / requested * 100, 1)) %)" }
            lines.append(rate + "   responses: \(result.requests), \(number(result.bytesPerSecond / 1e6)) MB/s")
        }
        if result.mode != .idle {
            lines.append("  latency µs   " + header)
            lines.append("  " + (result.rate == nil ? "           " : "corrected  ") + " " + row(result.latency))
            if result.rate != nil { lines.append("  uncorrected  " + row(result.latencyUncorrected)) }
        }
        var cpu = "  client CPU: \(fixed(result.clientCPUSeconds, 2)) s (\(fixed(result.clientCPUShare * 100, 0)) % of \(Swift.min(result.clientCPUs, result.threads)) core(s))"
        if let server = result.serverCPUSeconds {
            cpu += "   server CPU: \(fixed(server, 2)) s"
            if let perRequest = result.serverCPUPerRequestMicroseconds { cpu += " (\(fixed(perRequest, 3)) µs/request)" }
        }
        if let peak = result.serverPeakRSSKiB { cpu += "   server peak RSS: \(peak) KiB" }
        lines.append(cpu)
        if result.hits + result.misses > 0 {
            let share = Double(result.hits) / Double(result.hits + result.misses) * 100
            lines.append("  hits: \(result.hits)   misses: \(result.misses)   (\(fixed(share, 1)) % hits)")
        }
        if !result.statusCodes.isEmpty {
            lines.append("  status codes: " + result.statusCodes.keys.sorted().map { "\($0) \(result.statusCodes[$0]!)" }.joined(separator: ", "))
        }
        if result.reconnects > 0 {
            lines.append("  reconnects: \(result.reconnects) (the server ended keep-alive connections with nothing in flight; not errors)")
        }
        let kinds = result.errors.nonZero.map { "\($0.name) \($0.count)" }.joined(separator: ", ")
        lines.append("  errors: \(result.errors.total)" + (kinds.isEmpty ? "" : " (\(kinds))")
            + (result.warmupErrors.total > 0 ? "; \(result.warmupErrors.total) more during warmup" : ""))
        if result.clientMayBeBottleneck {
            lines.append("  warning: the client used \(fixed(result.clientCPUShare * 100, 0)) % of its CPU: it may be the bottleneck, not the server; compare CPU per request or add --threads/cores")
        }
        return lines.joined(separator: "\n")
    }

    /// One progress line: elapsed time, phase, rate, p99 so far, errors, connections.
    public static func progressLine(_ snapshot: ProgressSnapshot) -> String {
        let phase = snapshot.warmingUp ? "warmup" : "measure"
        let p99 = snapshot.requests > 0 ? "\(fixed(snapshot.p99, 1)) µs" : "-"
        return "[\(fixed(snapshot.elapsed, 0))s \(phase)] \(number(snapshot.rate)) req/s  p99 \(p99)  "
            + "responses \(snapshot.requests)  errors \(snapshot.errors)  open \(snapshot.openConnections)"
    }

    private static let header = ["p50", "p90", "p99", "p99.9", "p99.99", "max"].map { $0.leftPadded(10) }.joined()

    private static func row(_ summary: LatencySummary) -> String {
        [summary.p50, summary.p90, summary.p99, summary.p999, summary.p9999, summary.max]
            .map { fixed($0, 1).leftPadded(10) }.joined()
    }

    /// A number with thousands separators and no decimals.
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return "-" }
        let digits = String(Int64(value.rounded()).magnitude)
        var out = ""
        for (offset, digit) in digits.enumerated() {
            if offset > 0, (digits.count - offset) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return (value < 0 ? "-" : "") + out
    }

    /// A number with `places` decimals.
    static func fixed(_ value: Double, _ places: Int) -> String {
        String(format: "%.\(places)f", value)
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
