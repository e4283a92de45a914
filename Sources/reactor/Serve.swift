import ArgumentParser
import Logging
import ReactorCore
import ReactorFraming
import ReactorServices

#if canImport(Glibc)
import Glibc
#endif

/// The services `reactor serve` knows.
enum ServiceName: String, CaseIterable, ExpressibleByArgument {
    case echo
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a service until SIGINT or SIGTERM.",
        discussion: """
            When the listener is ready, prints one line to stdout:
              listening tcp HOST:PORT SERVICE
            On SIGINT or SIGTERM it stops accepting, flushes what each connection is owed, \
            closes, and exits 0.
            """
    )

    @Argument(help: "The service to run: \(ServiceName.allCases.map(\.rawValue).joined(separator: ", ")).")
    var service: ServiceName

    @Option(help: "The address to listen on (IPv4 or IPv6, or a host name).")
    var host = "127.0.0.1"

    @Option(help: "The TCP port; 0 picks a free one (printed on the 'listening' line).")
    var port = 7007

    @Option(help: ArgumentHelp(
        "How echo splits the stream into frames: \(Framing.spellings.joined(separator: ", ")).",
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
        guard (0...65535).contains(port) else { throw ValidationError("--port must be from 0 to 65535, not \(port)") }
        guard maxFrame > 0 else { throw ValidationError("--max-frame must be positive") }
        if case .fixed(let length) = framing, length > maxFrame {
            throw ValidationError("--framing fixed:\(length) is longer than --max-frame \(maxFrame)")
        }
        guard maxConnections > 0 else { throw ValidationError("--max-connections must be positive") }
        guard idleTimeout >= 0 else { throw ValidationError("--idle-timeout cannot be negative") }
        guard shutdownTimeout >= 0 else { throw ValidationError("--shutdown-timeout cannot be negative") }
        guard (1...(1 << 30)).contains(outputBudget) else { throw ValidationError("--output-budget must be from 1 to 2^30 MiB") }
    }

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
            let reactor = try Reactor(logger: logger, outputBudget: outputBudget << 20)
            var options = ListenerOptions()
            options.maxConnections = maxConnections
            var connectionOptions = ConnectionOptions()
            connectionOptions.idleTimeout = idleTimeout > 0 ? .milliseconds(Int64(idleTimeout * 1000)) : nil
            let listener = try reactor.listen(
                host: host, port: port, options: options, connectionOptions: connectionOptions
            ) { [framing, maxFrame] _ -> any ConnectionHandler in
                framing == .raw
                    ? EchoHandler()
                    : FramedConnection(framer: framing.makeFramer(maxFrameLength: maxFrame), handler: FramedEchoHandler())
            }
            let timeout = Duration.milliseconds(Int64(shutdownTimeout * 1000))
            for signal in [SIGINT, SIGTERM] {
                try reactor.onSignal(signal) {
                    logger.info("shutting down: \(reactor.connectionCount) connection(s) open")
                    reactor.shutdownGracefully(timeout: timeout)
                }
            }
            print("listening tcp \(listener.address) \(service.rawValue)")
            fflush(nil)
            try reactor.run()
        } catch {
            throw CommandFailure(message: error.description)
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
