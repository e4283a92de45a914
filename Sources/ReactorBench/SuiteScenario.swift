/// One of the fixed scenarios of `reactor bench suite`.
public struct SuiteScenario: Sendable, Equatable {
    /// The headline figure of a scenario.
    public enum Metric: Sendable, Equatable {
        /// Responses per second: higher is better.
        case requestsPerSecond
        /// Connections (connect, request, close) per second: higher is better.
        case connectionsPerSecond
        /// Server memory per idle connection in bytes: lower is better.
        case bytesPerConnection

        var label: String {
            switch self {
            case .requestsPerSecond: "requests/s"
            case .connectionsPerSecond: "connections/s"
            case .bytesPerConnection: "server bytes per idle connection"
            }
        }

        var higherIsBetter: Bool { self != .bytesPerConnection }
    }

    /// The name used by `--scenarios` and in file names.
    public let name: String
    /// The shorter name Benchmarks/peers.txt uses (`pingpong`, `lines`, ...); accepted too.
    public let alias: String
    /// A line describing it.
    public let title: String
    /// What replaces `{framing}` in a spawn command: raw, line or int32.
    public let framing: String
    /// Its headline figure.
    public let metric: Metric
    /// The options, before target and timing are filled in.
    public let template: BenchOptions

    /// Every scenario, in report order.
    public static let all: [SuiteScenario] = [
        scenario("ping-pong", "pingpong", "ping-pong: 100 connections x 1 in flight x 64 B, raw", .raw, 100, 1, 64),
        scenario("pipelined-lines", "lines", "pipelined lines: 50 connections x 64 in flight x 32 B lines", .line, 50, 64, 32),
        scenario("pipelined-int32", "int32", "pipelined int32: 50 connections x 64 in flight x 32 B frames", .int32, 50, 64, 32),
        scenario("churn", "churn", "connection churn: 50 clients each connect, send one 64 B request, close, repeat", .raw, 50, 1, 64, mode: .churn),
        scenario("idle-memory", "idle", "idle memory: 5000 connections, one 16 B round trip each, then idle", .raw, 5000, 1, 16, mode: .idle),
        scenario("udp-echo", "udp", "UDP echo: 50 sockets x 1 in flight x 64 B datagrams", .udp, 50, 1, 64),
    ]

    /// The scenario called `name` (or its peers.txt alias).
    public static func named(_ name: String) -> SuiteScenario? { all.first { $0.name == name || $0.alias == name } }

    /// Every name, with its alias, for help and error messages.
    public static var spellings: String {
        all.map { "\($0.name) (\($0.alias))" }.joined(separator: ", ")
    }

    /// True for idle memory, which means nothing without the server's pid.
    public var needsServerPID: Bool { metric == .bytesPerConnection }

    /// The transport its server must listen on: `tcp` or `udp`.
    public var transport: String { template.isStream ? "tcp" : "udp" }

    private static func scenario(
        _ name: String, _ alias: String, _ title: String, _ benchProtocol: BenchProtocol, _ connections: Int, _ depth: Int, _ size: Int,
        mode: BenchOptions.Mode = .requests
    ) -> SuiteScenario {
        var options = BenchOptions()
        options.protocol = benchProtocol
        options.mode = mode
        options.connections = connections
        options.depth = depth
        options.size = size
        let framing = switch benchProtocol {
        case .line: "line"
        case .int32: "int32"
        default: "raw"
        }
        let metric: Metric = switch mode {
        case .requests: .requestsPerSecond
        case .churn: .connectionsPerSecond
        case .idle: .bytesPerConnection
        }
        return SuiteScenario(name: name, alias: alias, title: title, framing: framing, metric: metric, template: options)
    }

    /// The headline figure of `result` for this scenario, nil when it has none.
    public func value(of result: BenchResult) -> Double? {
        switch metric {
        case .requestsPerSecond, .connectionsPerSecond: result.rps
        case .bytesPerConnection: result.serverRSSPerConnectionBytes
        }
    }
}
