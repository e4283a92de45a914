// Helpers for the ReactorCore tests: reactors on their own threads, handlers that record
// what they saw, byte patterns. What the test targets share (waiting, the POSIX client,
// child processes) is in ReactorTestSupport.
//
// Rules the helpers follow so that a bug fails a test instead of hanging the suite:
// every wait has a deadline, every socket call that can block is bounded by poll(),
// and every reactor thread is stopped and joined with a timeout.

import Dispatch
import Foundation
import Glibc
import ReactorCore
import ReactorServices
import ReactorTestSupport
import Testing

// MARK: - Threads

/// Runs `body` on a new thread and waits for it at most `timeout`.
func onNewThread<T: Sendable>(
    timeout: Duration = .seconds(10), _ body: @escaping @Sendable () throws -> T
) throws -> T {
    let result = Locked<Result<T, any Error>?>(nil)
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        result.set(Result { try body() })
        done.signal()
    }
    thread.start()
    guard done.wait(timeout: .now() + .milliseconds(timeout.milliseconds)) == .success else {
        throw TestFailure("the thread did not finish within \(timeout)")
    }
    return try result.value!.get()
}

/// On a new thread with a new reactor, runs `prepare`, then `body`; returns the
/// ``ReactorError`` that `body` threw, or nil if it threw none. Any other error is thrown.
func reactorError(
    prepare: @escaping @Sendable (Reactor) throws -> Void = { _ in },
    _ body: @escaping @Sendable (Reactor) throws -> Void
) throws -> ReactorError? {
    try onNewThread { () -> ReactorError? in
        let reactor = try Reactor()
        try prepare(reactor)
        do {
            try body(reactor)
            return nil
        } catch let error as ReactorError {
            return error
        }
    }
}

// MARK: - Reactors on threads

extension ReactorHandle {
    /// Runs `work` on the reactor thread and waits for its result (at most `timeout`).
    func sync<T: Sendable>(
        timeout: Duration = .seconds(5), _ work: @escaping @Sendable (Reactor) throws -> T
    ) throws -> T {
        let result = Locked<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let posted = execute { reactor in
            result.set(Result { try work(reactor) })
            done.signal()
        }
        guard posted else { throw TestFailure("the reactor has stopped") }
        guard done.wait(timeout: .now() + .milliseconds(timeout.milliseconds)) == .success else {
            throw TestFailure("the reactor did not run the job within \(timeout)")
        }
        return try result.value!.get()
    }

    /// True once the reactor's run() has returned (its mailbox refuses work).
    func waitUntilStopped(timeout: Duration = .seconds(5)) -> Bool {
        waitUntil(timeout: timeout) { !execute { _ in } }
    }
}

/// A reactor thread with one TCP listener.
struct TestServer {
    let thread: ReactorThread
    let address: SocketAddress
    var handle: ReactorHandle { thread.handle }
    var port: Int { address.port }

    /// Starts a reactor thread listening on `host` port 0 with handlers from `makeHandler`
    /// (called on the reactor thread).
    static func start(
        host: String = "127.0.0.1", options: ListenerOptions = .init(),
        connectionOptions: ConnectionOptions = .init(), outputBudget: Int = Reactor.defaultOutputBudget,
        makeHandler: @escaping @Sendable (Reactor, Connection) -> any ConnectionHandler
    ) throws -> TestServer {
        let (thread, address) = try ReactorThread.start(name: "test-server", outputBudget: outputBudget) { reactor in
            try reactor.listen(
                host: host, port: 0, options: options, connectionOptions: connectionOptions,
                makeHandler: { makeHandler(reactor, $0) }
            ).address
        }
        return TestServer(thread: thread, address: address)
    }

    /// A server whose every connection is a ``ProbeHandler`` recording into the returned
    /// logs, around the bundled ``EchoHandler`` when `echo` is set, and set up further by
    /// `configure` (on the reactor thread, before the connection opens).
    static func probed(
        host: String = "127.0.0.1", _ options: ConnectionOptions = .init(), echo: Bool = false, keepReceivedBytes: Bool = true,
        configure: @escaping @Sendable (ProbeHandler, Reactor) -> Void = { _, _ in }
    ) throws -> (server: TestServer, logs: ConnectionLogs) {
        let logs = ConnectionLogs()
        let server = try start(host: host, connectionOptions: options) { reactor, _ in
            let handler = logs.probe(inner: echo ? EchoHandler() : nil, keepReceivedBytes: keepReceivedBytes)
            configure(handler, reactor)
            return handler
        }
        return (server, logs)
    }

    /// An echo server using the bundled ``EchoHandler``.
    static func echo(host: String = "127.0.0.1", connectionOptions: ConnectionOptions = .init()) throws -> TestServer {
        try start(host: host, connectionOptions: connectionOptions) { _, _ in EchoHandler() }
    }

    func stop(sourceLocation: SourceLocation = #_sourceLocation) {
        thread.stopAndJoin(sourceLocation: sourceLocation)
    }
}

// MARK: - Recording handlers

/// What one connection's handler saw, written on the reactor thread, read by the test.
struct ConnectionRecord: Sendable {
    var opened = 0
    var peer: SocketAddress?
    var local: SocketAddress?
    var receivedCount = 0
    var received: [UInt8] = []
    var inputClosed = 0
    /// (isWritable, isReadingPaused, queuedOutputBytes) each time writability changed.
    var writabilityChanges: [(writable: Bool, readingPaused: Bool, queued: Int)] = []
    /// The largest output queue seen after any callback.
    var maxQueued = 0
    var closed: [CloseReason] = []
    var connectFailed: ReactorError?
    /// Free-form observations made by test hooks.
    var notes: [String] = []

    var closeReason: CloseReason? { closed.first }
}

/// The records of every connection a listener (or a connect) produced, in order.
final class ConnectionLogs: Sendable {
    private let records = Locked<[Locked<ConnectionRecord>]>([])
    private let connections = Locked<[ReactorBound<Connection?>]>([])

    func add() -> Locked<ConnectionRecord> {
        let record = Locked(ConnectionRecord())
        records.update { $0.append(record) }
        return record
    }

    /// A handler recording into a new record; its connection is reachable through
    /// ``connection(_:)`` from jobs on the reactor thread.
    func probe(inner: (any ConnectionHandler)? = nil, keepReceivedBytes: Bool = true) -> ProbeHandler {
        let handler = ProbeHandler(record: add(), inner: inner, keepReceivedBytes: keepReceivedBytes)
        connections.update { $0.append(handler.connection) }
        return handler
    }

    /// The `index`th probed connection (nil once closed). Touch it on the reactor thread only.
    func connection(_ index: Int = 0) -> ReactorBound<Connection?> {
        connections.value[index]
    }

    var all: [ConnectionRecord] { records.value.map(\.value) }

    /// The `index`th connection's record, waiting for it to exist.
    func record(_ index: Int = 0, timeout: Duration = .seconds(5)) throws -> Locked<ConnectionRecord> {
        guard let list = records.wait(timeout: timeout, until: { $0.count > index }) else {
            throw TestFailure("connection #\(index) was not opened within \(timeout)")
        }
        return list[index]
    }

    /// Waits for the `index`th connection to close and returns why.
    func closeReason(_ index: Int = 0, timeout: Duration = .seconds(5)) throws -> CloseReason {
        let record = try record(index, timeout: timeout)
        guard let closed = record.wait(timeout: timeout, until: { !$0.closed.isEmpty }) else {
            throw TestFailure("connection #\(index) did not close within \(timeout)")
        }
        return closed.closed[0]
    }
}

/// A handler that records every hook into a ``ConnectionRecord`` and forwards to an
/// optional inner handler (for example the bundled ``EchoHandler``) and to test hooks.
/// Lives on the reactor thread.
final class ProbeHandler: ConnectionHandler {
    let record: Locked<ConnectionRecord>
    let inner: (any ConnectionHandler)?
    /// The connection, for jobs the test runs on the reactor thread.
    let connection = ReactorBound<Connection?>(nil)
    var keepReceivedBytes: Bool
    var onOpened: ((Connection) -> Void)?
    var onReceived: (([UInt8], Connection) -> Void)?
    var onInputClosed: ((Connection) -> Void)?
    var onWritabilityChanged: ((Connection) -> Void)?

    init(record: Locked<ConnectionRecord>, inner: (any ConnectionHandler)? = nil, keepReceivedBytes: Bool = true) {
        self.record = record
        self.inner = inner
        self.keepReceivedBytes = keepReceivedBytes
    }

    private func noteQueue(_ connection: Connection) {
        let queued = connection.queuedOutputBytes
        record.update { $0.maxQueued = max($0.maxQueued, queued) }
    }

    func opened(_ connection: Connection) {
        self.connection.value = connection
        let peer = connection.peerAddress
        let local = connection.localAddress
        record.update {
            $0.opened += 1
            $0.peer = peer
            $0.local = local
        }
        inner?.opened(connection)
        onOpened?(connection)
        noteQueue(connection)
    }

    func received(_ bytes: RawSpan, on connection: Connection) {
        let count = bytes.byteCount
        let copy = keepReceivedBytes || onReceived != nil ? bytes.copyBytes() : []
        let keep = keepReceivedBytes
        record.update {
            $0.receivedCount += count
            if keep { $0.received += copy }
        }
        inner?.received(bytes, on: connection)
        onReceived?(copy, connection)
        noteQueue(connection)
    }

    func writabilityChanged(_ connection: Connection) {
        inner?.writabilityChanged(connection)
        // Sampled after the inner handler reacted, so isReadingPaused shows its decision.
        let sample = (connection.isWritable, connection.isReadingPaused, connection.queuedOutputBytes)
        record.update { $0.writabilityChanges.append(sample) }
        onWritabilityChanged?(connection)
    }

    func inputClosed(_ connection: Connection) {
        record.update { $0.inputClosed += 1 }
        if let onInputClosed {
            onInputClosed(connection)
        } else if let inner {
            inner.inputClosed(connection)
        } else {
            connection.close()
        }
    }

    func closed(_ connection: Connection, reason: CloseReason) {
        record.update { $0.closed.append(reason) }
        inner?.closed(connection, reason: reason)
        self.connection.value = nil
    }

    func connectFailed(_ error: ReactorError) {
        record.update { $0.connectFailed = error }
        inner?.connectFailed(error)
    }
}

// MARK: - Byte patterns

/// A deterministic pseudo-random byte stream: byte `i` of stream `seed`.
@inline(__always)
func patternByte(_ index: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> UInt8 {
    var z = (UInt64(index >> 3) &+ seed) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    return UInt8(truncatingIfNeeded: z >> ((UInt64(index) & 7) * 8))
}

/// `count` bytes of the pattern starting at `offset`: ``patternByte(_:seed:)`` for each,
/// with one hash per 8 bytes, so that megabytes of it are quick to make even in a
/// sanitizer build.
func pattern(count: Int, offset: Int = 0, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var index = 0
        while index < count {
            let position = offset + index
            var z = (UInt64(position >> 3) &+ seed) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            var byte = position & 7
            while byte < 8, index < count {
                buffer[index] = UInt8(truncatingIfNeeded: z >> (UInt64(byte) * 8))
                byte += 1
                index += 1
            }
        }
        initialized = count
    }
}

/// The index of the first byte where `bytes` differs from the pattern, or nil.
func firstPatternMismatch(_ bytes: [UInt8], offset: Int = 0, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> Int? {
    let expected = pattern(count: bytes.count, offset: offset, seed: seed)
    return bytes == expected ? nil : bytes.indices.first { bytes[$0] != expected[$0] }
}

// MARK: - Expectations

/// Expects a stream (as ``TestClient/receiveUntilEnd(timeout:)`` returns it) to have
/// carried exactly `text`, then end of file.
func expectText(_ received: (bytes: [UInt8], end: StreamEnd), _ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(String(decoding: received.bytes, as: UTF8.self) == text, sourceLocation: sourceLocation)
    #expect(received.end == .endOfFile, sourceLocation: sourceLocation)
}

/// Expects a stream to have carried the first `count` bytes of the pattern, then end of file.
func expectPattern(_ received: (bytes: [UInt8], end: StreamEnd), count: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(received.end == .endOfFile, sourceLocation: sourceLocation)
    #expect(received.bytes.count == count, sourceLocation: sourceLocation)
    #expect(firstPatternMismatch(received.bytes) == nil, sourceLocation: sourceLocation)
}
