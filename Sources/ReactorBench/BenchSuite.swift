import Foundation

/// `reactor bench suite`: every scenario against every target, one after the other, with
/// the reports written to a folder.
public struct BenchSuite {
    /// What to run and where to write.
    public struct Configuration: Sendable {
        /// The servers, in report order.
        public var targets: [SuiteTarget] = []
        /// The target the ratios are against (default: the first).
        public var baseline: String?
        /// The scenarios to run (default: all).
        public var scenarios: [SuiteScenario] = SuiteScenario.all
        /// Where the report goes.
        public var outputFolder: String = "bench-results"
        /// Seconds measured per scenario, and warmup.
        public var duration: Duration = .seconds(5)
        /// Warmup per scenario.
        public var warmup: Duration = .seconds(1)
        /// CPUs for spawned servers (taskset) and for this client; nil leaves them unpinned.
        public var serverCPUs: String? = "0"
        /// CPUs for this client.
        public var clientCPUs: String? = "1"
        /// The command line, for the report.
        public var commandLine: String = ""

        /// The defaults.
        public init() {}
    }

    /// One cell of the table: a target's run of a scenario, or why there is none.
    public struct Outcome: Sendable {
        /// The target's name.
        public var target: String
        /// What ran.
        public var scenario: SuiteScenario
        /// The figures; nil when the scenario was skipped or failed.
        public var result: BenchResult?
        /// Why it was skipped, or what to know about the figures.
        public var note: String?
    }

    /// What it runs.
    public let configuration: Configuration
    private let log: (String) -> Void

    /// A suite; `log` hears a line per step (stderr in the command).
    public init(_ configuration: Configuration, log: @escaping (String) -> Void) {
        self.configuration = configuration
        self.log = log
    }

    /// Runs everything, writes the reports, and returns the outcomes.
    public func run() throws(BenchError) -> [Outcome] {
        guard !configuration.targets.isEmpty else { throw BenchError("no targets: give --target or --spawn") }
        let names = configuration.targets.map(\.name)
        guard Set(names).count == names.count else { throw BenchError("target names must differ: \(names.joined(separator: ", "))") }
        if let baseline = configuration.baseline, !names.contains(baseline) {
            throw BenchError("--baseline \(baseline) is not a target (\(names.joined(separator: ", ")))")
        }
        if let cpus = configuration.clientCPUs {
            guard let list = ProcessStats.parseCPUList(cpus) else { throw BenchError("bad client CPU list '\(cpus)'") }
            try ProcessStats.pin(to: list)
        }
        var outcomes: [Outcome] = []
        for target in configuration.targets {
            outcomes += try run(target)
        }
        try SuiteReport(configuration: configuration, outcomes: outcomes).write()
        return outcomes
    }

    private func run(_ target: SuiteTarget) throws(BenchError) -> [Outcome] {
        var outcomes: [Outcome] = []
        for scenario in configuration.scenarios {
            var outcome: Outcome
            if target.isSpawned {
                // A fresh server per scenario: no scenario inherits another's memory or state.
                guard let command = target.command(for: scenario) else {
                    outcomes.append(Outcome(target: target.name, scenario: scenario, note: "no command serves this scenario"))
                    log("\(target.name) \(scenario.name): skipped: no command serves it")
                    continue
                }
                do {
                    let (server, running) = try spawn(target, command: command, scenario: scenario)
                    outcome = run(scenario, on: running, server: server)
                    server.stop()
                } catch {
                    outcome = Outcome(target: target.name, scenario: scenario, note: error.message)
                }
            } else {
                outcome = run(scenario, on: target, server: nil)
            }
            if let note = outcome.note { log("\(target.name) \(scenario.name): \(outcome.result == nil ? "skipped: " : "")\(note)") }
            if let result = outcome.result {
                log("\(target.name) \(scenario.name): \(summaryLine(scenario, result))")
                try BenchFiles.write(result.json, to: "\(configuration.outputFolder)/\(target.name)-\(scenario.name).json")
            }
            outcomes.append(outcome)
        }
        return outcomes
    }

    private func run(_ scenario: SuiteScenario, on target: SuiteTarget, server: SpawnedServer?) -> Outcome {
        var outcome = Outcome(target: target.name, scenario: scenario)
        if scenario.needsServerPID, target.pid == nil {
            outcome.note = "needs the server's pid (give --target \(target.name)=HOST:PORT,pid=PID, or --spawn)"
            return outcome
        }
        var port = target.port
        if let server {
            // A server may listen on TCP, UDP or both, each announced on its own line.
            port = server.waitForListening(transport: scenario.transport, timeout: .seconds(2))
            guard port != nil else {
                outcome.note = "the server printed no 'listening \(scenario.transport)' line"
                return outcome
            }
        }
        guard let port else {
            outcome.note = "no port"
            return outcome
        }
        var options = scenario.template
        options.host = target.host
        options.port = port
        options.serverPID = target.pid

        // A short probe first: a target that cannot speak the scenario's protocol (a
        // line-only peer asked for int32, a TCP-only one for UDP) is skipped, not failed.
        var probe = options
        probe.mode = .requests
        probe.connections = 1
        probe.depth = 1
        probe.threads = 1
        probe.warmup = .zero
        probe.duration = .milliseconds(500)
        probe.requestTimeout = .milliseconds(400)
        probe.connectTimeout = .seconds(1)
        probe.serverPID = nil
        log("\(target.name) \(scenario.name): probing \(options.protocol)")
        do {
            let answer = try BenchRunner.run(probe)
            guard answer.requests > 0, answer.errors.total == 0 else {
                let kinds = answer.errors.nonZero.map { "\($0.name) \($0.count)" }.joined(separator: ", ")
                outcome.note = "does not answer \(options.protocol) requests correctly (probe: \(answer.requests) verified"
                    + (kinds.isEmpty ? ")" : ", \(kinds))")
                return outcome
            }
        } catch {
            outcome.note = "probe failed: \(error.message)"
            return outcome
        }
        options.duration = configuration.duration
        options.warmup = configuration.warmup
        if scenario.metric == .bytesPerConnection {
            // Enough time to open every connection before the memory is read.
            options.warmup = Swift.max(configuration.warmup, .seconds(3))
            options.connectTimeout = .seconds(5)
        }
        if scenario.metric == .connectionsPerSecond, options.sourceAddresses.isEmpty, options.host.hasPrefix("127.") {
            // From 100 loopback addresses: from one, the client's connects spend their time
            // searching for a free ephemeral port (docs/bench.md, `--source`).
            options.sourceAddresses = (try? BenchOptions.parseSourceAddresses("127.0.0.2-127.0.0.101")) ?? []
        }
        log("\(target.name) \(scenario.name): running \(configuration.duration) after \(options.warmup) warmup")
        do {
            let result = try BenchRunner.run(options)
            outcome.result = result
            if result.errors.total > 0 { outcome.note = "\(result.errors.total) errors" }
            if result.clientMayBeBottleneck { outcome.note = [outcome.note, "client CPU \(Int(result.clientCPUShare * 100)) %: client-bound"].compactMap { $0 }.joined(separator: "; ") }
        } catch {
            outcome.note = error.message
        }
        return outcome
    }

    private func spawn(
        _ target: SuiteTarget, command: SuiteTarget.Command, scenario: SuiteScenario
    ) throws(BenchError) -> (SpawnedServer, SuiteTarget) {
        guard let port = SpawnedServer.freePort() else { throw BenchError("\(target.name): no free port") }
        let text = command.text.replacingOccurrences(of: "{port}", with: String(port))
            .replacingOccurrences(of: "{framing}", with: scenario.framing)
        let log = "\(configuration.outputFolder)/\(target.name)-\(scenario.name).log"
        try BenchFiles.write("", to: log)
        let server = try SpawnedServer(command: text, cpus: configuration.serverCPUs, log: log)
        self.log("\(target.name) \(scenario.name): started \(server.command) (pid \(server.pid))")
        guard server.waitForListening(transport: nil, timeout: .seconds(20)) != nil else {
            server.stop()
            throw BenchError("no 'listening' line within 20 s from '\(server.command)' (see \(log))")
        }
        var running = target
        running.pid = server.pid
        return (server, running)
    }

    private func summaryLine(_ scenario: SuiteScenario, _ result: BenchResult) -> String {
        let value = scenario.value(of: result).map { BenchSummary.number($0) } ?? "-"
        let latency = scenario.metric == .bytesPerConnection ? "" : ", p99 \(result.latency.p99) µs"
        return "\(value) \(scenario.metric.label)\(latency), errors \(result.errors.total)"
    }
}
