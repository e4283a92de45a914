import Glibc

/// An outgoing TCP connect in progress, made by ``Reactor/connect(to:timeout:options:handler:)``.
/// Cancel it to give up; the handler then hears nothing.
public final class PendingConnect {
    let reactor: Reactor
    /// Where the connect goes.
    public let address: SocketAddress
    private let fd: Int32
    private let config: ConnectionConfig
    private var handler: (any ConnectionHandler)?
    private var events = LoopEvents(count: 1)

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
        finish()
        if fd >= 0 { Socket.close(fd) }
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
        finish()
        let error = timedOut ? ETIMEDOUT : Socket.pendingError(fd)
        guard error == 0 else {
            Socket.close(fd)
            var failure = ReactorError(errno: error, operation: .connect, address: address)
            if timedOut { failure.hint = "no answer within the connect timeout" }
            handler.connectFailed(failure)
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
            handler.connectFailed(error)
        }
    }
}

extension Reactor {
    /// Opens a TCP connection without blocking. On success the handler hears
    /// ``ConnectionHandler/opened(_:)``; on failure (refused, unreachable, no answer within
    /// `timeout`) it hears ``ConnectionHandler/connectFailed(_:)`` with a ``ReactorError``
    /// naming the address and errno. Either way, never inside this call.
    @discardableResult
    public func connect(
        to address: SocketAddress, timeout: Duration = .seconds(10),
        options: ConnectionOptions = .init(), handler: any ConnectionHandler
    ) -> PendingConnect {
        preconditionInLoop()
        var fd: Int32 = -1
        var failure: ReactorError?
        do throws(ReactorError) {
            guard state != .stopped else { throw ReactorError(.reactorStopped, operation: .connect, address: address) }
            try options.validate()
            fd = try Socket.open(.stream, for: address)
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

    /// Resolves `host` (numeric, or a name through the blocking system resolver) and
    /// connects to its first address; see ``connect(to:timeout:options:handler:)``.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/invalidAddress`` when
    ///   `host` does not resolve.
    @discardableResult
    public func connect(
        host: String, port: Int, timeout: Duration = .seconds(10),
        options: ConnectionOptions = .init(), handler: any ConnectionHandler
    ) throws(ReactorError) -> PendingConnect {
        let address = try SocketAddress.resolve(host: host, port: port)[0]
        return connect(to: address, timeout: timeout, options: options, handler: handler)
    }
}
