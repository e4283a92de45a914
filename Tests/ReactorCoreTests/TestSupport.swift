// Helpers for the ReactorCore tests: a thread of its own for a test body, a server of
// handlers that record what they saw. What the test targets share (scoped reactors and
// servers, waiting, the POSIX client, byte patterns) is in ReactorTestSupport.
//
// Rules the helpers follow so that a bug fails a test instead of hanging the suite:
// every wait has a deadline, every socket call that can block is bounded by poll(),
// and every reactor thread is stopped and joined with a timeout.

import Dispatch
import Foundation
import Glibc
import ReactorCore
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

// MARK: - Connects nobody answers

/// Starts a non-blocking connect and leaves it in flight; returns the socket.
func connectInBackground(to address: SocketAddress) -> Int32 {
    let fd = socket(address.family == .ipv4 ? AF_INET : AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    _ = withSockAddr(address) { Glibc.connect(fd, $0, $1) }
    return fd
}

/// A loopback listener with backlog 0 that never accepts, its accept queue filled by
/// background connects: the kernel drops further SYNs, so a connect to ``address`` gets
/// no answer at all. The sockets are closed when it is released.
final class SilentListener {
    let listener: RawSocket
    let address: SocketAddress
    private let fillers: [Int32]

    init(host: String = "127.0.0.1") throws {
        listener = try RawSocket(host: host, listenBacklog: 0)
        address = try SocketAddress(ip: host, port: listener.port)
        let address = address
        fillers = (0..<3).map { _ in connectInBackground(to: address) }
        usleep(50_000)
    }

    deinit { fillers.forEach { close($0) } }
}

// MARK: - A server of probed connections

/// Runs `body` with a server whose every connection is a ``ProbeHandler`` recording into
/// the logs `body` gets, around a ``ByteEcho`` when `echo` is set, and set up further by
/// `configure` (on the reactor thread, before the connection opens). The reactor is
/// stopped and joined when `body` returns or throws.
func withProbedServer<T>(
    host: String = "127.0.0.1", _ options: ConnectionOptions = .init(), echo: Bool = false, keepReceivedBytes: Bool = true,
    configure: @escaping @Sendable (ProbeHandler, Reactor) -> Void = { _, _ in },
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (TestServer, ConnectionLogs) throws -> T
) throws -> T {
    let logs = ConnectionLogs()
    return try withServer(
        host: host, connectionOptions: options,
        makeHandler: { reactor, _ in
            let handler = logs.probe(inner: echo ? ByteEcho() : nil, keepReceivedBytes: keepReceivedBytes)
            configure(handler, reactor)
            return handler
        }, sourceLocation: sourceLocation
    ) { server in try body(server, logs) }
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
/// optional inner handler (for example a ``ByteEcho``) and to test hooks.
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
