import ArgumentParser
import Glibc
import Logging
import ReactorCore
import ReactorFraming
import ReactorServices

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a bundled service, or all of them, over TCP and UDP until SIGINT or SIGTERM.",
        discussion: """
            Services: echo (RFC 862), discard (863), chargen (864), qotd (865), daytime (867), \
            time (868); docs/services.md describes each. Without --tcp-only or --udp-only a \
            service listens on TCP and UDP on the same port. 'serve all' runs every service on \
            one reactor at --port-offset plus its well-known port (echo +7, discard +9, \
            daytime +13, qotd +17, chargen +19, time +37).

            When ready, prints one line per socket to stdout:
              listening tcp HOST:PORT SERVICE
              listening udp HOST:PORT SERVICE
            UDP replies are refused to the small services' source ports (0, 7, 9, 13, 17, 19, \
            37) and limited per source address (--udp-rate, --udp-burst). On SIGINT or \
            SIGTERM it stops accepting, flushes what each connection is owed, closes, and \
            exits 0.
            """
    )

    @Argument(help: ArgumentHelp(
        "The service to run, or all of them.", valueName: "service"))
    var service: ServiceSelection

    @Option(help: "The address to listen on (IPv4 or IPv6, or a host name).")
    var host = "127.0.0.1"

    @Option(help: ArgumentHelp(
        "The port, for TCP and UDP alike; 0 picks a free one (printed on the 'listening' lines).",
        discussion: "Default: 7000 plus the service's well-known port (echo 7007, discard 7009, daytime 7013, qotd 7017, chargen 7019, time 7037)."))
    var port: Int?

    @Option(help: ArgumentHelp(
        "With 'all': each service listens on this plus its well-known port (default 10000; 0 gives the real ports, which need root).",
        valueName: "n"))
    var portOffset: Int?

    @Flag(help: "Listen on TCP only.")
    var tcpOnly = false

    @Flag(help: "Listen on UDP only.")
    var udpOnly = false

    @Option(help: ArgumentHelp(
        "qotd: a file of quotes in fortune(6) format (separated by lines holding only %), each under 512 bytes with CRLF line ends.",
        valueName: "file"))
    var quotes: String?

    @Option(help: ArgumentHelp(
        "UDP replies per second each source address may get (0: no limit).", valueName: "per-second"))
    var udpRate = ReplyGuardOptions().repliesPerSecond

    @Option(help: ArgumentHelp("UDP replies a source may get at once before --udp-rate applies.", valueName: "replies"))
    var udpBurst = ReplyGuardOptions().burst

    @Option(help: ArgumentHelp(
        "Source addresses the UDP rate limit tracks at once, in a table of fixed size.", valueName: "count"))
    var udpSources = ReplyGuardOptions().maxTrackedSources

    @Option(help: ArgumentHelp(
        "How TCP echo splits the stream into frames: \(Framing.spellings.joined(separator: ", ")).",
        discussion: "Each frame is echoed re-encoded with the same framing. raw echoes bytes as they come."))
    var framing: Framing = .raw

    @Option(help: "The largest frame accepted, in bytes; a longer one closes that connection.")
    var maxFrame = FramerLimits.defaultMaxFrameLength

    @Option(help: "At most this many open connections; past it, new ones wait in the backlog.")
    var maxConnections = ListenerOptions().maxConnections

    @Option(help: "Close connections idle for this many seconds (0: never).")
    var idleTimeout: Double = 300

    @Option(help: "Seconds to let connections flush on shutdown before aborting them.")
    var shutdownTimeout: Double = 10

    @Option(help: ArgumentHelp(
        "MiB of output all connections together may hold queued for slow readers.",
        discussion: "Over it, connections that add output stop reading until it drains to half.",
        valueName: "mib"))
    var outputBudget = Reactor.defaultOutputBudget >> 20

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func validate() throws {
        switch service {
        case .all:
            guard port == nil else { throw ValidationError("--port does not apply to 'serve all': use --port-offset") }
            let last = Service.allCases.map(\.wellKnownPort).max() ?? 0
            guard (0...(65535 - last)).contains(offset) else {
                throw ValidationError("--port-offset must be from 0 to \(65535 - last), not \(offset)")
            }
        case .one(let single):
            guard portOffset == nil else { throw ValidationError("--port-offset applies to 'serve all' only: use --port") }
            if let port, !(0...65535).contains(port) { throw ValidationError("--port must be from 0 to 65535, not \(port)") }
            if framing != .raw, single != .echo { throw ValidationError("--framing applies to echo only") }
            if quotes != nil, single != .qotd { throw ValidationError("--quotes applies to qotd only") }
        }
        guard !(tcpOnly && udpOnly) else { throw ValidationError("--tcp-only and --udp-only cannot be given together") }
        guard maxFrame > 0 else { throw ValidationError("--max-frame must be positive") }
        if case .fixed(let length) = framing, length > maxFrame {
            throw ValidationError("--framing fixed:\(length) is longer than --max-frame \(maxFrame)")
        }
        guard maxConnections > 0 else { throw ValidationError("--max-connections must be positive") }
        guard idleTimeout >= 0 else { throw ValidationError("--idle-timeout cannot be negative") }
        guard shutdownTimeout >= 0 else { throw ValidationError("--shutdown-timeout cannot be negative") }
        guard (1...(1 << 30)).contains(outputBudget) else { throw ValidationError("--output-budget must be from 1 to 2^30 MiB") }
        guard udpRate >= 0, udpRate.isFinite else { throw ValidationError("--udp-rate must be 0 (no limit) or positive, not \(udpRate)") }
        guard udpBurst >= 1 else { throw ValidationError("--udp-burst must be at least 1, not \(udpBurst)") }
        guard (1...(1 << 20)).contains(udpSources) else { throw ValidationError("--udp-sources must be from 1 to 1048576, not \(udpSources)") }
    }

    /// `serve all`'s port offset.
    private var offset: Int { portOffset ?? 10_000 }

    private var transports: Transports { tcpOnly ? .tcpOnly : udpOnly ? .udpOnly : .both }

    func run() throws {
        let logLevel = self.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = logLevel
            return handler
        }
        let logger = Logger(label: "reactor")
        raiseOpenFileLimit(logger: logger)
        do {
            let quoteList = try quotes.map { path throws(QuoteListError) in try QuoteList(contentsOfFile: path) } ?? .builtIn
            let reactor = try Reactor(logger: logger, outputBudget: outputBudget << 20)
            var options = ListenerOptions()
            options.maxConnections = maxConnections
            var connectionOptions = ConnectionOptions()
            connectionOptions.idleTimeout = idleTimeout > 0 ? .milliseconds(Int64(idleTimeout * 1000)) : nil
            var guardOptions = ReplyGuardOptions()
            guardOptions.repliesPerSecond = udpRate
            guardOptions.burst = udpBurst
            guardOptions.maxTrackedSources = udpSources
            let replyGuard = try ReplyGuard(guardOptions)
            let binder = ServiceBinder(
                reactor: reactor, host: host, transports: transports, listenerOptions: options,
                connectionOptions: connectionOptions, framing: framing, maxFrame: maxFrame,
                quotes: QuoteCursor(quoteList), replyGuard: replyGuard)
            var lines: [String] = []
            for single in service.services {
                let port = service == .all ? offset + single.wellKnownPort : port ?? single.defaultPort
                lines += try binder.open(single, port: port)
            }
            let timeout = Duration.milliseconds(Int64(shutdownTimeout * 1000))
            let servesUDP = transports.udp
            for signal in [SIGINT, SIGTERM] {
                try reactor.onSignal(signal) {
                    logger.info("shutting down: \(reactor.connectionCount) connection(s) open")
                    if servesUDP {
                        let counters = replyGuard.counters
                        logger.info(
                            "UDP replies: \(counters.allowed) allowed, \(counters.refusedSourcePort) refused for their source port, \(counters.rateLimited) rate-limited, \(counters.evictedSources) sources evicted")
                    }
                    reactor.shutdownGracefully(timeout: timeout)
                }
            }
            print(lines.joined(separator: "\n"))
            fflush(nil)
            try reactor.run()
        } catch {
            // A ReactorError or a QuoteListError: each is one line that says what to do.
            throw CommandFailure(message: "\(error)")
        }
    }
}

/// A user-facing failure: one line on stderr, exit status 1, no stack trace.
struct CommandFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

extension Framing: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(parsing: argument)
    }

    public var defaultValueDescription: String { description }
}

/// Servers want many descriptors; the soft limit is often far below the hard one.
func raiseOpenFileLimit(logger: Logger) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    let previous = limit.rlim_cur
    limit.rlim_cur = limit.rlim_max
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
        logger.debug("raised the open-file limit from \(previous) to \(limit.rlim_max)")
    }
}
