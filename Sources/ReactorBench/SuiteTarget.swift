import Foundation

/// A server the suite measures: one already running (`--target NAME=HOST:PORT[,pid=PID]`),
/// or one the suite starts itself for each scenario from one or more commands
/// (`--spawn NAME[:SCENARIOS]=COMMAND`, or a line of a peers file).
public struct SuiteTarget: Sendable, Equatable {
    /// A command that starts the server, and the scenarios it serves.
    public struct Command: Sendable, Equatable {
        /// The command line: `{port}` becomes a free port, `{framing}` the scenario's
        /// framing (raw, line or int32).
        public var text: String
        /// Names of the scenarios it serves; nil for all.
        public var scenarios: Set<String>?

        /// A command serving `scenarios` (scenario names; nil for all).
        public init(_ text: String, scenarios: Set<String>? = nil) {
            self.text = text
            self.scenarios = scenarios
        }

        func serves(_ scenario: SuiteScenario) -> Bool { scenarios?.contains(scenario.name) ?? true }
    }

    /// The name in tables, charts and file names.
    public var name: String
    /// Where a running target listens: its host.
    public var host: String
    /// Its port.
    public var port: Int?
    /// A running target's process id, for CPU and memory figures.
    public var pid: Int32?
    /// How to start it; empty for a target that is already running.
    public var commands: [Command]

    /// A target; see ``parseTarget(_:)``, ``parseSpawn(_:)`` and ``parsePeers(_:file:)`` for the
    /// command-line forms.
    public init(name: String, host: String = "127.0.0.1", port: Int? = nil, pid: Int32? = nil, commands: [Command] = []) {
        self.name = name
        self.host = host
        self.port = port
        self.pid = pid
        self.commands = commands
    }

    /// True when the suite must start it.
    public var isSpawned: Bool { !commands.isEmpty }

    /// The command that serves `scenario`, if any.
    func command(for scenario: SuiteScenario) -> Command? { commands.first { $0.serves(scenario) } }

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

    /// Parses `--spawn NAME[:SCENARIO,...]=command with {port}`.
    public static func parseSpawn(_ text: String) throws(BenchError) -> SuiteTarget {
        let (label, command) = try splitName(text, flag: "--spawn", allowScenarios: true)
        var name = label
        var scenarios: Set<String>?
        if let colon = label.firstIndex(of: ":") {
            name = String(label[..<colon])
            scenarios = try scenarioNames(String(label[label.index(after: colon)...]), context: "--spawn \(name)")
        }
        guard command.contains("{port}") else {
            throw BenchError("--spawn \(name): the command must contain {port}, where the suite puts a free port")
        }
        return SuiteTarget(name: name, commands: [Command(command, scenarios: scenarios)])
    }

    /// Parses a peers file (Benchmarks/peers.txt): `NAME<TAB>SCENARIOS<TAB>COMMAND` per
    /// line, `#` comments and blank lines ignored; lines with the same NAME make one target.
    public static func parsePeers(_ text: String, file: String = "peers file") throws(BenchError) -> [SuiteTarget] {
        var targets: [SuiteTarget] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
            let fields = line.split(separator: "\t", maxSplits: 2).map(String.init)
            guard fields.count == 3, !fields[0].isEmpty, fields[2].contains("{port}") else {
                throw BenchError("\(file):\(number + 1): expected NAME<TAB>SCENARIOS<TAB>COMMAND with {port}")
            }
            let command = Command(fields[2], scenarios: try scenarioNames(fields[1], context: "\(file):\(number + 1)"))
            try merge(SuiteTarget(name: fields[0], commands: [command]), into: &targets)
        }
        return targets
    }

    /// Adds `target` to `targets`, joining the commands of spawned targets of the same name.
    public static func merge(_ target: SuiteTarget, into targets: inout [SuiteTarget]) throws(BenchError) {
        guard let index = targets.firstIndex(where: { $0.name == target.name }) else {
            targets.append(target)
            return
        }
        guard targets[index].isSpawned, target.isSpawned else {
            throw BenchError("two targets are named \(target.name)")
        }
        targets[index].commands += target.commands
    }

    private static func scenarioNames(_ list: String, context: String) throws(BenchError) -> Set<String> {
        var names: Set<String> = []
        for name in list.split(separator: ",") {
            guard let scenario = SuiteScenario.named(String(name)) else {
                throw BenchError("\(context): unknown scenario '\(name)'; known: \(SuiteScenario.spellings)")
            }
            names.insert(scenario.name)
        }
        guard !names.isEmpty else { throw BenchError("\(context): no scenarios") }
        return names
    }

    private static func splitName(_ text: String, flag: String, allowScenarios: Bool = false) throws(BenchError) -> (String, String) {
        guard let equals = text.firstIndex(of: "="), equals != text.startIndex else {
            throw BenchError("\(flag) \(text): expected NAME=...")
        }
        let name = String(text[..<equals])
        let allowed: (Character) -> Bool = {
            $0.isLetter || $0.isNumber || "-_.".contains($0) || (allowScenarios && ":,".contains($0))
        }
        guard name.allSatisfy(allowed) else {
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
