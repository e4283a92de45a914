import Glibc

/// Settings for a listening socket. Every limit has a default.
public struct ListenerOptions: Sendable, Equatable {
    /// The kernel's queue of completed connections waiting for accept (default 1024;
    /// the kernel caps it at net.core.somaxconn).
    public var backlog: Int32 = 1024
    /// SO_REUSEADDR: rebind a port that has connections in TIME_WAIT (default on).
    public var reuseAddress: Bool = true
    /// SO_REUSEPORT: let several sockets, in this or other processes, bind the same port
    /// and share its connections (default off).
    public var reusePort: Bool = false
    /// At most this many accepts per readiness event, so a flood of connections cannot
    /// starve established ones (default 64).
    public var acceptBatch: Int = 64
    /// At most this many open connections from this listener; past it, accepting pauses
    /// until one closes and new connections wait in the backlog (default 16384).
    public var maxConnections: Int = 16_384
    /// Restrict an IPv6 listener to IPv6 (IPV6_V6ONLY, default on), so `::` and `0.0.0.0`
    /// can be bound side by side.
    public var ipv6Only: Bool = true
    /// Require a PROXY protocol header (v1, v2 or either) at the start of every connection,
    /// read before the handler is made (default nil: off). See ``ProxyProtocolOptions``.
    public var proxyProtocol: ProxyProtocolOptions? = nil

    /// The defaults.
    public init() {}

    /// Checks the limits: a listener with no room to accept would never serve anyone.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/invalidOption`` naming the
    ///   first refused option and its value.
    public func validate() throws(ReactorError) {
        guard backlog > 0 else { throw .invalidOption("backlog", value: backlog, hint: "it must be positive") }
        guard acceptBatch > 0 else { throw .invalidOption("acceptBatch", value: acceptBatch, hint: "it must be positive") }
        guard maxConnections > 0 else {
            throw .invalidOption("maxConnections", value: maxConnections, hint: "it must be positive")
        }
        try proxyProtocol?.validate()
    }
}

/// A listening TCP socket that accepts connections on its ``Reactor`` and gives each a
/// handler. Made by ``Reactor/listen(on:options:connectionOptions:makeHandler:)``.
///
/// When the process runs out of file descriptors (EMFILE, ENFILE) the listener stops
/// accepting, logs one warning, and retries on a timer (10 ms doubling to 1 s) or as soon
/// as one of its connections closes. Waiting connections stay in the kernel's backlog
/// meanwhile; the loop never spins.
public final class TCPListener: ConnectionSource {
    let reactor: Reactor
    /// The socket.
    package let fileDescriptor: Int32
    /// The bound address; with port 0 requested, this holds the port the kernel chose.
    public let address: SocketAddress
    /// The listener's settings.
    public let options: ListenerOptions
    /// Open connections accepted by this listener.
    public private(set) var connectionCount = 0
    /// Connections accepted since the listener opened.
    public private(set) var acceptedCount = 0
    /// True until ``close()``.
    public private(set) var isListening = true
    /// True while accepting is paused for want of file descriptors or by the connection limit.
    public private(set) var isAcceptPaused = false
    /// With ``ListenerOptions/proxyProtocol`` on: headers read and refused, by kind.
    public internal(set) var proxyCounters = ProxyProtocolCounters()

    let config: ConnectionConfig
    private let makeHandler: (Connection) -> any ConnectionHandler
    private var events = LoopEvents(count: 1)
    private var retryTimer: ReactorTimer?
    private var retryDelay: Duration = .milliseconds(10)
    private var pausedSince: UInt64 = 0
    private var pausedForFiles = false
    private var lastLimitWarning: UInt64 = 0
    private var resumeScheduled = false
    private var isDraining = false
    /// Set on a ``ReactorGroup``'s acceptor: each accepted socket goes to this instead of
    /// becoming a connection here (the socket, its peer, whether a drain accepted it, and
    /// its PROXY header with the bytes after it when the listener takes the protocol).
    var handOff: ((Int32, SocketAddress, Bool, ProxiedStart?) -> Void)?
    var refusalLog = RefusalLog()
    /// Called once when the listener closes, by ``close()`` or a shutdown: the async layer
    /// ends its sequence of connections there.
    package var onClose: (() -> Void)?

    init(
        reactor: Reactor, fd: Int32, address: SocketAddress, options: ListenerOptions,
        connectionOptions: ConnectionOptions, makeHandler: @escaping (Connection) -> any ConnectionHandler
    ) {
        self.reactor = reactor
        self.fileDescriptor = fd
        self.address = address
        self.options = options
        self.config = ConnectionConfig(connectionOptions)
        self.makeHandler = makeHandler
        config.source = self
        events.assign(0, on: reactor.base, .readable(fd), owner: self) { _, _, context in
            LoopEvents.withOwner(context, TCPListener.self) { $0.acceptReady() }
        }
        events.arm(0)
        reactor.registry.insert(.listener(self))
    }

    deinit {
        if isListening { Socket.close(fileDescriptor) }
    }

    /// Stops listening and closes the socket. Connections already accepted stay open.
    public func close() {
        guard isListening else { return }
        reactor.assertInLoop()
        isListening = false
        events.disarm(0)
        retryTimer?.cancel()
        handOff = nil  // it holds the group's receivers, which hold this listener
        Socket.close(fileDescriptor)
        reactor.registry.remove(self)
        if let onClose {
            self.onClose = nil
            onClose()
        }
    }

    private func acceptReady() {
        // A drain takes the whole backlog, and what arrives meanwhile up to a batch more.
        let batch = isDraining ? Int(options.backlog) + options.acceptBatch : options.acceptBatch
        for _ in 0..<batch {
            guard isListening, !isAcceptPaused else { return }
            guard connectionCount < options.maxConnections || isDraining else {
                pause(reason: "\(connectionCount) connections open, the limit (maxConnections)", forFiles: false)
                return
            }
            let (result, fd, peer) = Socket.accept(fileDescriptor)
            guard case .done = result else {
                guard case .failed(let error) = result else { return }  // none waiting
                reactor.tally.acceptErrors[error, default: 0] += 1
                switch error {
                case ECONNABORTED, EPROTO, EPERM:
                    continue  // that one connection failed; others may be waiting
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    let cause = ReactorError(errno: error, operation: .accept, address: address)
                    pause(reason: cause.description, forFiles: true)
                    return
                default:
                    reactor.logger.error("\(ReactorError(errno: error, operation: .accept, address: address))")
                    return
                }
            }
            guard let peer else {
                Socket.close(fd)
                continue
            }
            acceptedCount += 1
            reactor.tally.acceptedConnections &+= 1
            if pausedForFiles { acceptsAgain() }
            connectionCount += 1
            if let proxyProtocol = options.proxyProtocol {
                readProxyHeader(fd: fd, peer: peer, options: proxyProtocol, draining: isDraining)
                continue
            }
            if let handOff {
                handOff(fd, peer, isDraining, nil)
                continue
            }
            open(Connection(reactor: reactor, fd: fd, peer: peer, config: config), draining: isDraining)
        }
    }

    /// Gives an accepted connection its handler; one a drain accepted (or accepted before
    /// a shutdown and opened after it began) is served until its first input is answered.
    func open(_ connection: Connection, draining: Bool) {
        let handler = makeHandler(connection)
        // Accepted by a shutdown's drain, or its PROXY header completed after the shutdown
        // began: the client was already waiting, so its first request is served.
        let late = draining || reactor.isShuttingDown
        connection.start(handler: late ? ShutdownGrace(handler, reactor: reactor) : handler)
    }

    /// Graceful shutdown: accepts every connection already waiting in the kernel's queue,
    /// past the batch and connection limits (they bound a flood, and the backlog bounds
    /// this), then closes the socket. Closing a listener resets the connections still
    /// queued on it, which for a member of a SO_REUSEPORT group are clients the kernel
    /// promised to this socket; so nothing is left queued. A connection accepted here is
    /// served until its first input is answered (``ShutdownGrace``).
    func drainAndClose() {
        guard isListening else { return }
        isDraining = true
        isAcceptPaused = false
        acceptReady()
        close()
    }

    /// Stops watching the socket, so readiness cannot spin the loop, until a retry timer
    /// or a closing connection says to try again. Logs once per episode, not per attempt.
    private func pause(reason: String, forFiles: Bool) {
        isAcceptPaused = true
        events.disarm(0)
        if forFiles {
            if !pausedForFiles {
                pausedForFiles = true
                pausedSince = Reactor.now
                reactor.logger.warning("accept paused: \(reason)", metadata: ["listener": "\(address)"])
            }
            retryTimer = reactor.schedule(after: retryDelay) { [unowned self] _ in resumeAccepting() }
            retryDelay = min(retryDelay * 2, .seconds(1))
        } else if Reactor.now &- lastLimitWarning > 60_000_000_000 || lastLimitWarning == 0 {
            // Hovering at the limit pauses and resumes with every close: warn once a minute.
            lastLimitWarning = Reactor.now
            reactor.logger.warning("accept paused: \(reason)", metadata: ["listener": "\(address)"])
        }
    }

    private func resumeAccepting() {
        guard isListening, isAcceptPaused else { return }
        isAcceptPaused = false
        retryTimer?.cancel()
        retryTimer = nil
        events.arm(0)
        acceptReady()
    }

    private func acceptsAgain() {
        let pausedFor = Duration.nanoseconds(Int64(Reactor.now &- pausedSince))
        reactor.logger.notice("accepting again after \(pausedFor)", metadata: ["listener": "\(address)"])
        pausedForFiles = false
        retryDelay = .milliseconds(10)
    }

    /// One of this listener's connections closed (here, or on the reactor a group's
    /// acceptor handed it to): a descriptor and a slot are free.
    /// Accepting resumes after the current callback, so a new connection never opens
    /// inside the call that closed another.
    func connectionClosed() {
        connectionCount -= 1
        if isAcceptPaused, !resumeScheduled {
            resumeScheduled = true
            reactor.runSoon { [self] in
                resumeScheduled = false
                resumeAccepting()
            }
        }
    }
}

extension Reactor {
    /// Listens for TCP connections on a numeric address or host name.
    ///
    /// - Parameters:
    ///   - host: an IPv4 or IPv6 address (`127.0.0.1`, `::1`, `0.0.0.0`, `::`) or a name
    ///     resolved once, blocking, before listening.
    ///   - port: the port; 0 lets the kernel choose (read it back from ``TCPListener/address``).
    ///   - options: the listener's limits (``ListenerOptions``: backlog, connection limit, ...).
    ///   - connectionOptions: the limits of every connection it accepts (``ConnectionOptions``).
    ///   - makeHandler: called on each accepted connection, returns its handler.
    /// - Throws: ``ReactorError`` naming the address and cause: ``ReactorError/Code/addressInUse``,
    ///   ``ReactorError/Code/invalidAddress``, ``ReactorError/Code/permissionDenied``, ...
    @discardableResult
    public func listen(
        host: String, port: Int, options: ListenerOptions = .init(),
        connectionOptions: ConnectionOptions = .init(),
        makeHandler: @escaping (Connection) -> any ConnectionHandler
    ) throws(ReactorError) -> TCPListener {
        let address = try SocketAddress.resolve(host: host, port: port)[0]
        return try listen(on: address, options: options, connectionOptions: connectionOptions, makeHandler: makeHandler)
    }

    /// Listens for TCP connections on an address; see ``listen(host:port:options:connectionOptions:makeHandler:)``.
    @discardableResult
    public func listen(
        on address: SocketAddress, options: ListenerOptions = .init(),
        connectionOptions: ConnectionOptions = .init(),
        makeHandler: @escaping (Connection) -> any ConnectionHandler
    ) throws(ReactorError) -> TCPListener {
        preconditionInLoop()
        guard state != .stopped else {
            throw ReactorError(.reactorStopped, operation: .listen, address: address)
        }
        try options.validate()
        try connectionOptions.validate()
        let fd = try Socket.open(
            .stream, for: address,
            SocketSettings(reuseAddress: options.reuseAddress, reusePort: options.reusePort, ipv6Only: options.ipv6Only))
        try Socket.bind(fd, to: address)
        try Socket.listen(fd, backlog: options.backlog, address: address)
        let bound = SocketAddress.of(fd: fd, peer: false) ?? address
        let listener = TCPListener(
            reactor: self, fd: fd, address: bound, options: options,
            connectionOptions: connectionOptions, makeHandler: makeHandler)
        logger.debug("listening on tcp \(bound)")
        return listener
    }
}
