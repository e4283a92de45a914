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
    }
}

/// A listening TCP socket that accepts connections on its ``Reactor`` and gives each a
/// handler. Made by ``Reactor/listen(on:options:connectionOptions:makeHandler:)``.
///
/// When the process runs out of file descriptors (EMFILE, ENFILE) the listener stops
/// accepting, logs one warning, and retries on a timer (10 ms doubling to 1 s) or as soon
/// as one of its connections closes. Waiting connections stay in the kernel's backlog
/// meanwhile; the loop never spins.
public final class TCPListener {
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

    private let config: ConnectionConfig
    private let makeHandler: (Connection) -> any ConnectionHandler
    private var events = LoopEvents(count: 1)
    private var retryTimer: ReactorTimer?
    private var retryDelay: Duration = .milliseconds(10)
    private var pausedSince: UInt64 = 0
    private var pausedForFiles = false
    private var lastLimitWarning: UInt64 = 0
    private var resumeScheduled = false

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
        Socket.close(fileDescriptor)
        reactor.registry.remove(self)
    }

    private func acceptReady() {
        for _ in 0..<options.acceptBatch {
            guard isListening, !isAcceptPaused else { return }
            guard connectionCount < options.maxConnections else {
                pause(reason: "\(connectionCount) connections open, the limit (maxConnections)", forFiles: false)
                return
            }
            let (result, fd, peer) = Socket.accept(fileDescriptor)
            guard case .done = result else {
                guard case .failed(let error) = result else { return }  // none waiting
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
            if pausedForFiles { acceptsAgain() }
            connectionCount += 1
            let connection = Connection(reactor: reactor, fd: fd, peer: peer, config: config)
            connection.listener = self
            connection.start(handler: makeHandler(connection))
        }
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
                reactor.logger.warning("listener \(address): accept paused: \(reason)")
            }
            retryTimer = reactor.schedule(after: retryDelay) { [unowned self] _ in resumeAccepting() }
            retryDelay = min(retryDelay * 2, .seconds(1))
        } else if Reactor.now &- lastLimitWarning > 60_000_000_000 || lastLimitWarning == 0 {
            // Hovering at the limit pauses and resumes with every close: warn once a minute.
            lastLimitWarning = Reactor.now
            reactor.logger.warning("listener \(address): accept paused: \(reason)")
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
        reactor.logger.notice("listener \(address): accepting again after \(pausedFor)")
        pausedForFiles = false
        retryDelay = .milliseconds(10)
    }

    /// One of this listener's connections closed: a descriptor and a slot are free.
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
