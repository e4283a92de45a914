// Reactors and servers scoped to a block of a test: `withReactor`, `withServer`,
// `withEchoServer`, `withUDPServer`, `withUDPEchoServer`. Each starts a reactor on a
// thread of its own, runs the body, and stops and joins the thread when the body returns
// or throws, within a deadline; a reactor that does not end fails the test instead of
// hanging it. Jobs reach the reactor thread through `sync` (blocking) or `run` (async).

import Dispatch
import Foundation
import Logging
import ReactorCore
import Testing


/// A reactor running on a thread of its own for the length of a `with...` block.
public final class TestReactor: Sendable {
    public let thread: ReactorThread
    public var handle: ReactorHandle { thread.handle }
    /// Set once the thread has been joined: joining a thread twice is undefined.
    private let joined = Locked(false)

    init(_ thread: ReactorThread) { self.thread = thread }

    /// Starts a reactor thread, runs `setup` on it, and returns with setup's result.
    static func start<S: Sendable>(
        name: String, logger: Logger, outputBudget: Int, setup: @escaping @Sendable (Reactor) throws -> S
    ) throws -> (TestReactor, S) {
        let (thread, value) = try ReactorThread.start(name: name, logger: logger, outputBudget: outputBudget, setup: setup)
        return (TestReactor(thread), value)
    }

    /// Runs `work` on the reactor thread and blocks until it returns (at most `timeout`).
    /// A blocked thread of the test's own keeps polling on time even when busy tests hold
    /// every thread of Swift's cooperative pool.
    public func sync<T: Sendable>(
        timeout: Duration = .seconds(10), _ work: @escaping @Sendable (Reactor) throws -> T
    ) throws -> T {
        let result = Locked<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let posted = handle.execute { reactor in
            result.set(Result { try work(reactor) })
            done.signal()
        }
        guard posted else { throw TestFailure("the reactor has stopped") }
        guard done.wait(timeout: .now() + .milliseconds(timeout.milliseconds)) == .success else {
            throw TestFailure("the reactor did not run the job within \(timeout)")
        }
        return try result.value!.get()
    }

    /// Runs `work` on the reactor thread and returns its result, without blocking a thread.
    public func run<T: Sendable>(
        timeout: Duration = .seconds(10), _ work: @escaping @Sendable (Reactor) throws -> T
    ) async throws -> T {
        let result = Locked<Result<T, any Error>?>(nil)
        guard handle.execute({ reactor in result.set(Result { try work(reactor) }) }) else {
            throw TestFailure("the reactor has stopped")
        }
        try await eventually("a job on the reactor thread", timeout: timeout) { result.value != nil }
        return try result.value!.get()
    }

    /// True once the reactor's `run()` has returned (its mailbox refuses work), waiting at
    /// most `timeout`.
    public func waitUntilStopped(timeout: Duration = .seconds(5)) -> Bool {
        waitUntil(timeout: timeout) { !handle.execute { _ in } }
    }

    /// Stops the reactor and joins its thread, recording an issue if that takes too long.
    /// A test may stop it itself (to test stopping); the block's own stop then does nothing.
    public func stop(sourceLocation: SourceLocation = #_sourceLocation) {
        guard joined.update({ joined in
            defer { joined = true }
            return !joined
        }) else { return }
        thread.stopAndJoin(sourceLocation: sourceLocation)
    }
}

/// Runs `body` with a reactor on a thread of its own, set up by `setup` (on the reactor
/// thread, before `body`); stops and joins it when `body` returns or throws.
public func withReactor<S: Sendable, T>(
    name: String = "test-reactor", logger: Logger = Logger(label: "reactor"),
    outputBudget: Int = Reactor.defaultOutputBudget,
    setup: @escaping @Sendable (Reactor) throws -> S,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestReactor, S) throws -> T
) throws -> T {
    let (reactor, value) = try TestReactor.start(name: name, logger: logger, outputBudget: outputBudget, setup: setup)
    defer { reactor.stop(sourceLocation: sourceLocation) }
    return try body(reactor, value)
}

/// The async form of the function above.
public func withReactor<S: Sendable, T>(
    name: String = "test-reactor", logger: Logger = Logger(label: "reactor"),
    outputBudget: Int = Reactor.defaultOutputBudget,
    setup: @escaping @Sendable (Reactor) throws -> S,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestReactor, S) async throws -> T
) async throws -> T {
    let (reactor, value) = try TestReactor.start(name: name, logger: logger, outputBudget: outputBudget, setup: setup)
    defer { reactor.stop(sourceLocation: sourceLocation) }
    return try await body(reactor, value)
}

/// Runs `body` with a reactor on a thread of its own; stops and joins it when `body`
/// returns or throws.
public func withReactor<T>(
    name: String = "test-reactor", logger: Logger = Logger(label: "reactor"),
    outputBudget: Int = Reactor.defaultOutputBudget,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestReactor) throws -> T
) throws -> T {
    try withReactor(name: name, logger: logger, outputBudget: outputBudget, setup: { _ in }, sourceLocation: sourceLocation) {
        reactor, _ in try body(reactor)
    }
}

/// The async form of the function above.
public func withReactor<T>(
    name: String = "test-reactor", logger: Logger = Logger(label: "reactor"),
    outputBudget: Int = Reactor.defaultOutputBudget,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestReactor) async throws -> T
) async throws -> T {
    try await withReactor(name: name, logger: logger, outputBudget: outputBudget, setup: { _ in }, sourceLocation: sourceLocation) {
        reactor, _ in try await body(reactor)
    }
}

// MARK: - Servers

/// A reactor thread with one TCP listener, for the length of a `withServer` block.
public final class TestServer: Sendable {
    public let reactor: TestReactor
    /// The listener's address, with the port the kernel chose.
    public let address: SocketAddress
    public var port: Int { address.port }
    public var handle: ReactorHandle { reactor.handle }

    init(reactor: TestReactor, address: SocketAddress) {
        self.reactor = reactor
        self.address = address
    }

    /// See ``TestReactor/sync(timeout:_:)``.
    public func sync<T: Sendable>(timeout: Duration = .seconds(10), _ work: @escaping @Sendable (Reactor) throws -> T) throws -> T {
        try reactor.sync(timeout: timeout, work)
    }

    /// See ``TestReactor/run(timeout:_:)``.
    public func run<T: Sendable>(
        timeout: Duration = .seconds(10), _ work: @escaping @Sendable (Reactor) throws -> T
    ) async throws -> T {
        try await reactor.run(timeout: timeout, work)
    }
}

/// Runs `body` with a reactor thread listening on `host` port 0, handlers made by
/// `makeHandler` (on the reactor thread) after `setup` ran there; stops and joins it when
/// `body` returns or throws.
public func withServer<T>(
    host: String = "127.0.0.1", options: ListenerOptions = .init(), connectionOptions: ConnectionOptions = .init(),
    outputBudget: Int = Reactor.defaultOutputBudget, logger: Logger = Logger(label: "reactor"),
    setup: @escaping @Sendable (Reactor) throws -> Void = { _ in },
    makeHandler: @escaping @Sendable (Reactor, Connection) -> any ConnectionHandler,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestServer) throws -> T
) throws -> T {
    let server = try startServer(host, options, connectionOptions, outputBudget, logger, setup, makeHandler)
    defer { server.reactor.stop(sourceLocation: sourceLocation) }
    return try body(server)
}

/// The async form of the function above.
public func withServer<T>(
    host: String = "127.0.0.1", options: ListenerOptions = .init(), connectionOptions: ConnectionOptions = .init(),
    outputBudget: Int = Reactor.defaultOutputBudget, logger: Logger = Logger(label: "reactor"),
    setup: @escaping @Sendable (Reactor) throws -> Void = { _ in },
    makeHandler: @escaping @Sendable (Reactor, Connection) -> any ConnectionHandler,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestServer) async throws -> T
) async throws -> T {
    let server = try startServer(host, options, connectionOptions, outputBudget, logger, setup, makeHandler)
    defer { server.reactor.stop(sourceLocation: sourceLocation) }
    return try await body(server)
}

/// Runs `body` with an echo server (``ByteEcho``); see `withServer`.
public func withEchoServer<T>(
    host: String = "127.0.0.1", connectionOptions: ConnectionOptions = .init(),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestServer) throws -> T
) throws -> T {
    try withServer(host: host, connectionOptions: connectionOptions, makeHandler: { _, _ in ByteEcho() }, sourceLocation: sourceLocation, body)
}

/// The async form of the function above.
public func withEchoServer<T>(
    host: String = "127.0.0.1", connectionOptions: ConnectionOptions = .init(),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestServer) async throws -> T
) async throws -> T {
    try await withServer(
        host: host, connectionOptions: connectionOptions, makeHandler: { _, _ in ByteEcho() }, sourceLocation: sourceLocation, body)
}

private func startServer(
    _ host: String, _ options: ListenerOptions, _ connectionOptions: ConnectionOptions, _ outputBudget: Int,
    _ logger: Logger, _ setup: @escaping @Sendable (Reactor) throws -> Void,
    _ makeHandler: @escaping @Sendable (Reactor, Connection) -> any ConnectionHandler
) throws -> TestServer {
    let (reactor, address) = try TestReactor.start(name: "test-server", logger: logger, outputBudget: outputBudget) { reactor in
        try setup(reactor)
        return try reactor.listen(
            host: host, port: 0, options: options, connectionOptions: connectionOptions,
            makeHandler: { makeHandler(reactor, $0) }
        ).address
    }
    return TestServer(reactor: reactor, address: address)
}

/// A reactor thread with one UDP socket, for the length of a `withUDPServer` block.
public final class TestUDPServer: Sendable {
    public let reactor: TestReactor
    /// The socket's address, with the port the kernel chose.
    public let address: SocketAddress
    /// The socket. Touch it on the reactor thread only.
    public let socket: ReactorBound<UDPSocket>
    public var port: Int { address.port }
    public var handle: ReactorHandle { reactor.handle }

    init(reactor: TestReactor, address: SocketAddress, socket: ReactorBound<UDPSocket>) {
        self.reactor = reactor
        self.address = address
        self.socket = socket
    }

    /// Runs `work` on the reactor thread with the socket; see ``TestReactor/sync(timeout:_:)``.
    public func sync<T: Sendable>(timeout: Duration = .seconds(10), _ work: @escaping @Sendable (UDPSocket) throws -> T) throws -> T {
        let socket = socket
        return try reactor.sync(timeout: timeout) { _ in try work(socket.value) }
    }

    /// Runs `work` on the reactor thread with the socket; see ``TestReactor/run(timeout:_:)``.
    public func run<T: Sendable>(
        timeout: Duration = .seconds(10), _ work: @escaping @Sendable (UDPSocket) throws -> T
    ) async throws -> T {
        let socket = socket
        return try await reactor.run(timeout: timeout) { _ in try work(socket.value) }
    }

    static func start(
        host: String, options: UDPOptions, makeHandler: @escaping @Sendable (Reactor) -> any DatagramHandler
    ) throws -> TestUDPServer {
        let (reactor, socket) = try TestReactor.start(
            name: "test-udp-server", logger: Logger(label: "reactor"), outputBudget: Reactor.defaultOutputBudget
        ) { reactor in
            ReactorBound(try reactor.bindUDP(host: host, port: 0, options: options, handler: makeHandler(reactor)))
        }
        let address = try reactor.sync { _ in socket.value.localAddress }
        return TestUDPServer(reactor: reactor, address: address, socket: socket)
    }
}

/// Runs `body` with a reactor thread whose UDP socket is bound to `host` port 0, with the
/// handler `makeHandler` makes (on the reactor thread); stops and joins it when `body`
/// returns or throws.
public func withUDPServer<T>(
    host: String = "127.0.0.1", options: UDPOptions = UDPOptions(),
    makeHandler: @escaping @Sendable (Reactor) -> any DatagramHandler,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestUDPServer) throws -> T
) throws -> T {
    let server = try TestUDPServer.start(host: host, options: options, makeHandler: makeHandler)
    defer { server.reactor.stop(sourceLocation: sourceLocation) }
    return try body(server)
}

/// The async form of the function above.
public func withUDPServer<T>(
    host: String = "127.0.0.1", options: UDPOptions = UDPOptions(),
    makeHandler: @escaping @Sendable (Reactor) -> any DatagramHandler,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestUDPServer) async throws -> T
) async throws -> T {
    let server = try TestUDPServer.start(host: host, options: options, makeHandler: makeHandler)
    defer { server.reactor.stop(sourceLocation: sourceLocation) }
    return try await body(server)
}

/// Runs `body` with a UDP echo server (``DatagramEcho``); see `withUDPServer`.
public func withUDPEchoServer<T>(
    host: String = "127.0.0.1", options: UDPOptions = UDPOptions(),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestUDPServer) throws -> T
) throws -> T {
    try withUDPServer(host: host, options: options, makeHandler: { _ in DatagramEcho() }, sourceLocation: sourceLocation, body)
}

/// The async form of the function above.
public func withUDPEchoServer<T>(
    host: String = "127.0.0.1", options: UDPOptions = UDPOptions(),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestUDPServer) async throws -> T
) async throws -> T {
    try await withUDPServer(host: host, options: options, makeHandler: { _ in DatagramEcho() }, sourceLocation: sourceLocation, body)
}

// MARK: - Handlers every target uses

/// Echoes bytes as they come, a correct echo for every stream framing, and stops reading
/// while the connection is not writable, so a peer that does not read cannot grow the
/// queue past the high watermark. The core tests' echo: the bundled `EchoHandler` lives
/// in ReactorServices, above the core.
public final class ByteEcho: ConnectionHandler {
    public init() {}

    public func received(_ bytes: RawSpan, on connection: Connection) {
        connection.write(bytes)
    }

    public func writabilityChanged(_ connection: Connection) {
        if connection.isWritable { connection.resumeReading() } else { connection.pauseReading() }
    }
}

/// Sends every datagram back to its sender.
public final class DatagramEcho: DatagramHandler {
    public init() {}
    public func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        socket.send(datagram, to: sender)
    }
}
