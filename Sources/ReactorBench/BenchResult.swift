import Foundation

/// What a run measured: the figures of the summary and of `--json`.
public struct BenchResult: Sendable {
    /// `HOST:PORT` as given.
    public var target: String
    /// See ``BenchOptions/protocol``.
    public var `protocol`: BenchProtocol
    /// The protocol's name: ``protocol``, or a ``BenchOptions/codec``'s name.
    public var protocolName: String
    /// See ``BenchOptions/mode``.
    public var mode: BenchOptions.Mode
    /// See ``BenchOptions/connections``.
    public var connections: Int
    /// See ``BenchOptions/depth``.
    public var depth: Int
    /// See ``BenchOptions/size``.
    public var size: Int
    /// The requested rate (open loop), nil in closed loop.
    public var rate: Double?
    /// See ``BenchOptions/threads``.
    public var threads: Int
    /// The measured window in seconds.
    public var durationSeconds: Double
    /// The warmup in seconds.
    public var warmupSeconds: Double
    /// Responses that passed their checks in the measured window.
    public var requests: Int
    /// Requests sent in the measured window (some may still be in flight at its end).
    public var sent: Int
    /// Requests unanswered when the run ended (not errors).
    public var inFlightAtEnd: Int
    /// Measured requests answered after the window closed, before the clients stopped
    /// (not counted in `requests`, not errors).
    public var answeredAfterEnd: Int
    /// Errors in the measured window, by kind.
    public var errors: ErrorCounts
    /// Lookups that found their key (Redis GET, memcached get), in the measured window.
    public var hits = 0
    /// Lookups that did not (not errors).
    public var misses = 0
    /// Connections the server ended with nothing in flight (keep-alive, `Connection:
    /// close`), reopened; not errors.
    public var reconnects = 0
    /// HTTP responses by status code, in the measured window (errors included).
    public var statusCodes: [Int: Int] = [:]
    /// Errors during the warmup (not in `errors`).
    public var warmupErrors: ErrorCounts
    /// Responses per second over the measured window.
    public var rps: Double
    /// Bytes received per second in the measured window (headers and trailers included).
    public var bytesPerSecond: Double
    /// Latency from the intended send time.
    public var latency: LatencySummary
    /// Latency from the actual send time (the same as `latency` in closed loop).
    public var latencyUncorrected: LatencySummary
    /// CPU seconds the client used in the measured window.
    public var clientCPUSeconds: Double
    /// CPUs the client could run on.
    public var clientCPUs: Int
    /// CPU seconds the server used in the measured window (with a server pid).
    public var serverCPUSeconds: Double?
    /// The server's peak resident set in KiB, VmHWM (with a server pid).
    public var serverPeakRSSKiB: Int?
    /// Idle mode: connections open at the end.
    public var idleConnections: Int?
    /// Idle mode: true when every connection was held to the end with no error; the
    /// memory figure is given only then.
    public var idleHeldAll: Bool?
    /// Idle mode: the server's resident memory growth per connection in bytes (with a
    /// server pid).
    public var serverRSSPerConnectionBytes: Double?
    /// When the run started and measured, on the wall clock, and its whole histograms:
    /// what `reactor bench merge` needs (``RunRecord``).
    public var record: RunRecord? = nil

    /// Client CPU as a share of the cores it had (1.0 = all of them busy all the time).
    public var clientCPUShare: Double {
        durationSeconds > 0 ? clientCPUSeconds / (durationSeconds * Double(Swift.max(1, Swift.min(clientCPUs, threads)))) : 0
    }

    /// True when the client used nearly all of its cores: it may be what limits the rate.
    public var clientMayBeBottleneck: Bool { clientCPUShare >= 0.9 }

    /// Server CPU microseconds per response (with a server pid).
    public var serverCPUPerRequestMicroseconds: Double? {
        guard let serverCPUSeconds, requests > 0 else { return nil }
        return serverCPUSeconds / Double(requests) * 1e6
    }

    /// The JSON object `--json` writes: the keys issue 5 lists, then the extras.
    public var jsonObject: [(String, Any?)] {
        func latencyObject(_ summary: LatencySummary) -> [(String, Any?)] {
            [("p50", summary.p50), ("p90", summary.p90), ("p99", summary.p99), ("p999", summary.p999),
             ("p9999", summary.p9999), ("max", summary.max)]
        }
        return [
            ("target", target), ("protocol", protocolName), ("connections", connections), ("depth", depth),
            ("size", size), ("rate", rate), ("duration_s", durationSeconds), ("warmup_s", warmupSeconds),
            ("requests", requests), ("errors", errors.total), ("rps", rps.rounded(toPlaces: 1)),
            ("bytes_per_s", bytesPerSecond.rounded()),
            ("latency_us", latencyObject(latency)), ("latency_uncorrected_us", latencyObject(latencyUncorrected)),
            ("client_cpu_s", clientCPUSeconds.rounded(toPlaces: 3)), ("server_cpu_s", serverCPUSeconds.map { $0.rounded(toPlaces: 3) }),
            ("server_peak_rss_kb", serverPeakRSSKiB),
            ("mode", mode.rawValue), ("threads", threads), ("sent", sent), ("in_flight_at_end", inFlightAtEnd),
            ("answered_after_end", answeredAfterEnd),
            ("rate_achieved", rps.rounded(toPlaces: 1)),
            ("error_kinds", errors.all.map { ($0.name, $0.count) as (String, Any?) }),
            ("status_codes", statusCodes.keys.sorted().map { (String($0), statusCodes[$0]!) as (String, Any?) }),
            ("hits", hits), ("misses", misses), ("reconnects", reconnects),
            ("warmup_errors", warmupErrors.total),
            ("client_cpu_share", clientCPUShare.rounded(toPlaces: 3)), ("client_cpus", clientCPUs),
            ("server_cpu_us_per_request", serverCPUPerRequestMicroseconds.map { $0.rounded(toPlaces: 3) }),
            ("idle_connections", idleConnections),
            ("server_rss_per_connection_bytes", serverRSSPerConnectionBytes.map { $0.rounded() }),
        ] + (record?.jsonObject ?? [])
    }

    /// `jsonObject` as pretty-printed JSON text, keys in that order.
    public var json: String {
        JSONText.render(jsonObject) + "\n"
    }
}

extension Double {
    func rounded(toPlaces places: Int) -> Double {
        let scale = Foundation.pow(10.0, Double(places))
        return (self * scale).rounded() / scale
    }
}

/// A small JSON writer that keeps keys in the order given (JSONEncoder sorts or
/// scrambles them), for reports meant to be read by people too.
enum JSONText {
    static func render(_ object: [(String, Any?)], indent: String = "") -> String {
        let inner = indent + "  "
        let members = object.map { "\(inner)\(quote($0.0)): \(value($0.1, indent: inner))" }
        return "{\n" + members.joined(separator: ",\n") + "\n\(indent)}"
    }

    static func value(_ value: Any?, indent: String) -> String {
        switch flattened(value) {
        case nil: return "null"
        case let object as [(String, Any?)]: return render(object, indent: indent)
        case let objects as [[(String, Any?)]]:
            guard !objects.isEmpty else { return "[]" }
            let inner = indent + "  "
            return "[\n" + objects.map { inner + render($0, indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        case let text as String: return quote(text)
        case let flag as Bool: return flag ? "true" : "false"
        case let number as Int: return String(number)
        case let number as Double:
            guard number.isFinite else { return "null" }
            return number == number.rounded() && abs(number) < 1e15 ? String(Int64(number)) : String(number)
        case let some?: return quote("\(some)")
        }
    }

    /// An optional inside `Any?` (a `Double?` stored as `Any?`) is not nil itself:
    /// unwrap it so a missing figure becomes `null`.
    private static func flattened(_ value: Any?) -> Any? {
        guard let value else { return nil }
        let mirror = Mirror(reflecting: value)
        guard mirror.displayStyle == .optional else { return value }
        return mirror.children.first.map { flattened($0.value) } ?? nil
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case let c where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
