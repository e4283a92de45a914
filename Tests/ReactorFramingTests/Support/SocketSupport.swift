// Reactors on threads, blocking POSIX clients with timeouts, and frame handlers that
// record what they saw. Every wait has a deadline, so a bug fails a test instead of
// hanging the suite.

import Dispatch
import Foundation
import Logging
import ReactorCore
import ReactorFraming
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A value shared between the reactor thread and the test, behind a mutex.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    var value: Value { mutex.withLock { $0 } }
    @discardableResult
    func update<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}

/// Something that lives on one reactor thread and is only touched there (in its
/// callbacks and jobs). The `@unchecked Sendable` is that promise.
final class ReactorBound<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// Polls `condition` every millisecond, without blocking a thread, until it holds or
/// `timeout` passes; throws a failure naming `what` on timeout.
func eventually(
    _ what: @autoclosure () -> String, timeout: Duration = .seconds(10), _ condition: () throws -> Bool
) async throws {
    let end = ContinuousClock.now + timeout
    while true {
        if try condition() { return }
        if ContinuousClock.now >= end { throw TestFailure("timed out after \(timeout) waiting for \(what())") }
        try await Task.sleep(for: .milliseconds(1))
    }
}

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

/// Joins `thread` within `timeout` (on a helper thread, so a stuck reactor fails the test).
func stopAndJoin(_ thread: ReactorThread, timeout: Duration = .seconds(10), sourceLocation: SourceLocation = #_sourceLocation) {
    thread.handle.stop()
    let done = DispatchSemaphore(value: 0)
    Thread {
        thread.join()
        done.signal()
    }.start()
    if done.wait(timeout: .now() + .seconds(Int(timeout.components.seconds))) != .success {
        Issue.record("the reactor thread did not end within \(timeout)", sourceLocation: sourceLocation)
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
        stopAndJoin(thread, sourceLocation: sourceLocation)
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

/// How a read loop ended.
enum StreamEnd: Equatable, CustomStringConvertible {
    case endOfFile, reset, timedOut
    case error(Int32)

    var description: String {
        switch self {
        case .endOfFile: "end of file"
        case .reset: "reset"
        case .timedOut: "timed out"
        case .error(let code): "error \(String(cString: strerror(code)))"
        }
    }
}

/// A TCP client on a non-blocking socket where every call waits with poll() and a deadline.
final class TestClient {
    private(set) var fd: Int32

    init(_ address: SocketAddress, timeout: Duration = .seconds(5)) throws {
        let family = address.family == .ipv4 ? AF_INET : AF_INET6
        fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
        let result: Int32
        switch address.family {
        case .ipv4:
            var v4 = sockaddr_in()
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(address.port).bigEndian)
            inet_pton(AF_INET, address.ip, &v4.sin_addr)
            result = withUnsafePointer(to: &v4) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .ipv6:
            var v6 = sockaddr_in6()
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(address.port).bigEndian)
            inet_pton(AF_INET6, address.ip, &v6.sin6_addr)
            result = withUnsafePointer(to: &v6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
        if result != 0 {
            guard errno == EINPROGRESS, wait(Int16(POLLOUT), until: ContinuousClock.now + timeout) else {
                close()
                throw TestFailure("connect \(address): \(String(cString: strerror(errno)))")
            }
            var error: Int32 = 0
            var length = socklen_t(4)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
            guard error == 0 else {
                close()
                throw TestFailure("connect \(address): \(String(cString: strerror(error)))")
            }
        }
    }

    deinit { close() }

    /// The client's own port: the server sees it as the peer's port.
    var localPort: Int {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
    }

    private func wait(_ events: Int16, until end: ContinuousClock.Instant) -> Bool {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let left = end - ContinuousClock.now
            let ms = left <= .zero ? 0 : Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let result = poll(&entry, 1, ms)
            if result > 0 { return true }
            if result == 0 { return false }
            if errno != EINTR { return true }
        }
    }

    func send(_ bytes: some Collection<UInt8>, timeout: Duration = .seconds(10)) throws {
        let bytes = Array(bytes)
        let end = ContinuousClock.now + timeout
        var sent = 0
        try bytes.withUnsafeBytes { buffer in
            while sent < buffer.count {
                let result = Glibc.send(fd, buffer.baseAddress! + sent, buffer.count - sent, Int32(MSG_NOSIGNAL))
                if result > 0 {
                    sent += result
                } else if result < 0, errno == EAGAIN || errno == EINTR {
                    guard wait(Int16(POLLOUT), until: end) else {
                        throw TestFailure("send: only \(sent) of \(buffer.count) bytes taken within \(timeout)")
                    }
                } else {
                    throw TestFailure("send: \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    /// One read of what is there, waiting up to `timeout`.
    func receiveSome(max: Int = 65536, timeout: Duration = .seconds(10)) -> (bytes: [UInt8], end: StreamEnd?) {
        let end = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: max)
        while true {
            let result = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if result > 0 { return (Array(buffer[0..<result]), nil) }
            if result == 0 { return ([], .endOfFile) }
            let error = errno
            if error == EAGAIN || error == EINTR {
                if !wait(Int16(POLLIN), until: end) { return ([], .timedOut) }
                continue
            }
            return ([], error == ECONNRESET ? .reset : .error(error))
        }
    }

    /// Exactly `count` bytes, or a failure saying how far it got.
    func receive(count: Int, timeout: Duration = .seconds(10)) throws -> [UInt8] {
        let end = ContinuousClock.now + timeout
        var bytes: [UInt8] = []
        while bytes.count < count {
            let left = end - ContinuousClock.now
            let (chunk, streamEnd) = receiveSome(max: min(65536, count - bytes.count), timeout: max(left, .zero))
            if let streamEnd { throw TestFailure("receive: \(streamEnd) after \(bytes.count) of \(count) bytes") }
            bytes += chunk
        }
        return bytes
    }

    /// Reads until end of file, reset or timeout.
    func receiveUntilEnd(timeout: Duration = .seconds(10)) -> (bytes: [UInt8], end: StreamEnd) {
        let end = ContinuousClock.now + timeout
        var bytes: [UInt8] = []
        while true {
            let left = end - ContinuousClock.now
            let (chunk, streamEnd) = receiveSome(timeout: max(left, .zero))
            bytes += chunk
            if let streamEnd { return (bytes, streamEnd) }
        }
    }

    /// Sends `data` while reading what comes back, until `expected` bytes came back:
    /// a peer that stops reading while its replies back up cannot wedge the test.
    func exchange(_ data: [UInt8], expecting expected: Int, pause: (Int) -> Duration? = { _ in nil }, timeout: Duration = .seconds(30)) throws -> [UInt8] {
        let end = ContinuousClock.now + timeout
        var sent = 0
        var received: [UInt8] = []
        received.reserveCapacity(expected)
        var buffer = [UInt8](repeating: 0, count: 128 * 1024)
        try data.withUnsafeBytes { source in
            while received.count < expected {
                var entry = pollfd(fd: fd, events: Int16(POLLIN) | (sent < data.count ? Int16(POLLOUT) : 0), revents: 0)
                let left = end - ContinuousClock.now
                guard left > .zero else {
                    throw TestFailure("exchange: timed out after sending \(sent) of \(data.count) and receiving \(received.count) of \(expected) bytes")
                }
                if poll(&entry, 1, 100) <= 0 { continue }
                if entry.revents & Int16(POLLOUT) != 0, sent < data.count {
                    let chunk = min(data.count - sent, 64 * 1024)
                    let result = Glibc.send(fd, source.baseAddress! + sent, chunk, Int32(MSG_NOSIGNAL))
                    if result > 0 { sent += result } else if result < 0, errno != EAGAIN, errno != EINTR {
                        throw TestFailure("exchange: send: \(String(cString: strerror(errno)))")
                    }
                }
                if entry.revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 {
                    if let wait = pause(received.count) { try? unsafeSleep(wait) }
                    let result = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
                    if result > 0 {
                        received += buffer[0..<result]
                    } else if result == 0 {
                        throw TestFailure("exchange: end of file after receiving \(received.count) of \(expected) bytes")
                    } else if errno != EAGAIN, errno != EINTR {
                        throw TestFailure("exchange: recv: \(String(cString: strerror(errno)))")
                    }
                }
            }
        }
        return received
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}

private func unsafeSleep(_ duration: Duration) throws {
    let (seconds, attoseconds) = duration.components
    usleep(UInt32(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
}
