// Reactors on threads, the framing tests' POSIX client, and frame handlers that record
// what they saw (the shared helpers are in ReactorTestSupport). Every wait has a
// deadline, so a bug fails a test instead of hanging the suite.

import Dispatch
import Foundation
import Glibc
import Logging
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

extension ReactorHandle {
    /// Runs `work` on the reactor thread and returns its result, waiting at most `timeout`.
    func run<T: Sendable>(timeout: Duration = .seconds(10), _ work: @escaping @Sendable (Reactor) throws -> T) async throws -> T {
        let result = Locked<Result<T, any Error>?>(nil)
        guard execute({ reactor in result.update { $0 = Result { try work(reactor) } } }) else {
            throw TestFailure("the reactor has stopped")
        }
        try await eventually("a job on the reactor thread", timeout: timeout) { result.value != nil }
        return try result.value!.get()
    }
}

// MARK: - A server of framed connections

/// A reactor thread with a listener whose connections are ``FramedConnection``s made by
/// `make` (on the reactor thread). The framed connections are kept, in accept order, for
/// jobs that drive them directly.
final class FramingServer: Sendable {
    let thread: ReactorThread
    let address: SocketAddress
    /// Touch on the reactor thread only.
    let accepted: ReactorBound<[FramedConnection]>

    var handle: ReactorHandle { thread.handle }
    var port: Int { address.port }

    private init(thread: ReactorThread, address: SocketAddress, accepted: ReactorBound<[FramedConnection]>) {
        self.thread = thread
        self.address = address
        self.accepted = accepted
    }

    static func start(
        host: String = "127.0.0.1", connectionOptions: ConnectionOptions = .init(),
        make: @escaping @Sendable () -> FramedConnection
    ) throws -> FramingServer {
        let accepted = ReactorBound<[FramedConnection]>([])
        let (thread, address) = try ReactorThread.start(name: "framing-test") { reactor in
            try reactor.listen(host: host, port: 0, connectionOptions: connectionOptions) { _ in
                let framed = make()
                accepted.value.append(framed)
                return framed
            }.address
        }
        return FramingServer(thread: thread, address: address, accepted: accepted)
    }

    /// Runs `body` on the reactor thread with the accepted connections.
    func run<T: Sendable>(
        timeout: Duration = .seconds(10), _ body: @escaping @Sendable (Reactor, [FramedConnection]) throws -> T
    ) async throws -> T {
        let accepted = self.accepted
        return try await handle.run(timeout: timeout) { reactor in try body(reactor, accepted.value) }
    }

    /// Waits until `count` connections have been accepted.
    func waitForConnections(_ count: Int, timeout: Duration = .seconds(10)) async throws {
        let end = ContinuousClock.now + timeout
        while try await run({ _, accepted in accepted.count }) < count {
            guard ContinuousClock.now < end else { throw TestFailure("\(count) connection(s) not accepted within \(timeout)") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    func stop(sourceLocation: SourceLocation = #_sourceLocation) {
        thread.stopAndJoin(sourceLocation: sourceLocation)
    }
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
        do {
            try connection.send(frame: frame)
        } catch {
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

    func log(event: LogEvent) {
        lines.update { $0.append((event.level, "\(event.message)")) }
    }
}

/// A reactor run on a thread of our own, with a logger the test can read (ReactorThread
/// always uses the default logger).
final class LoggedReactor: Sendable {
    let handle: ReactorHandle
    let lines: Locked<[(level: Logger.Level, message: String)]>
    private let finished: DispatchSemaphore

    private init(handle: ReactorHandle, lines: Locked<[(level: Logger.Level, message: String)]>, finished: DispatchSemaphore) {
        self.handle = handle
        self.lines = lines
        self.finished = finished
    }

    static func start<T: Sendable>(_ setup: @escaping @Sendable (Reactor) throws -> T) throws -> (LoggedReactor, T) {
        let lines = Locked<[(level: Logger.Level, message: String)]>([])
        let started = Locked<Result<(ReactorHandle, T), any Error>?>(nil)
        let ready = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        Thread {
            defer { finished.signal() }
            let logger = Logger(label: "framing-test") { _ in CapturingLogHandler(lines: lines) }
            do {
                let reactor = try Reactor(logger: logger)
                let value = try setup(reactor)
                started.update { $0 = .success((reactor.handle, value)) }
                ready.signal()
                try reactor.run()
            } catch {
                if started.value == nil {
                    started.update { $0 = .failure(error) }
                    ready.signal()
                }
            }
        }.start()
        guard ready.wait(timeout: .now() + .seconds(10)) == .success else { throw TestFailure("the reactor did not start") }
        let (handle, value) = try started.value!.get()
        return (LoggedReactor(handle: handle, lines: lines, finished: finished), value)
    }

    func stop(sourceLocation: SourceLocation = #_sourceLocation) {
        handle.stop()
        if finished.wait(timeout: .now() + .seconds(10)) != .success {
            Issue.record("the reactor thread did not end within 10 s", sourceLocation: sourceLocation)
        }
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
