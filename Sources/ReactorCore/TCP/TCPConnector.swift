import Glibc

/// An outgoing TCP connect in progress, made by ``Reactor/connect(to:from:timeout:options:handler:)``.
/// Cancel it to give up; the handler then hears nothing.
public final class PendingConnect {
    let reactor: Reactor
    /// Where the connect goes.
    public let address: SocketAddress
    private let fd: Int32
    private let config: ConnectionConfig
    private var handler: (any ConnectionHandler)?
    private var events = LoopEvents(count: 1)
    /// The host connect this is one attempt of, which decides what its outcome means.
    var race: PendingHostConnect?
    /// Told when the reactor, not its user, gives the connect up (it stops, or shuts down
    /// gracefully): for the async layer's connect, which would otherwise wait forever for
    /// an outcome the handler is never told.
    package var onAbandon: (() -> Void)?

    init(reactor: Reactor, fd: Int32, address: SocketAddress, config: ConnectionConfig, handler: any ConnectionHandler) {
        self.reactor = reactor
        self.fd = fd
        self.address = address
        self.config = config
        self.handler = handler
    }

    /// True until the connect succeeds, fails, or is cancelled.
    public var isPending: Bool { handler != nil }

    /// Gives up: closes the socket; the handler is not called.
    public func cancel() {
        guard handler != nil else { return }
        reactor.assertInLoop()
        handler = nil
        race = nil
        onAbandon = nil
        finish()
        if fd >= 0 { Socket.close(fd) }
    }

    /// The reactor gives up (`Registry.Entry.close()`): a cancel, then `onAbandon`.
    func abandon() {
        guard handler != nil else { return }
        let onAbandon = self.onAbandon
        cancel()
        onAbandon?()
    }

    func wait(timeout: Duration) {
        events.assign(0, on: reactor.base, .writableOnce(fd), owner: self) { _, what, context in
            LoopEvents.withOwner(context, PendingConnect.self) { $0.completed(timedOut: LoopEvents.timedOut(what)) }
        }
        events.arm(0, timeout: timeout.nanoseconds)
        reactor.registry.insert(.pendingConnect(self))
    }

    private func finish() {
        events.disarm(0)
        reactor.registry.remove(self)
    }

    private func completed(timedOut: Bool) {
        guard let handler else { return }
        self.handler = nil
        onAbandon = nil
        finish()
        let race = self.race
        self.race = nil
        let error = timedOut ? ETIMEDOUT : Socket.pendingError(fd)
        guard error == 0 else {
            Socket.close(fd)
            var failure = ReactorError(errno: error, operation: .connect, address: address)
            if timedOut { failure.hint = "no answer within the connect timeout" }
            if let race { race.attemptFailed(self, failure) } else { handler.connectFailed(failure) }
            return
        }
        if let race, !race.attemptConnected(self) {
            Socket.close(fd)
            return
        }
        let peer = SocketAddress.of(fd: fd, peer: true) ?? address
        Connection(reactor: reactor, fd: fd, peer: peer, config: config).start(handler: handler)
    }

    /// Reports a failure found before waiting (refused at once, bad options, ...) after
    /// the current callback, unless cancelled first.
    func failSoon(_ error: ReactorError) {
        reactor.runSoon { [self] in
            guard let handler else { return }
            self.handler = nil
            onAbandon = nil
            if let race {
                self.race = nil
                race.attemptFailed(self, error)
            } else {
                handler.connectFailed(error)
            }
        }
    }
}

extension Reactor {
    /// Opens a TCP connection without blocking. On success the handler hears
    /// ``ConnectionHandler/opened(_:)``; on failure (refused, unreachable, no answer within
    /// `timeout`) it hears ``ConnectionHandler/connectFailed(_:)`` with a ``ReactorError``
    /// naming the address and errno. Either way, never inside this call.
    ///
    /// `local`, when given, is the source address to connect from (its port 0: any port).
    /// With port 0 the port is picked at connect time for the whole address pair, so a
    /// client that spreads its connections over several local addresses (127.0.0.2,
    /// 127.0.0.3, ... on loopback) has the ephemeral ports of each to itself. A local
    /// address of the other family fails with ``ReactorError/Code/invalidAddress``, one
    /// this machine does not have with ``ReactorError/Code/addressNotAvailable``.
    @discardableResult
    public func connect(
        to address: SocketAddress, from local: SocketAddress? = nil, timeout: Duration = .seconds(10),
        options: ConnectionOptions = .init(), handler: any ConnectionHandler
    ) -> PendingConnect {
        preconditionInLoop()
        var fd: Int32 = -1
        var failure: ReactorError?
        do throws(ReactorError) {
            guard state != .stopped else { throw ReactorError(.reactorStopped, operation: .connect, address: address) }
            try options.validate()
            if let local, local.family != address.family {
                throw ReactorError(
                    .invalidAddress, operation: .bind, address: local,
                    hint: "the source address must be of the same family as \(address)")
            }
            let socket = try Socket.open(.stream, for: address, SocketSettings(bindAddressNoPort: local?.port == 0))
            if let local { try Socket.bind(socket, to: local) }  // closes the socket when it throws
            fd = socket
            if case .failed(let error) = Socket.connect(fd, to: address) {
                Socket.close(fd)
                fd = -1
                throw ReactorError(errno: error, operation: .connect, address: address)
            }
        } catch {
            failure = error
        }
        let pending = PendingConnect(
            reactor: self, fd: fd, address: address, config: ConnectionConfig(options), handler: handler)
        if let failure {
            pending.failSoon(failure)
        } else {
            pending.wait(timeout: timeout)
        }
        return pending
    }

    /// Connects to a host name or numeric address without blocking the reactor: a name is
    /// resolved on a helper thread by ``HappyEyeballsOptions/resolver``, then its addresses
    /// race as RFC 8305 (Happy Eyeballs) says: IPv6 first, the next address (IPv4 first
    /// among them) when an attempt fails or after ``HappyEyeballsOptions/attemptDelay``
    /// without an answer; the first to connect wins and the others are closed.
    ///
    /// The handler hears ``ConnectionHandler/opened(_:)`` or
    /// ``ConnectionHandler/connectFailed(_:)`` once, never inside this call. The failure
    /// names the host: ``ReactorError/Code/invalidAddress`` when it does not resolve,
    /// ``ReactorError/Code/timedOut`` when nothing connected within `timeout` (resolution
    /// included), otherwise the last attempt's error with its address.
    @discardableResult
    public func connect(
        host: String, port: Int, timeout: Duration = .seconds(10), options: ConnectionOptions = .init(),
        happyEyeballs: HappyEyeballsOptions = .init(), handler: any ConnectionHandler
    ) -> PendingHostConnect {
        preconditionInLoop()
        let pending = PendingHostConnect(
            reactor: self, host: host, port: port, timeout: timeout, options: options, eyeballs: happyEyeballs,
            handler: handler)
        pending.start(timeout: timeout)
        return pending
    }
}
