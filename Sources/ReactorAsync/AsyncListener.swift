import Logging
import ReactorCore
import ReactorFraming

/// A listening TCP socket for async code: ``connections`` is an `AsyncSequence` of the
/// connections it accepts, and ``serve(_:)`` runs one child task per connection.
/// Made by `ReactorHandle.listen(host:port:framing:options:connectionOptions:)`.
///
/// ```swift
/// let listener = try await handle.listen(host: "127.0.0.1", port: 0, framing: .line)
/// try await listener.serve { connection in
///     for try await line in connection.inbound { try await connection.outbound.write(line) }
/// }
/// ```
///
/// Connections accepted but not yet taken wait in a queue bounded by the listener's
/// `ListenerOptions.maxConnections`, since each counts against it. The
/// sequence ends when the listener closes: by ``close()``, or by the reactor's graceful
/// shutdown, which closes every listener and then every connection, so a ``serve(_:)``
/// whose handlers end at the end of input returns on its own.
public final class AsyncListener: Sendable {
    /// The bound address; with port 0 requested, this holds the port the kernel chose.
    public let address: SocketAddress
    let core: ListenerCore

    init(address: SocketAddress, core: ListenerCore) {
        self.address = address
        self.core = core
    }

    /// The reactor's executor: ``serve(_:)`` runs each connection's task on it.
    public var executor: ReactorExecutor { core.executor }

    /// The connections accepted, in order; nil once the listener has closed and the
    /// queue is empty. Iterate it from one task at a time.
    public var connections: Connections { Connections(core: core) }

    /// Stops listening; connections already accepted stay open and queued ones are still
    /// handed out.
    public func close() {
        core.handle.execute { [core] _ in core.close() }
    }

    /// Accepts connections until the listener closes, running `handler` for each in a
    /// child task that prefers the reactor's executor (so the handler's own code runs on
    /// the reactor thread, with no hop per frame). A connection is closed gracefully when
    /// its handler returns or throws; an error ends only that connection, and is logged
    /// at debug level. Returns once the listener has closed and every handler has
    /// returned. Cancelling the task that calls it closes the listener and cancels the
    /// handlers, which closes their connections.
    public func serve(_ handler: @escaping @Sendable (AsyncConnection) async throws -> Void) async {
        // The accept loop runs on the reactor too: taking a connection costs no hop.
        await withTaskExecutorPreference(core.executor) { [self] in await acceptLoop(handler) }
    }

    private func acceptLoop(_ handler: @escaping @Sendable (AsyncConnection) async throws -> Void) async {
        let logger = core.logger
        await withDiscardingTaskGroup { group in
            do {
                for try await connection in connections {
                    group.addTask {
                        do {
                            try await connection.executeThenClose { _, _ in try await handler(connection) }
                        } catch {
                            logger.debug("async connection handler ended: \(error)")
                        }
                    }
                }
            } catch {
                // Cancelled: the listener is closed; the children are cancelled with the group.
            }
        }
    }

    /// The connections a listener accepts; see ``AsyncListener/connections``.
    public struct Connections: AsyncSequence, Sendable {
        public typealias Element = AsyncConnection
        public typealias Failure = any Error
        let core: ListenerCore

        public func makeAsyncIterator() -> Iterator { Iterator(core: core) }

        /// Takes connections one by one.
        public struct Iterator: AsyncIteratorProtocol {
            let core: ListenerCore

            public mutating func next(isolation actor: isolated (any Actor)?) async throws -> AsyncConnection? {
                if core.executor.isCurrentThread { return try await core.next(isolation: actor) }
                let connection = try await withTaskExecutorPreference(core.executor) { [core] in try await core.nextHopped() }
                connection?.core.takeOver()
                return connection
            }

            public mutating func next() async throws -> AsyncConnection? {
                try await next(isolation: nil)
            }
        }
    }
}

/// The reactor-side half of an ``AsyncListener``, confined to the reactor thread.
final class ListenerCore: @unchecked Sendable {
    let executor: ReactorExecutor
    let handle: ReactorHandle
    let logger: Logger
    var listener: TCPListener?
    private var accepted: [AsyncConnection] = []
    private var head = 0
    private var waiter: UnsafeContinuation<AsyncConnection?, any Error>?
    private var isClosed = false

    init(reactor: Reactor) {
        executor = reactor.executor
        handle = reactor.handle
        logger = reactor.logger
    }

    func accept(_ connection: AsyncConnection) {
        if let waiter {
            self.waiter = nil
            waiter.resume(returning: connection)
        } else {
            accepted.append(connection)
        }
    }

    func listenerClosed() {
        isClosed = true
        listener = nil
        if let waiter, head == accepted.count {
            self.waiter = nil
            waiter.resume(returning: nil)
        }
    }

    func close() {
        listener?.close()
    }

    private func take() -> AsyncConnection? {
        guard head < accepted.count else { return nil }
        let connection = accepted[head]
        head += 1
        if head == accepted.count {
            accepted.removeAll(keepingCapacity: true)
            head = 0
        }
        return connection
    }

    func next(isolation actor: isolated (any Actor)?) async throws -> AsyncConnection? {
        // The reactor has stopped (see ConnectionCore.reactorHasGone): the listener closed with it.
        if reactorHasGone { return nil }
        if let connection = take() { return connection }
        if isClosed { return nil }
        if Task.isCancelled {
            close()
            throw CancellationError()
        }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation(isolation: actor) { continuation in
                // The runtime may have hopped (through the reactor's queue) on the way
                // here: look again before waiting.
                if reactorHasGone {
                    continuation.resume(returning: nil)
                } else if let connection = take() {
                    continuation.resume(returning: connection)
                } else if isClosed {
                    continuation.resume(returning: nil)
                } else {
                    waiter = continuation
                }
            }
        } onCancel: { [self] in
            handle.execute { _ in
                self.close()
                if let waiter = self.waiter {
                    self.waiter = nil
                    waiter.resume(throwing: CancellationError())
                }
            }
        }
    }

    /// False on the reactor thread; true once the reactor has stopped, off its thread.
    private var reactorHasGone: Bool {
        if executor.isCurrentThread { return false }
        precondition(executor.hasStopped, "not on the reactor's thread: this code must run on the reactor")
        return true
    }

    /// Nonisolated: runs on the task's preferred executor, the reactor.
    func nextHopped() async throws -> AsyncConnection? {
        try await next(isolation: nil)
    }
}

/// Async listening and connecting on a reactor, from any task.
extension ReactorHandle {
    /// Listens for TCP connections for async code: each accepted connection is framed
    /// with `framing` and handed out by the ``AsyncListener``.
    ///
    /// - Throws: `ReactorError` naming the address and cause (address in
    ///   use, invalid address, bad options, reactor stopped).
    public func listen(
        host: String, port: Int, framing: Framing = .raw, options: ListenerOptions = .init(),
        connectionOptions: AsyncConnectionOptions = .init()
    ) async throws -> AsyncListener {
        try await listen(host: host, port: port, options: options, connectionOptions: connectionOptions) {
            framing.makeFramer()
        }
    }

    /// Listens, framing each connection with a framer of your own from `makeFramer`;
    /// see ``listen(host:port:framing:options:connectionOptions:)``.
    public func listen(
        host: String, port: Int, options: ListenerOptions = .init(),
        connectionOptions: AsyncConnectionOptions = .init(),
        makeFramer: @escaping @Sendable () -> any Framer
    ) async throws -> AsyncListener {
        try connectionOptions.validate()
        return try await submit { reactor in
            let core = ListenerCore(reactor: reactor)
            let listener = try reactor.listen(
                host: host, port: port, options: options, connectionOptions: connectionOptions.connection
            ) { _ in
                let connection = ConnectionCore(reactor: reactor, options: connectionOptions)
                connection.onOpen = { opened in
                    if case .success(let connection) = opened { core.accept(AsyncConnection(core: connection)) }
                }
                return FramedConnection(framer: makeFramer(), handler: connection)
            }
            core.listener = listener
            listener.onClose = { core.listenerClosed() }
            return AsyncListener(address: listener.address, core: core)
        }
    }

    /// Opens a TCP connection for async code, framed with `framing`, and returns once it
    /// is established.
    ///
    /// - Throws: `ReactorError`: refused, unreachable, no answer within
    ///   `timeout` (`ReactorError.Code.timedOut`), an invalid host, a stopped reactor.
    ///   Cancelling the calling task gives up the connect and throws `CancellationError`.
    public func connect(
        host: String, port: Int, framing: Framing = .raw, timeout: Duration = .seconds(10),
        options: AsyncConnectionOptions = .init()
    ) async throws -> AsyncConnection {
        try await connect(host: host, port: port, timeout: timeout, options: options) { framing.makeFramer() }
    }

    /// Opens a TCP connection framed by a framer of your own from `makeFramer`; see
    /// ``connect(host:port:framing:timeout:options:)``.
    public func connect(
        host: String, port: Int, timeout: Duration = .seconds(10), options: AsyncConnectionOptions = .init(),
        makeFramer: @escaping @Sendable () -> any Framer
    ) async throws -> AsyncConnection {
        try await connect(host: host, port: port, timeout: timeout, options: options, client: false, makeFramer: makeFramer)
    }

    func connect(
        host: String, port: Int, timeout: Duration, options: AsyncConnectionOptions, client: Bool,
        makeFramer: @escaping @Sendable () -> any Framer
    ) async throws -> AsyncConnection {
        try options.validate()
        let address = try SocketAddress.resolve(host: host, port: port)[0]
        let attempt = ConnectAttempt()
        let core = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ConnectionCore, any Error>) in
                let posted = execute { reactor in
                    let core = ConnectionCore(reactor: reactor, options: options)
                    core.isClient = client
                    core.onOpen = { continuation.resume(with: $0) }
                    let framed = FramedConnection(framer: makeFramer(), handler: core)
                    let pending = reactor.connect(
                        to: address, timeout: timeout, options: options.connection,
                        handler: ConnectAdapter(framed: framed, core: core))
                    pending.onAbandon = {
                        core.connectFailed(ReactorError(
                            .reactorStopped, operation: .connect, address: address,
                            hint: "the reactor stopped, or began a graceful shutdown, before the connect completed"))
                    }
                    attempt.started(LoopBound(pending, reactor: reactor), core: core)
                }
                if !posted { continuation.resume(throwing: ReactorError(.reactorStopped, operation: .connect, address: address)) }
            }
        } onCancel: {
            execute { _ in attempt.cancel() }
        }
        core.takeOver()
        return AsyncConnection(core: core)
    }
}

/// A connect in progress, for its cancellation: touched on the reactor thread only.
private final class ConnectAttempt: @unchecked Sendable {
    private var pending: LoopBound<PendingConnect>?
    private var core: ConnectionCore?
    private var cancelled = false

    func started(_ pending: LoopBound<PendingConnect>, core: ConnectionCore) {
        self.pending = pending
        self.core = core
        if cancelled { cancel() }
    }

    func cancel() {
        cancelled = true
        guard let pending, let core else { return }
        if pending.value.isPending {
            pending.value.cancel()
            core.connectFailed(CancellationError())
        } else {
            core.cancel()
        }
    }
}
