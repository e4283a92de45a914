import CEvent

#if canImport(Glibc)
import Glibc
#endif

/// An outgoing TCP connect in progress, made by ``Reactor/connect(to:timeout:options:handler:)``.
/// Cancel it to give up; the handler then hears nothing.
public final class PendingConnect {
    unowned(unsafe) let reactor: Reactor
    /// Where the connect goes.
    public let address: SocketAddress
    private let fd: Int32
    private let config: ConnectionConfig
    private var handler: (any ConnectionHandler)?
    private var event: OpaquePointer?

    init(reactor: Reactor, fd: Int32, address: SocketAddress, config: ConnectionConfig, handler: any ConnectionHandler) {
        self.reactor = reactor
        self.fd = fd
        self.address = address
        self.config = config
        self.handler = handler
    }

    deinit {
        if let event { event_free(event) }
    }

    /// True until the connect succeeds, fails, or is cancelled.
    public var isPending: Bool { handler != nil }

    /// Gives up: closes the socket; the handler is not called.
    public func cancel() {
        guard handler != nil else { return }
        handler = nil
        finish()
        if fd >= 0 { Glibc.close(fd) }
    }

    func wait(timeout: Duration) {
        event = event_new(reactor.base, fd, Int16(EV_WRITE), { _, what, context in
            Unmanaged<PendingConnect>.fromOpaque(context!).takeUnretainedValue().completed(timedOut: what & Int16(EV_TIMEOUT) != 0)
        }, Unmanaged.passUnretained(self).toOpaque())
        let nanoseconds = timeout.nanoseconds
        var delay = timeval(tv_sec: Int(nanoseconds / 1_000_000_000), tv_usec: Int(nanoseconds % 1_000_000_000 / 1000))
        event_add(event, &delay)
        reactor.pendingConnects[ObjectIdentifier(self)] = self
    }

    private func finish() {
        if let event { event_del(event) }
        reactor.pendingConnects[ObjectIdentifier(self)] = nil
    }

    private func completed(timedOut: Bool) {
        guard let handler else { return }
        self.handler = nil
        finish()
        var error: Int32 = 0
        if timedOut {
            error = ETIMEDOUT
        } else {
            var length = socklen_t(MemoryLayout<Int32>.size)
            if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
        }
        guard error == 0 else {
            Glibc.close(fd)
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
        var fd: Int32 = -1
        var failure: ReactorError?
        do throws(ReactorError) {
            guard state != .stopped else { throw ReactorError(.reactorStopped, operation: .connect, address: address) }
            try options.validate()
            fd = cevent_socket(address.domain, Int32(SOCK_STREAM.rawValue))
            guard fd >= 0 else { throw ReactorError(errno: errno, operation: .socket, address: address) }
            if address.withSockAddr({ Glibc.connect(fd, $0, $1) }) != 0, errno != EINPROGRESS {
                let error = ReactorError(errno: errno, operation: .connect, address: address)
                Glibc.close(fd)
                fd = -1
                throw error
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
