import ArgumentParser
import Foundation
import Glibc
import Logging
import ReactorBench

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a request/response server's throughput and latency (docs/bench.md).",
        discussion: """
            `reactor bench HOST:PORT [options]` runs one benchmark (the `run` subcommand is the \
            default; --slo searches for the highest rate meeting a latency target); \
            `reactor bench suite` runs the side-by-side scenarios against named targets; \
            `reactor bench merge` makes one result of runs from several load machines.
            """,
        subcommands: [BenchRun.self, BenchSuiteCommand.self, BenchMergeCommand.self],
        defaultSubcommand: BenchRun.self
    )
}

struct BenchRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Load one server and report throughput, latency percentiles, CPU and errors.",
        discussion: """
            Closed loop by default: every connection keeps --depth requests in flight. With \
            --rate, open loop: requests leave on a fixed schedule and latency counts from each \
            request's intended send time (corrected for coordinated omission); the uncorrected \
            figure is shown beside it. Every response is checked: an echo byte for byte \
            against its request, Redis, memcached and HTTP replies by their protocol, custom \
            ones by --expect. Progress goes to stderr once a second, the summary to stdout. \
            Exits non-zero when --mode idle could not hold every connection.
            """
    )

    @Argument(help: "The server, HOST:PORT: a name or a numeric address (IPv6 as [ADDR]:PORT).")
    var target: String

    @Option(name: .customLong("protocol"), help: "raw, line, crlf, int32, netstring, udp (echo servers of that framing), redis, memcached, http, or custom.")
    var benchProtocol: BenchProtocol = .raw

    @Option(name: .customLong("command"), help: ArgumentHelp(
        "redis, memcached: a command template, repeatable, e.g. 'SET key:{key} {value}' (redis default: PING).", valueName: "template"))
    var commands: [String] = []

    @Option(name: .customLong("weight"), help: "The share of the --command just before it in the mix (default 1).")
    var weights: [Int] = []

    @Option(help: "{key} is drawn from 0 ..< N.")
    var keyspace = 100_000

    @Option(help: "How {key} is drawn: uniform, sequential or zipf:S.")
    var keyDistribution = "uniform"

    @Option(name: .customLong("path"), help: ArgumentHelp("http: a request path (template), repeatable, used round-robin (default /).", valueName: "path"))
    var paths: [String] = []

    @Option(help: "http: the request method.")
    var method = "GET"

    @Option(name: .customLong("header"), help: ArgumentHelp("http: an extra header 'Name: value', repeatable.", valueName: "header"))
    var headers: [String] = []

    @Option(help: "http: a request body (template), sent with its Content-Length.")
    var body: String?

    @Option(name: .customLong("request"), help: ArgumentHelp("custom: a request template, repeatable, used round-robin.", valueName: "template"))
    var requests: [String] = []

    @Option(help: "custom: a file of request templates, one per line, used round-robin.")
    var requestFile: String?

    @Option(name: .customLong("response"), help: ArgumentHelp(
        "custom: the framing of requests and responses: line, crlf, int8, int16, int32, int64, netstring, fixed:N, delimiter:TEXT (over UDP: none).",
        valueName: "framing"))
    var responseFraming: String?

    @Option(help: "custom: what a response's payload must be: echo, any, exact:TEXT, prefix:TEXT, regex:RE.")
    var expect = "echo"

    @Option(help: "custom: tcp, or udp (one datagram each way).")
    var transport: BenchOptions.Transport = .tcp

    @Option(help: "requests (the default), churn (connect, one request, close), or idle (hold connections).")
    var mode: BenchOptions.Mode = .requests

    @Option(help: "Connections (UDP: sockets) in total.")
    var connections = 50

    @Option(help: "Requests in flight per connection or UDP socket (open loop: at most; churn and idle: 1).")
    var depth = 1

    @Option(help: "Payload bytes per request.")
    var size = 64

    @Option(help: "Open loop: requests per second in total, at constant intervals.")
    var rate: Double?

    @Option(help: "Seconds measured.")
    var duration: Double = 10

    @Option(help: "Seconds run first and not counted.")
    var warmup: Double = 2

    @Option(help: "Reactors, each on its own thread.")
    var threads = 1

    @Option(help: "Seconds a connect may take before it counts as an error.")
    var connectTimeout: Double = 2

    @Option(help: ArgumentHelp(
        "TCP: local addresses to connect from, in turn: a comma-separated list of addresses and IPv4 ranges (127.0.0.2-127.0.0.101). Churn on loopback spread this way does not wait on the kernel's search for a free port.",
        valueName: "addresses"))
    var source: String?

    @Option(help: "Seconds a request may wait for its response before it counts as an error.")
    var requestTimeout: Double = 2

    @Option(help: "The server's process id: report its CPU time and peak memory from /proc.")
    var serverPid: Int32?

    @Option(help: "Pin the client to these CPUs (e.g. 1 or 2-3).")
    var cpus: String?

    @Option(help: "Write the figures as JSON to this file.")
    var json: String?

    @Flag(help: "No progress lines on stderr.")
    var quiet = false

    @OptionGroup(title: "Capacity and several load machines")
    var capacity: CapacityOptions

    func validate() throws {
        guard weights.count <= commands.count else { throw ValidationError("each --weight follows the --command it weighs") }
        guard KeyDistribution(keyDistribution) != nil else {
            throw ValidationError("--key-distribution must be uniform, sequential or zipf:S, not '\(keyDistribution)'")
        }
        if let requestFile, (try? String(contentsOfFile: requestFile, encoding: .utf8)) == nil {
            throw ValidationError("cannot read --request-file \(requestFile)")
        }
        guard endpoint != nil else { throw ValidationError("the target must be HOST:PORT, not '\(target)'") }
        if let source {
            do {
                _ = try BenchOptions.parseSourceAddresses(source)
            } catch {
                throw ValidationError(error.message)
            }
        }
        if let cpus, ProcessStats.parseCPUList(cpus) == nil { throw ValidationError("--cpus must be a list like 1 or 0,2-3") }
        do {
            try options.validate()
            var options = options
            try capacity.apply(to: &options)
        } catch let error as BenchError {
            throw ValidationError(error.message)
        }
    }

    private var endpoint: (host: String, port: Int)? { BenchTarget.parseEndpoint(target) }

    private var options: BenchOptions {
        var options = BenchOptions()
        options.host = endpoint?.host ?? ""
        options.port = endpoint?.port ?? 0
        options.protocol = benchProtocol
        options.mode = mode
        options.connections = connections
        options.depth = depth
        options.size = size
        options.rate = rate
        options.duration = .milliseconds(Int64(duration * 1000))
        options.warmup = .milliseconds(Int64(warmup * 1000))
        options.threads = threads
        options.connectTimeout = .milliseconds(Int64(connectTimeout * 1000))
        options.sourceAddresses = source.flatMap { try? BenchOptions.parseSourceAddresses($0) } ?? []
        options.requestTimeout = .milliseconds(Int64(requestTimeout * 1000))
        options.serverPID = serverPid
        options.commands = commands.enumerated().map { index, text in
            BenchOptions.Command(text, weight: index < weightsByCommand.count ? weightsByCommand[index] : 1)
        }
        options.keyspace = keyspace
        options.keyDistribution = KeyDistribution(keyDistribution) ?? .uniform
        if !paths.isEmpty { options.paths = paths }
        options.method = method
        options.headers = headers
        options.body = body
        options.requests = requests
        if let requestFile, let text = try? String(contentsOfFile: requestFile, encoding: .utf8) {
            options.requests += text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        }
        options.responseFraming = responseFraming
        options.expect = expect
        options.transport = transport
        return options
    }

    /// Each --weight belongs to the --command before it on the command line; argument
    /// parser collects them apart, so their order is recovered from the raw arguments.
    private var weightsByCommand: [Int] {
        var result = [Int](repeating: 1, count: commands.count)
        var command = -1
        var iterator = CommandLine.arguments.makeIterator()
        var weightIndex = 0
        while let argument = iterator.next() {
            if argument == "--command" || argument.hasPrefix("--command=") {
                command += 1
            } else if argument == "--weight" || argument.hasPrefix("--weight=") {
                if command >= 0, command < result.count, weightIndex < weights.count { result[command] = weights[weightIndex] }
                weightIndex += 1
            }
        }
        // Parsed without a command line of ours (tests, embedding): in order.
        if weightIndex == 0 { for (index, weight) in weights.enumerated() where index < result.count { result[index] = weight } }
        return result
    }

    func run() throws {
        raiseOpenFileLimit(logger: Logger(label: "reactor-bench"))
        do {
            if let cpus { try ProcessStats.pin(to: ProcessStats.parseCPUList(cpus)!) }
            var options = options
            try capacity.apply(to: &options)
            if capacity.searches { return try capacity.search(options, quiet: quiet, json: json) }
            let progress = ProgressPrinter(enabled: !quiet)
            let result = try BenchRunner.run(options, progress: quiet ? nil : { progress.show($0) })
            progress.finish()
            print(BenchSummary.text(result))
            if let json { try BenchFiles.write(result.json, to: json) }
            try capacity.writeHistogramLog(result)
            if result.idleHeldAll == false {
                throw BenchError("--mode idle: \(result.idleConnections ?? 0) of \(result.connections) connections held at the end")
            }
        } catch let error as ExitCode {
            throw error  // the search found no rate: its table and verdict are printed
        } catch let error as ValidationError {
            throw error
        } catch {
            throw CommandFailure(message: String(describing: error))
        }
    }
}

/// Progress on stderr: one line rewritten in place on a terminal, a line per second otherwise.
final class ProgressPrinter {
    private let enabled: Bool
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private var wroteInPlace = false

    init(enabled: Bool) { self.enabled = enabled }

    func show(_ snapshot: ProgressSnapshot) {
        guard enabled else { return }
        let line = BenchSummary.progressLine(snapshot)
        if isTerminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
            wroteInPlace = true
        } else {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    func finish() {
        if wroteInPlace { FileHandle.standardError.write(Data("\n".utf8)) }
        wroteInPlace = false
    }
}

extension BenchProtocol: ExpressibleByArgument {}
extension BenchOptions.Transport: ExpressibleByArgument {}
extension BenchOptions.Mode: ExpressibleByArgument {}

struct BenchSuiteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "suite",
        abstract: "Run the side-by-side scenarios against named targets; write tables, charts and JSON.",
        discussion: """
            Scenarios: \(SuiteScenario.spellings). A spawned target gets a fresh server per \
            scenario, from the command that serves it, pinned with `taskset -c SERVER-CPUS` \
            when taskset exists; the client pins itself to CLIENT-CPUS. Each scenario starts \
            with a short probe: a target that does not answer its protocol correctly is \
            skipped with a note. Writes OUT/README.md (a table per scenario, ratios against \
            the baseline), OUT/SCENARIO.svg and OUT/TARGET-SCENARIO.json.
            """
    )

    @Option(name: .customLong("target"), help: ArgumentHelp(
        "A running server: NAME=HOST:PORT[,pid=PID] (the pid enables CPU and memory figures).", valueName: "spec"))
    var targets: [String] = []

    @Option(name: .customLong("spawn"), help: ArgumentHelp(
        "A server to start: NAME[:SCENARIO,...]='command with {port}' ({framing} becomes raw, line or int32); repeat a NAME to give it a command per scenario.",
        valueName: "spec"))
    var spawns: [String] = []

    @Option(help: ArgumentHelp(
        "A peers file (Benchmarks/peers.txt): NAME<TAB>SCENARIOS<TAB>COMMAND per line; commands run in the current directory.",
        valueName: "file"))
    var peers: String?

    @Option(help: "The target ratios are taken against (default: the first).")
    var baseline: String?

    @Option(help: "Comma-separated subset of the scenarios.")
    var scenarios: String?

    @Option(help: "The folder for README.md, the SVG charts and the JSON files.")
    var out = "bench-results"

    @Option(help: "Seconds measured per scenario.")
    var duration: Double = 5

    @Option(help: "Seconds of warmup per scenario (idle memory takes at least 3).")
    var warmup: Double = 1

    @Option(help: "CPUs for spawned servers (taskset -c); 'none' to leave them unpinned.")
    var serverCpus = "0"

    @Option(help: "CPUs for this client; 'none' to leave it unpinned.")
    var clientCpus = "1"

    func validate() throws {
        guard !targets.isEmpty || !spawns.isEmpty || peers != nil else {
            throw ValidationError("give at least one --target, --spawn or --peers")
        }
        guard duration > 0, warmup >= 0 else { throw ValidationError("--duration must be positive and --warmup not negative") }
        for cpus in [serverCpus, clientCpus] where cpus != "none" {
            guard ProcessStats.parseCPUList(cpus) != nil else { throw ValidationError("bad CPU list '\(cpus)'") }
        }
        if let scenarios {
            for name in scenarios.split(separator: ",") where SuiteScenario.named(String(name)) == nil {
                throw ValidationError("unknown scenario '\(name)'; known: \(SuiteScenario.spellings)")
            }
        }
    }

    func run() throws {
        raiseOpenFileLimit(logger: Logger(label: "reactor-bench"))
        do {
            var configuration = BenchSuite.Configuration()
            var all: [SuiteTarget] = []
            for spec in targets { try SuiteTarget.merge(try SuiteTarget.parseTarget(spec), into: &all) }
            for spec in spawns { try SuiteTarget.merge(try SuiteTarget.parseSpawn(spec), into: &all) }
            if let peers {
                guard let text = try? String(contentsOfFile: peers, encoding: .utf8) else {
                    throw BenchError("cannot read the peers file \(peers)")
                }
                for target in try SuiteTarget.parsePeers(text, file: peers) { try SuiteTarget.merge(target, into: &all) }
            }
            configuration.targets = all
            configuration.baseline = baseline
            if let scenarios {
                configuration.scenarios = scenarios.split(separator: ",").compactMap { SuiteScenario.named(String($0)) }
            }
            configuration.outputFolder = out
            configuration.duration = .milliseconds(Int64(duration * 1000))
            configuration.warmup = .milliseconds(Int64(warmup * 1000))
            configuration.serverCPUs = serverCpus == "none" ? nil : serverCpus
            configuration.clientCPUs = clientCpus == "none" ? nil : clientCpus
            configuration.commandLine = CommandLine.arguments.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
            let suite = BenchSuite(configuration) { line in
                FileHandle.standardError.write(Data(("suite: " + line + "\n").utf8))
            }
            _ = try suite.run()
            print(try String(contentsOfFile: "\(out)/README.md", encoding: .utf8))
        } catch let error as BenchError {
            throw CommandFailure(message: error.message)
        }
    }
}
