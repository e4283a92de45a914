import Logging
import ReactorCore
import ReactorFraming
import ReactorServices

/// Which transports `reactor serve` opens for each service.
enum Transports {
    case both, tcpOnly, udpOnly

    var tcp: Bool { self != .udpOnly }
    var udp: Bool { self != .tcpOnly }
}

/// Opens the bundled services' TCP listeners and UDP sockets on one reactor, with what
/// they share: the quotes (TCP and UDP qotd hand them out in turn), the reply guard (one
/// source's UDP budget covers every service, so serving several does not multiply it),
/// and the TCP limits. With `--threads` above 1 each reactor has a binder of its own, so
/// these are per reactor and need no lock.
final class ServiceBinder {
    /// How many times a port chosen by the kernel for TCP is tried for UDP before giving up.
    static let samePortAttempts = 5

    let reactor: Reactor
    let host: String
    let transports: Transports
    let listenerOptions: ListenerOptions
    let udpOptions: UDPOptions
    let connectionOptions: ConnectionOptions
    let framing: Framing
    let maxFrame: Int
    let quotes: QuoteCursor
    let replyGuard: ReplyGuard
    let clock = ServiceClock.system
    /// With `--log-level debug` or trace: one line per accepted TCP connection.
    let logsConnections: Bool

    init(
        reactor: Reactor, host: String, transports: Transports, listenerOptions: ListenerOptions, udpOptions: UDPOptions,
        connectionOptions: ConnectionOptions, framing: Framing, maxFrame: Int, quotes: QuoteCursor, replyGuard: ReplyGuard
    ) {
        self.reactor = reactor
        self.host = host
        self.transports = transports
        self.listenerOptions = listenerOptions
        self.udpOptions = udpOptions
        self.connectionOptions = connectionOptions
        self.framing = framing
        self.maxFrame = maxFrame
        self.quotes = quotes
        self.replyGuard = replyGuard
        self.logsConnections = reactor.logger.logLevel <= .debug
    }

    /// Opens `service` on `port` over the chosen transports, TCP first; returns one ready
    /// line per socket and the port bound. With port 0 and both transports, UDP takes the
    /// port the kernel chose for TCP, and a port already taken for UDP means trying again
    /// with another.
    func open(_ service: Service, port: Int) throws(ReactorError) -> (lines: [String], port: Int) {
        guard transports.tcp else {
            return try bindUDP(service, port: port)
        }
        var attempt = 1
        while true {
            let listener = try reactor.listen(
                host: host, port: port, options: listenerOptions, connectionOptions: connectionOptions,
                makeHandler: handlerFactory(service))
            let tcpLine = "listening tcp \(listener.address) \(service.rawValue)"
            guard transports.udp else { return ([tcpLine], listener.address.port) }
            do {
                let udp = try bindUDP(service, port: listener.address.port)
                return ([tcpLine] + udp.lines, udp.port)
            } catch {
                listener.close()
                guard port == 0, error.code == .addressInUse, attempt < Self.samePortAttempts else { throw error }
                attempt += 1
            }
        }
    }

    /// Logs what the reply guard did, when UDP is served.
    func logUDPCounters(_ logger: Logger) {
        guard transports.udp else { return }
        let counters = replyGuard.counters
        logger.info(
            "UDP replies: \(counters.allowed) allowed, \(counters.refusedSourcePort) refused for their source port, \(counters.rateLimited) rate-limited, \(counters.evictedSources) sources evicted")
    }

    /// The TCP handler factory for `service`, for this binder's reactor.
    func handlerFactory(_ service: Service) -> (Connection) -> any ConnectionHandler {
        { [self] connection -> any ConnectionHandler in
            if logsConnections {
                // proxy= is the TCP peer (the balancer); remote= the client it spoke for.
                let proxy = connection.proxyPeer.map { " proxy=\($0)" } ?? ""
                connection.logger.debug("accepted tcp \(service.rawValue) remote=\(connection.peerAddress)\(proxy)")
            }
            return switch service {
            case .echo:
                framing == .raw
                    ? EchoHandler()
                    : FramedConnection(framer: framing.makeFramer(maxFrameLength: maxFrame), handler: FramedEchoHandler())
            case .discard: DiscardHandler()
            case .daytime: DaytimeHandler(clock: clock)
            case .qotd: QuoteHandler(cursor: quotes)
            case .chargen: ChargenHandler()
            case .time: TimeHandler(clock: clock)
            }
        }
    }

    /// Binds `service`'s UDP socket on `port`; returns its ready line and the port bound.
    func bindUDP(_ service: Service, port: Int) throws(ReactorError) -> (lines: [String], port: Int) {
        let handler: any DatagramHandler = switch service {
        case .echo: EchoDatagramHandler(replyGuard: replyGuard)
        case .discard: DiscardDatagramHandler()
        case .daytime: DaytimeDatagramHandler(clock: clock, replyGuard: replyGuard)
        case .qotd: QuoteDatagramHandler(cursor: quotes, replyGuard: replyGuard)
        case .chargen: ChargenDatagramHandler(replyGuard: replyGuard)
        case .time: TimeDatagramHandler(clock: clock, replyGuard: replyGuard)
        }
        let socket = try reactor.bindUDP(host: host, port: port, options: udpOptions, handler: handler)
        return (["listening udp \(socket.localAddress) \(service.rawValue)"], socket.localAddress.port)
    }
}
