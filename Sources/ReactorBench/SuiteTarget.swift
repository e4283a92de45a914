/// A server the suite measures: one already running (`NAME=HOST:PORT[,pid=PID]`) or one
/// the suite starts itself (`NAME=command with {port}`).
public struct SuiteTarget: Sendable, Equatable {
    /// The name in tables, charts and file names.
    public var name: String
    /// Where it listens (for a spawned target, filled in once it runs).
    public var host: String = "127.0.0.1"
    public var port: Int?
    /// Its process id, for CPU and memory figures.
    public var pid: Int32?
    /// The command that starts it: `{port}` becomes a free port, and `{framing}` the
    /// scenario's framing (raw, line, int32), in which case each scenario gets a fresh
    /// server started with its framing.
    public var command: String?

    /// A target; see ``parseTarget(_:)`` and ``parseSpawn(_:)`` for the command-line forms.
    public init(name: String, host: String = "127.0.0.1", port: Int? = nil, pid: Int32? = nil, command: String? = nil) {
        self.name = name
        self.host = host
        self.port = port
        self.pid = pid
        self.command = command
    }

    /// True when the suite must start it.
    public var isSpawned: Bool { command != nil }

    /// True when each scenario needs its own server (the command takes `{framing}`).
    public var startsPerScenario: Bool { command?.contains("{framing}") ?? false }

    /// Parses `--target NAME=HOST:PORT[,pid=PID]`.
    public static func parseTarget(_ text: String) throws(BenchError) -> SuiteTarget {
        let (name, rest) = try splitName(text, flag: "--target")
        var parts = rest.split(separator: ",").map(String.init)
        guard !parts.isEmpty, let endpoint = BenchTarget.parseEndpoint(parts.removeFirst()) else {
            throw BenchError("--target \(text): expected NAME=HOST:PORT[,pid=PID]")
        }
        var target = SuiteTarget(name: name, host: endpoint.host, port: endpoint.port)
        for part in parts {
            guard part.hasPrefix("pid="), let pid = Int32(part.dropFirst(4)), pid > 0 else {
                throw BenchError("--target \(text): unknown part '\(part)' (only pid=PID is known)")
            }
            target.pid = pid
        }
        return target
    }

    /// Parses `--spawn NAME=command with {port}`.
    public static func parseSpawn(_ text: String) throws(BenchError) -> SuiteTarget {
        let (name, command) = try splitName(text, flag: "--spawn")
        guard command.contains("{port}") else {
            throw BenchError("--spawn \(name): the command must contain {port}, where the suite puts a free port")
        }
        return SuiteTarget(name: name, port: nil, command: command)
    }

    private static func splitName(_ text: String, flag: String) throws(BenchError) -> (String, String) {
        guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
            throw BenchError("\(flag) \(text): expected NAME=...")
        }
        let name = String(text[..<equals])
        guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
            throw BenchError("\(flag) \(text): a name may hold letters, digits, '-', '_' and '.' only")
        }
        return (name, String(text[text.index(after: equals)...]))
    }
}

/// `HOST:PORT` spellings.
public enum BenchTarget {
    /// Splits `HOST:PORT`, `[IPv6]:PORT`, or `:PORT` (127.0.0.1); nil when malformed.
    public static func parseEndpoint(_ text: String) -> (host: String, port: Int)? {
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else { return nil }
        }
        if host.isEmpty { host = "127.0.0.1" }
        guard let port = Int(portText), (1...65535).contains(port) else { return nil }
        return (String(host), port)
    }
}
