import ArgumentParser
import Glibc
import Logging
import Prometheus
import ReactorCore
import ReactorFraming
import ReactorMetrics
import ReactorServices
import Synchronization

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
            With --metrics HOST:PORT it also serves Prometheus text at http://HOST:PORT/metrics \
            (docs/operations.md, "Metrics") and prints, after the service lines:
              listening http HOST:PORT metrics
            With --threads N each reactor's metrics carry a reactor_index label.

            UDP replies are refused to the small services' source ports (0, 7, 9, 13, 17, 19, \
            37) and limited per source address (--udp-rate, --udp-burst). On SIGINT or \
            SIGTERM it accepts what already waits in the backlog, stops accepting, answers \
            what each connection has sent, flushes, closes, and exits 0.

            --threads N runs N reactors, each on a thread of its own; every socket then binds \
            with SO_REUSEPORT (TCP and UDP), one per reactor, or with --listen-mode acceptor \
            one TCP listener hands each connection to the next reactor. --reuse-port sets \
            SO_REUSEPORT with one thread too. With SO_REUSEPORT a restart loses nothing: start \
            the new 'reactor serve' on the same port, then send the old one SIGTERM. Per-reactor \
            state: the UDP rate limit and qotd's turn are kept by each reactor.
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

    @Option(help: ArgumentHelp(
        "TCP keepalive: probe a connection silent for this many seconds (0: off, the kernel's default).",
        discussion: "A peer that vanished without FIN or RST is dropped after about keepalive + interval x count seconds, even with --idle-timeout 0.",
        valueName: "seconds"))
    var keepalive = 0

    @Option(help: ArgumentHelp("Seconds between unanswered keepalive probes.", valueName: "seconds"))
    var keepaliveInterval = 5

    @Option(help: ArgumentHelp("Unanswered keepalive probes before the connection is dropped.", valueName: "count"))
    var keepaliveCount = 3

    @Option(help: "Seconds to let connections flush on shutdown before aborting them.")
    var shutdownTimeout: Double = 10

    @Option(help: ArgumentHelp(
        "MiB of output all connections together may hold queued for slow readers.",
        discussion: "Over it, connections that add output stop reading until it drains to half.",
        valueName: "mib"))
    var outputBudget = Reactor.defaultOutputBudget >> 20

    @Option(help: ArgumentHelp(
        "Reactors to run, each on a thread of its own: a number, or auto for one per CPU this process may use.",
        discussion: "Above 1, TCP and UDP sockets bind with SO_REUSEPORT.", valueName: "n|auto"))
    var threads: ThreadCount = .count(1)

    @Option(help: ArgumentHelp(
        "With --threads above 1: reuseport (one SO_REUSEPORT listener per reactor, the kernel spreads connections) or acceptor (one listener hands each connection to the next reactor in turn).",
        valueName: "mode"))
    var listenMode: GroupListenMode = .reusePort

    @Flag(help: ArgumentHelp(
        "Bind TCP and UDP with SO_REUSEPORT with one thread too (always on above one), so a new 'reactor serve' can take over the port without downtime.",
        discussion: "Another process of the same user may then bind the port as well: no 'address already in use' stops it."))
    var reusePort = false

    @Option(help: ArgumentHelp(
        "Log level: trace, debug, info, notice, warning, error, critical.",
        discussion: "debug logs one line per accepted TCP connection: 'accepted tcp SERVICE remote=CLIENT:PORT', with ' proxy=BALANCER:PORT' behind a PROXY-protocol balancer."))
    var logLevel: Logger.Level = .info

    @Option(help: ArgumentHelp(
        "Serve the reactor's metrics as Prometheus text at http://HOST:PORT/metrics (port 0 picks a free one).",
        discussion: "IPv6 as [ADDR]:PORT. Counters are flushed every --metrics-interval seconds and before each scrape.",
        valueName: "host:port"))
    var metrics: String?

    @Option(help: ArgumentHelp("With --metrics: seconds between flushes of the counters to the registry.", valueName: "seconds"))
    var metricsInterval: Double = 1

    @Option(help: ArgumentHelp(
        "Require a PROXY protocol header (haproxy's, version v1, v2 or any) at the start of every TCP connection.",
        discussion: "The client address in the header becomes the connection's remote address. A connection without a valid header within --proxy-timeout is aborted, counted and logged (at most once a second). UDP is unaffected.",
        valueName: "version"))
    var proxyProtocol: ProxyProtocolVersions?

    @Option(help: ArgumentHelp(
        "With --proxy-protocol: the only networks a header is taken from (comma-separated CIDRs, e.g. 10.0.0.0/8,::1); others are aborted. Default: any source.",
        valueName: "cidr,..."))
    var proxyTrusted: String?

    @Option(help: ArgumentHelp("With --proxy-protocol: seconds the whole header may take to arrive.", valueName: "seconds"))
    var proxyTimeout: Double = 3

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
        guard (0...32767).contains(keepalive) else { throw ValidationError("--keepalive must be from 0 (off) to 32767 seconds, not \(keepalive)") }
        guard (1...32767).contains(keepaliveInterval) else {
            throw ValidationError("--keepalive-interval must be from 1 to 32767 seconds, not \(keepaliveInterval)")
        }
        guard (1...127).contains(keepaliveCount) else { throw ValidationError("--keepalive-count must be from 1 to 127, not \(keepaliveCount)") }
        guard shutdownTimeout >= 0 else { throw ValidationError("--shutdown-timeout cannot be negative") }
        guard (1...(1 << 30)).contains(outputBudget) else { throw ValidationError("--output-budget must be from 1 to 2^30 MiB") }
        guard udpRate >= 0, udpRate.isFinite else { throw ValidationError("--udp-rate must be 0 (no limit) or positive, not \(udpRate)") }
        if proxyProtocol == nil, proxyTrusted != nil || proxyTimeout != 3 {
            throw ValidationError("--proxy-trusted and --proxy-timeout apply with --proxy-protocol only")
        }
        guard proxyTimeout > 0, proxyTimeout.isFinite else { throw ValidationError("--proxy-timeout must be positive, not \(proxyTimeout)") }
        if let proxyTrusted {
            do { _ = try IPNetwork.list(proxyTrusted) } catch { throw ValidationError("--proxy-trusted: \(error)") }
        }
        guard udpBurst >= 1 else { throw ValidationError("--udp-burst must be at least 1, not \(udpBurst)") }
        if case .count(let count) = threads, !(1...1024).contains(count) {
            throw ValidationError("--threads must be from 1 to 1024 or auto, not \(count)")
        }
        guard (1...(1 << 20)).contains(udpSources) else { throw ValidationError("--udp-sources must be from 1 to 1048576, not \(udpSources)") }
        if let metrics {
            guard listenEndpoint(metrics) != nil else {
                throw ValidationError("--metrics must be HOST:PORT (IPv6 as [ADDR]:PORT), not '\(metrics)'")
            }
        }
        guard metricsInterval > 0, metricsInterval.isFinite else { throw ValidationError("--metrics-interval must be positive") }
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
            let count = threads.resolved
            let sharesPort = count > 1 || reusePort
            var options = ListenerOptions()
            options.maxConnections = maxConnections
            options.reusePort = sharesPort
            var udpOptions = UDPOptions()
            udpOptions.reusePort = sharesPort
            if let proxyProtocol {
                var proxy = ProxyProtocolOptions(proxyProtocol, trustedSources: try proxyTrusted.map(IPNetwork.list))
                proxy.headerTimeout = .milliseconds(Int64(proxyTimeout * 1000))
                options.proxyProtocol = proxy
            }
            var connectionOptions = ConnectionOptions()
            connectionOptions.idleTimeout = idleTimeout > 0 ? .milliseconds(Int64(idleTimeout * 1000)) : nil
            if keepalive > 0 {
                connectionOptions.keepAlive = TCPKeepAlive(
                    idle: .seconds(keepalive), interval: .seconds(keepaliveInterval), count: keepaliveCount)
            }
            var guardOptions = ReplyGuardOptions()
            guardOptions.repliesPerSecond = udpRate
            guardOptions.burst = udpBurst
            guardOptions.maxTrackedSources = udpSources
            let setup = BinderSetup(
                host: host, transports: transports, listenerOptions: options, udpOptions: udpOptions,
                connectionOptions: connectionOptions, framing: framing, maxFrame: maxFrame, quotes: quoteList,
                guardOptions: guardOptions)
            let timeout = Duration.milliseconds(Int64(shutdownTimeout * 1000))
            let ports = service.services.map { single in
                (single, service == .all ? offset + single.wellKnownPort : port ?? single.defaultPort)
            }
            if count == 1 {
                try serveOnMainThread(setup, ports: ports, logger: logger, timeout: timeout)
            } else {
                try serveOnGroup(setup, count: count, ports: ports, logger: logger, timeout: timeout)
            }
        } catch {
            // A ReactorError or a QuoteListError: each is one line that says what to do.
            throw CommandFailure(message: "\(error)")
        }
    }

    /// `--metrics`' registry, or nil without it.
    private var metricsExport: MetricsExport? {
        metrics == nil ? nil : MetricsExport(interval: .milliseconds(Int64(metricsInterval * 1000)))
    }

    /// One reactor, on the main thread.
    private func serveOnMainThread(
        _ setup: BinderSetup, ports: [(Service, Int)], logger: Logger, timeout: Duration
    ) throws {
        let reactor = try Reactor(logger: logger, outputBudget: outputBudget << 20)
        let binder = try setup.binder(on: reactor)
        var lines: [String] = []
        for (single, port) in ports { lines += try binder.open(single, port: port).lines }
        if let export = metricsExport, let endpoint = metrics.flatMap(listenEndpoint) {
            let reported = export.report(reactor, index: nil, replyGuard: setup.transports.udp ? binder.replyGuard : nil)
            lines.append(try export.serve(on: reactor, host: endpoint.host, port: endpoint.port, metrics: reported))
        }
        for signal in [SIGINT, SIGTERM] {
            try reactor.onSignal(signal) {
                logger.info("shutting down: \(reactor.connectionCount) connection(s) open")
                binder.logUDPCounters(logger)
                reactor.shutdownGracefully(timeout: timeout)
            }
        }
        print(lines.joined(separator: "\n"))
        fflush(nil)
        try reactor.run()
    }

    /// `count` reactors on threads of their own; the main thread waits for them.
    private func serveOnGroup(
        _ setup: BinderSetup, count: Int, ports: [(Service, Int)], logger: Logger, timeout: Duration
    ) throws {
        let group = try ReactorGroup(count: count, name: "reactor", logger: logger, outputBudget: outputBudget << 20)
        defer { group.join() }  // after stop() too: it joins only once
        do {
            let binders = BinderTable()
            try group.performOnAll { reactor in binders.add(try setup.binder(on: reactor), for: reactor) }
            var lines: [String] = []
            for (single, port) in ports {
                lines += try open(single, port: port, on: group, binders: binders, setup: setup)
            }
            if let export = metricsExport, let endpoint = metrics.flatMap(listenEndpoint) {
                let udp = setup.transports.udp
                for index in 0..<count {
                    lines += try group.perform(on: index) { reactor in
                        let reported = export.report(reactor, index: index, replyGuard: udp ? binders[reactor].replyGuard : nil)
                        // One endpoint, on the first reactor; the others flush on their timers.
                        guard index == 0 else { return [] }
                        return [try export.serve(on: reactor, host: endpoint.host, port: endpoint.port, metrics: reported)]
                    }
                }
            }
            try group.perform(on: 0) { reactor in
                for signal in [SIGINT, SIGTERM] {
                    try reactor.onSignal(signal) {
                        logger.info("shutting down \(count) reactors")
                        group.executeOnAll { reactor in
                            logger.info("reactor: \(reactor.connectionCount) connection(s) open")
                            binders[reactor].logUDPCounters(logger)
                        }
                        group.shutdownGracefully(timeout: timeout)
                    }
                }
            }
            print(lines.joined(separator: "\n"))
            fflush(nil)
        } catch {
            group.stop()
            throw error
        }
    }

    /// Opens one service on every reactor of `group`; returns the ready lines.
    private func open(
        _ single: Service, port: Int, on group: ReactorGroup, binders: BinderTable, setup: BinderSetup
    ) throws -> [String] {
        var lines: [String] = []
        var bound = port
        var udpFrom = 0
        if listenMode == .acceptor, setup.transports.tcp {
            let listener = try group.listen(
                host: setup.host, port: port, mode: .acceptor, options: setup.listenerOptions,
                connectionOptions: setup.connectionOptions) { reactor in binders[reactor].handlerFactory(single) }
            lines.append("listening tcp \(listener.address) \(single.rawValue)")
            bound = listener.address.port
        } else {
            // Reactor 0 picks the port (when 0 was asked) for TCP and UDP alike; the others join it.
            let first = try group.perform(on: 0) { reactor in try binders[reactor].open(single, port: port) }
            lines = first.lines
            bound = first.port
            udpFrom = 1
        }
        guard setup.transports.udp else {
            if listenMode == .reusePort {
                for index in 1..<group.count {
                    _ = try group.perform(on: index) { [bound] reactor in try binders[reactor].open(single, port: bound) }
                }
            }
            return lines
        }
        for index in udpFrom..<group.count {
            let result = try group.perform(on: index) { [bound, listenMode] reactor in
                listenMode == .reusePort && index > 0
                    ? try binders[reactor].open(single, port: bound)
                    : try binders[reactor].bindUDP(single, port: bound)
            }
            if index == 0 { lines += result.lines }
        }
        return lines
    }
}

/// What every reactor's ``ServiceBinder`` is made from.
struct BinderSetup: Sendable {
    let host: String
    let transports: Transports
    let listenerOptions: ListenerOptions
    let udpOptions: UDPOptions
    let connectionOptions: ConnectionOptions
    let framing: Framing
    let maxFrame: Int
    let quotes: QuoteList
    let guardOptions: ReplyGuardOptions

    func binder(on reactor: Reactor) throws(ReactorError) -> ServiceBinder {
        ServiceBinder(
            reactor: reactor, host: host, transports: transports, listenerOptions: listenerOptions,
            udpOptions: udpOptions, connectionOptions: connectionOptions, framing: framing, maxFrame: maxFrame,
            quotes: QuoteCursor(quotes), replyGuard: try ReplyGuard(guardOptions))
    }
}

/// Each reactor's binder, found by its reactor. A binder is only touched on its own
/// reactor's thread (the lookups run there), which is what makes the table Sendable.
final class BinderTable: @unchecked Sendable {
    private struct Entry: @unchecked Sendable { let binder: ServiceBinder }
    private let binders = Mutex<[ObjectIdentifier: Entry]>([:])

    func add(_ binder: ServiceBinder, for reactor: Reactor) {
        let entry = Entry(binder: binder)
        binders.withLock { $0[ObjectIdentifier(reactor)] = entry }
    }

    subscript(reactor: Reactor) -> ServiceBinder {
        binders.withLock { $0[ObjectIdentifier(reactor)]! }.binder
    }
}

/// `--threads`: a number of reactors, or one per CPU.
enum ThreadCount: ExpressibleByArgument, Equatable {
    case count(Int)
    case auto

    init?(argument: String) {
        if argument == "auto" {
            self = .auto
        } else if let count = Int(argument) {
            self = .count(count)
        } else {
            return nil
        }
    }

    var resolved: Int {
        switch self {
        case .count(let count): count
        case .auto: ReactorGroup.availableCPUs
        }
    }

    var defaultValueDescription: String {
        switch self {
        case .count(let count): "\(count)"
        case .auto: "auto"
        }
    }
}

extension GroupListenMode: ExpressibleByArgument {}

/// Splits `HOST:PORT` or `[IPv6]:PORT` for a listener (port 0 allowed); nil when malformed.
private func listenEndpoint(_ text: String) -> (host: String, port: Int)? {
    let host: Substring
    let port: Substring
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
        host = text[text.index(after: text.startIndex)..<close]
        port = text[text.index(close, offsetBy: 2)...]
    } else {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        host = text[..<colon]
        port = text[text.index(after: colon)...]
        guard !host.contains(":") else { return nil }
    }
    guard !host.isEmpty, let number = Int(port), (0...65535).contains(number) else { return nil }
    return (String(host), number)
}

/// What `--metrics` serves: one registry, with loop-latency buckets a reactor needs.
struct MetricsExport: Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    let interval: Duration

    init(interval: Duration) {
        self.interval = interval
        var factory = PrometheusMetricsFactory(registry: registry)
        // A loop that keeps up answers timers within a millisecond (epoll's rounding): the
        // default buckets, from 5 ms up, would put every sample in the first.
        factory.durationHistogramBuckets[ReactorMetrics.Label.loopLatency] = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500),
        ]
        self.factory = factory
    }

    /// Reports `reactor`'s counters to the registry; with UDP services, the reply guard's
    /// refusals too. In a group each reactor's metrics carry `reactor.index`.
    func report(_ reactor: Reactor, index: Int?, replyGuard: ReplyGuard?) -> ReactorMetrics {
        let dimensions = index.map { [("reactor.index", "\($0)")] } ?? []
        let metrics = ReactorMetrics(reactor: reactor, dimensions: dimensions, interval: interval, factory: factory)
        if let replyGuard {
            let udp = [("network.transport", "udp")]
            metrics.addCounter(label: "reactor.udp.datagrams.refused", dimensions: udp) { replyGuard.counters.refusedSourcePort }
            metrics.addCounter(label: "reactor.udp.datagrams.rate_limited", dimensions: udp) { replyGuard.counters.rateLimited }
        }
        return metrics
    }

    /// Serves the registry at `/metrics` from `reactor`, flushing `metrics` before each scrape.
    func serve(on reactor: Reactor, host: String, port: Int, metrics: ReactorMetrics) throws(ReactorError) -> String {
        let endpoint = try PrometheusEndpoint(reactor: reactor, host: host, port: port, registry: registry, metrics: metrics)
        return "listening http \(endpoint.listener.address) metrics"
    }
}

/// A user-facing failure: one line on stderr, exit status 1, no stack trace.
struct CommandFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

extension ProxyProtocolVersions: ExpressibleByArgument {}

extension Framing: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(parsing: argument)
    }

    public var defaultValueDescription: String { description }
}

/// Servers want many descriptors; the soft limit is often far below the hard one. A
/// refusal is not fatal: the command goes on with the limit it has.
func raiseOpenFileLimit(logger: Logger) {
    do {
        try Reactor.raiseOpenFileLimit(logger: logger)
    } catch {
        logger.debug("\(error)")
    }
}
