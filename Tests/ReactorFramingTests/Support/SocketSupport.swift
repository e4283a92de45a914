// A server of framed connections, the framing tests' POSIX client, frame handlers that
// record what they saw, and log capture (the shared helpers are in ReactorTestSupport). Every wait has a
// deadline, so a bug fails a test instead of hanging the suite.

import Dispatch
import Foundation
import Glibc
import Logging
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing


// MARK: - A server of framed connections

/// A reactor thread with a listener whose connections are ``FramedConnection``s made by
/// `make` (on the reactor thread), for the length of a ``withFramingServer`` block. The
/// framed connections are kept, in accept order, for jobs that drive them directly.
final class FramingServer: Sendable {
    let server: TestServer
    /// Touch on the reactor thread only.
    let accepted: ReactorBound<[FramedConnection]>

    var address: SocketAddress { server.address }
    var handle: ReactorHandle { server.handle }
    var port: Int { server.port }

    init(server: TestServer, accepted: ReactorBound<[FramedConnection]>) {
        self.server = server
        self.accepted = accepted
    }

    /// Runs `body` on the reactor thread with the accepted connections.
    func run<T: Sendable>(
        timeout: Duration = .seconds(10), _ body: @escaping @Sendable (Reactor, [FramedConnection]) throws -> T
    ) async throws -> T {
        let accepted = self.accepted
        return try await server.run(timeout: timeout) { reactor in try body(reactor, accepted.value) }
    }

    /// Waits until `count` connections have been accepted.
    func waitForConnections(_ count: Int, timeout: Duration = .seconds(10)) async throws {
        let end = ContinuousClock.now + timeout
        while try await run({ _, accepted in accepted.count }) < count {
            guard ContinuousClock.now < end else { throw TestFailure("\(count) connection(s) not accepted within \(timeout)") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }
}

/// Runs `body` with a ``FramingServer`` on `host` port 0; stops and joins its reactor when
/// `body` returns or throws.
func withFramingServer<T>(
    host: String = "127.0.0.1", connectionOptions: ConnectionOptions = .init(), logger: Logger = Logger(label: "reactor"),
    make: @escaping @Sendable () -> FramedConnection,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (FramingServer) async throws -> T
) async throws -> T {
    let accepted = ReactorBound<[FramedConnection]>([])
    return try await withServer(
        host: host, connectionOptions: connectionOptions, logger: logger,
        makeHandler: { _, _ in
            let framed = make()
            accepted.value.append(framed)
            return framed
        }, sourceLocation: sourceLocation
    ) { server in try await body(FramingServer(server: server, accepted: accepted)) }
}

// MARK: - Recording frame handlers

/// What a frame handler saw, written on the reactor thread, read by the test.
struct FrameRecord: Sendable {
    var opened = 0
    var frames: [[UInt8]] = []
    var errors: [FramingError] = []
    var closed: [CloseReason] = []
    var notes: [String] = []
}

/// Records every hook. Behaviour is set with closures; `framingFailed` records the error
/// and, when ``abortOnFailure`` is set, aborts like the default.
final class Recorder: FrameHandler {
    let record: Locked<FrameRecord>
    var onFrame: ((RawSpan, FramedConnection, Int) -> Void)?
    var abortOnFailure = false
    private var count = 0

    init(_ record: Locked<FrameRecord> = Locked(FrameRecord())) {
        self.record = record
    }

    func opened(_ connection: FramedConnection) {
        record.update { $0.opened += 1 }
    }

    func received(frame: RawSpan, on connection: FramedConnection) {
        let copy = frame.copyBytes()
        let index = count
        count += 1
        record.update { $0.frames.append(copy) }
        onFrame?(frame, connection, index)
    }

    func framingFailed(_ error: FramingError, on connection: FramedConnection) {
        record.update { $0.errors.append(error) }
        if abortOnFailure { connection.abort() }
    }

    func closed(_ connection: FramedConnection, reason: CloseReason) {
        record.update { $0.closed.append(reason) }
    }
}

/// Echoes every frame and records it; keeps the protocol's default `framingFailed`
/// (log one line, abort the connection).
final class EchoRecorder: FrameHandler {
    let record: Locked<FrameRecord>
    init(_ record: Locked<FrameRecord>) { self.record = record }

    func received(frame: RawSpan, on connection: FramedConnection) {
        let copy = frame.copyBytes()
        record.update { $0.frames.append(copy) }
        if case .refused(let error) = connection.send(frame: frame) {
            record.update { $0.notes.append("echo failed: \(error)") }
        }
    }

    func writabilityChanged(_ connection: FramedConnection) {
        if connection.isWritable { connection.resumeDelivery() } else { connection.pauseDelivery() }
    }

    func closed(_ connection: FramedConnection, reason: CloseReason) {
        record.update { $0.closed.append(reason) }
    }
}

/// Runs `body` with a RawSpan over `bytes` (which stays valid for the call).
func withSpan<R>(_ bytes: [UInt8], _ body: (RawSpan) throws -> R) rethrows -> R {
    try bytes.withUnsafeBytes { raw in try body(unsafe RawSpan(_unsafeBytes: raw)) }
}

// MARK: - Log capture

/// A LogHandler that keeps every message, for checking what the framework logged.
struct CapturingLogHandler: LogHandler {
    let lines: Locked<[(level: Logger.Level, message: String)]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// The message, then its metadata as `key=value` (the peer is metadata, not text).
    func log(event: LogEvent) {
        let metadata = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { " \($0.key)=\($0.value)" }.joined()
        lines.update { $0.append((event.level, "\(event.message)\(metadata)")) }
    }
}

// MARK: - A blocking POSIX client

extension TestClient {
    /// The framing tests' client: TCP_NODELAY, at most `timeout` to connect, and 10 s for
    /// every other call that is not given a timeout.
    convenience init(_ address: SocketAddress, timeout: Duration = .seconds(5)) throws {
        try self.init(connectingTo: address, timeout: timeout, noDelay: true, defaultTimeout: .seconds(10))
    }
}
