// Shared helpers for the ReactorCore tests: reactors on their own threads, a blocking
// POSIX client with deadlines, handlers that record what they saw, child processes.
//
// Rules the helpers follow so that a bug fails a test instead of hanging the suite:
// every wait has a deadline, every socket call that can block is bounded by poll(),
// and every reactor thread is stopped and joined with a timeout.

import Dispatch
import Foundation
import ReactorCore
import ReactorServices
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Errors and waiting

/// A test-side failure with a message that says what did not happen.
struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension Duration {
    var milliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}

/// A point in monotonic time; `remaining` counts down to zero.
struct Deadline {
    let end: ContinuousClock.Instant
    init(_ timeout: Duration) { end = .now + timeout }
    var hasPassed: Bool { ContinuousClock.now >= end }
    /// Milliseconds left, for poll(); at least 0.
    var remainingMilliseconds: Int32 {
        let left = end - ContinuousClock.now
        return left <= .zero ? 0 : Int32(clamping: left.milliseconds + 1)
    }
}

/// Polls `condition` every millisecond until it holds or `timeout` passes.
@discardableResult
func waitUntil(timeout: Duration = .seconds(5), _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Deadline(timeout)
    while true {
        if try condition() { return true }
        if deadline.hasPassed { return false }
        usleep(1000)
    }
}

/// A value shared between the reactor thread and the test, behind a mutex.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    var value: Value { mutex.withLock { $0 } }
    func set(_ value: Value) { mutex.withLock { $0 = value } }
    @discardableResult
    func update<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    /// Waits until `condition` holds for the value; returns it then, or nil on timeout.
    func wait(timeout: Duration = .seconds(5), until condition: (Value) -> Bool) -> Value? {
        var result: Value?
        waitUntil(timeout: timeout) {
            let current = value
            if condition(current) { result = current }
            return result != nil
        }
        return result
    }
}

/// Something that belongs to one reactor thread and is only ever touched there (inside
/// its callbacks or `handle.execute` jobs). The `@unchecked Sendable` is that promise.
final class ReactorBound<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

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

extension ReactorThread {
    /// Stops the reactor and joins its thread; records an issue if that takes too long.
    func stopAndJoin(timeout: Duration = .seconds(10), sourceLocation: SourceLocation = #_sourceLocation) {
        handle.stop()
        joinWithin(timeout, sourceLocation: sourceLocation)
    }

    /// Joins the thread, recording an issue if it has not ended within `timeout`.
    @discardableResult
    func joinWithin(_ timeout: Duration, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        let done = DispatchSemaphore(value: 0)
        Thread { [self] in
            join()
            done.signal()
        }.start()
        let joined = done.wait(timeout: .now() + .milliseconds(timeout.milliseconds)) == .success
        if !joined { Issue.record("the reactor thread did not end within \(timeout)", sourceLocation: sourceLocation) }
        return joined
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
        connectionOptions: ConnectionOptions = .init(),
        makeHandler: @escaping @Sendable (Reactor, Connection) -> any ConnectionHandler
    ) throws -> TestServer {
        let (thread, address) = try ReactorThread.start(name: "test-server") { reactor in
            try reactor.listen(
                host: host, port: 0, options: options, connectionOptions: connectionOptions,
                makeHandler: { makeHandler(reactor, $0) }
            ).address
        }
        return TestServer(thread: thread, address: address)
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

/// `count` bytes of the pattern starting at `offset`.
func pattern(count: Int, offset: Int = 0, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    (0..<count).map { patternByte(offset + $0, seed: seed) }
}

/// The index of the first byte where `bytes` differs from the pattern, or nil.
func firstPatternMismatch(_ bytes: [UInt8], offset: Int = 0, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> Int? {
    bytes.indices.first { bytes[$0] != patternByte(offset + $0, seed: seed) }
}

// MARK: - A blocking POSIX client

/// How a read loop ended.
enum StreamEnd: Equatable, CustomStringConvertible {
    case endOfFile
    case reset
    case timedOut
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

/// A socket address built from a ``SocketAddress``'s text, independent of the framework's
/// own sockaddr handling.
func withSockAddr<R>(_ address: SocketAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    switch address.family {
    case .ipv4:
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_port = in_port_t(UInt16(address.port).bigEndian)
        precondition(inet_pton(AF_INET, address.ip, &v4.sin_addr) == 1)
        return withUnsafePointer(to: &v4) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    case .ipv6:
        var v6 = sockaddr_in6()
        v6.sin6_family = sa_family_t(AF_INET6)
        v6.sin6_port = in_port_t(UInt16(address.port).bigEndian)
        precondition(inet_pton(AF_INET6, address.ip, &v6.sin6_addr) == 1)
        return withUnsafePointer(to: &v6) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }
}

/// The port a socket is bound to (getsockname).
func boundPort(of fd: Int32) -> Int {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    _ = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return withUnsafePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
    }
}

/// A plain TCP socket in the test process: non-blocking underneath, every call bounded by
/// poll() and a deadline, close-on-exec so child processes never inherit it.
final class TestClient {
    private(set) var fd: Int32
    let address: SocketAddress

    /// Connects to `address`, waiting at most `timeout`.
    /// - Parameter receiveBuffer: SO_RCVBUF to set before connecting (a small one makes the
    ///   kernel hold less on our side, so a server's queue fills sooner).
    init(connectingTo address: SocketAddress, timeout: Duration = .seconds(5), receiveBuffer: Int? = nil, sendBuffer: Int? = nil) throws {
        self.address = address
        let domain = address.family == .ipv4 ? AF_INET : AF_INET6
        fd = socket(domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        if let receiveBuffer { setOption(SO_RCVBUF, Int32(receiveBuffer)) }
        if let sendBuffer { setOption(SO_SNDBUF, Int32(sendBuffer)) }
        let status = withSockAddr(address) { Glibc.connect(fd, $0, $1) }
        if status != 0 {
            guard errno == EINPROGRESS else {
                let error = errno
                close()
                throw TestFailure("connect \(address): \(String(cString: strerror(error)))")
            }
            guard wait(for: Int16(POLLOUT), deadline: Deadline(timeout)) else {
                close()
                throw TestFailure("connect \(address): no answer within \(timeout)")
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

    func setOption(_ option: Int32, _ value: Int32) {
        var value = value
        setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(4))
    }

    /// Waits until the socket is ready for `events`; false on timeout.
    private func wait(for events: Int16, deadline: Deadline) -> Bool {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let result = poll(&entry, 1, deadline.remainingMilliseconds)
            if result > 0 { return true }
            if result == 0 { return false }
            if errno != EINTR { return true }  // let the next call report the error
        }
    }

    /// Sends every byte, waiting at most `timeout` for the kernel to take them.
    func send(_ bytes: [UInt8], timeout: Duration = .seconds(5)) throws {
        let deadline = Deadline(timeout)
        var sent = 0
        try bytes.withUnsafeBytes { buffer in
            while sent < buffer.count {
                let result = Glibc.send(fd, buffer.baseAddress! + sent, buffer.count - sent, Int32(MSG_NOSIGNAL))
                if result > 0 {
                    sent += result
                } else if result < 0, errno == EAGAIN || errno == EINTR {
                    guard wait(for: Int16(POLLOUT), deadline: deadline) else {
                        throw TestFailure("send: only \(sent) of \(buffer.count) bytes taken within \(timeout)")
                    }
                } else {
                    throw TestFailure("send: \(String(cString: strerror(errno)))")
                }
            }
        }
    }

    func send(_ text: String, timeout: Duration = .seconds(5)) throws {
        try send(Array(text.utf8), timeout: timeout)
    }

    /// Sends as much of `bytes` as the kernel takes right now; returns how many.
    func sendAvailable(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let result = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
        if result >= 0 { return result }
        if errno == EAGAIN || errno == EINTR { return 0 }
        throw TestFailure("send: \(String(cString: strerror(errno)))")
    }

    /// Waits at most `timeout` for the socket to accept more bytes.
    func waitWritable(timeout: Duration) -> Bool {
        wait(for: Int16(POLLOUT), deadline: Deadline(timeout))
    }

    /// One read of whatever is there (waiting at most `timeout` for something).
    func receiveSome(max: Int = 65536, timeout: Duration = .seconds(5)) -> (bytes: [UInt8], end: StreamEnd?) {
        let deadline = Deadline(timeout)
        var buffer = [UInt8](repeating: 0, count: max)
        while true {
            let result = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if result > 0 { return (Array(buffer[0..<result]), nil) }
            if result == 0 { return ([], .endOfFile) }
            let error = errno
            if error == EAGAIN || error == EINTR {
                if !wait(for: Int16(POLLIN), deadline: deadline) { return ([], .timedOut) }
                continue
            }
            return ([], error == ECONNRESET ? .reset : .error(error))
        }
    }

    /// Sends all of `data` while reading whatever comes back, so a peer that answers
    /// cannot wedge us; returns what was received by the time the last byte was sent.
    func sendWhileReading(_ data: [UInt8], timeout: Duration = .seconds(20)) throws -> [UInt8] {
        let deadline = Deadline(timeout)
        var sent = 0
        var received: [UInt8] = []
        try data.withUnsafeBytes { source in
            while sent < data.count {
                var entry = pollfd(fd: fd, events: Int16(POLLIN) | Int16(POLLOUT), revents: 0)
                let ready = poll(&entry, 1, deadline.remainingMilliseconds)
                if ready == 0 { throw TestFailure("sendWhileReading: sent only \(sent) of \(data.count) bytes within \(timeout)") }
                if ready < 0 { continue }
                if entry.revents & Int16(POLLOUT) != 0 {
                    sent += try sendAvailable(UnsafeRawBufferPointer(rebasing: source[sent..<min(data.count, sent + 256 * 1024)]))
                }
                if entry.revents & Int16(POLLIN) != 0 {
                    let (chunk, end) = receiveSome(timeout: .zero)
                    if let end, end != .timedOut { throw TestFailure("sendWhileReading: \(end) after sending \(sent) bytes") }
                    received += chunk
                }
            }
        }
        return received
    }

    /// Reads exactly `count` bytes; throws if the stream ends or `timeout` passes first.
    func receive(count: Int, timeout: Duration = .seconds(5)) throws -> [UInt8] {
        let deadline = Deadline(timeout)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            let (chunk, end) = receiveSome(max: min(65536, count - bytes.count), timeout: .milliseconds(Int(deadline.remainingMilliseconds)))
            if let end { throw TestFailure("receive: \(end) after \(bytes.count) of \(count) bytes") }
            bytes += chunk
        }
        return bytes
    }

    /// Reads until the stream ends (end of file, reset, error) or `timeout` passes.
    func receiveUntilEnd(timeout: Duration = .seconds(5)) -> (bytes: [UInt8], end: StreamEnd) {
        let deadline = Deadline(timeout)
        var bytes: [UInt8] = []
        while true {
            let (chunk, end) = receiveSome(timeout: .milliseconds(Int(deadline.remainingMilliseconds)))
            bytes += chunk
            if let end { return (bytes, end) }
        }
    }

    /// Sends `data` while reading the echo; returns once `data.count` bytes came back.
    /// Needed for anything larger than the socket buffers: a client that wrote everything
    /// before reading would deadlock against a server that stops reading when its replies
    /// back up.
    func exchange(_ data: [UInt8], timeout: Duration = .seconds(20)) throws -> [UInt8] {
        let deadline = Deadline(timeout)
        var sent = 0
        var received: [UInt8] = []
        received.reserveCapacity(data.count)
        var buffer = [UInt8](repeating: 0, count: 256 * 1024)
        try data.withUnsafeBytes { source in
            while received.count < data.count {
                var entry = pollfd(fd: fd, events: Int16(POLLIN) | (sent < data.count ? Int16(POLLOUT) : 0), revents: 0)
                let ready = poll(&entry, 1, deadline.remainingMilliseconds)
                if ready == 0 {
                    throw TestFailure("exchange: timed out after sending \(sent) and receiving \(received.count) of \(data.count) bytes")
                }
                if ready < 0 { continue }
                if entry.revents & Int16(POLLOUT) != 0, sent < data.count {
                    let chunk = UnsafeRawBufferPointer(rebasing: source[sent..<min(data.count, sent + 256 * 1024)])
                    sent += try sendAvailable(chunk)
                }
                if entry.revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 {
                    let result = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
                    if result > 0 {
                        received += buffer[0..<result]
                    } else if result == 0 {
                        throw TestFailure("exchange: end of file after receiving \(received.count) of \(data.count) bytes")
                    } else if errno != EAGAIN && errno != EINTR {
                        throw TestFailure("exchange: recv: \(String(cString: strerror(errno)))")
                    }
                }
            }
        }
        return received
    }

    /// Shuts down the sending side: the peer reads end of file.
    func shutdownWrite() {
        Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Closes with a reset instead of a FIN (SO_LINGER 0).
    func reset() {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}

/// A raw socket bound to a loopback port, optionally listening, never accepting: the
/// test's tool for "a port that refuses" and "a listener whose queue is full".
final class RawSocket {
    let fd: Int32
    let port: Int

    init(host: String = "127.0.0.1", listenBacklog: Int32? = nil) throws {
        let address = try SocketAddress(ip: host, port: 0)
        let domain = address.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        guard withSockAddr(address, { bind(fd, $0, $1) }) == 0 else {
            let error = errno
            Glibc.close(fd)
            throw TestFailure("bind: \(String(cString: strerror(error)))")
        }
        if let listenBacklog { Glibc.listen(fd, listenBacklog) }
        self.fd = fd
        port = boundPort(of: fd)
    }

    deinit { Glibc.close(fd) }
}

// MARK: - The reactor executable

/// The built `reactor` executable: next to the test bundle, or in a build directory of
/// the package. Throws a clear error when it is missing.
func reactorExecutable() throws -> String {
    var candidates: [String] = []
    if let bundle = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append((bundle as NSString).deletingLastPathComponent + "/reactor")
    }
    let cwd = FileManager.default.currentDirectoryPath
    for build in [".build-tests", ".build"] {
        candidates.append("\(cwd)/\(build)/debug/reactor")
        candidates.append("\(cwd)/\(build)/release/reactor")
    }
    if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
        return found
    }
    throw TestFailure(
        "the reactor executable was not found (looked at \(candidates.joined(separator: ", "))); build it with `swift build --build-tests`")
}

/// A child process with its stdout and stderr collected by reader threads.
final class ChildProcess: Sendable {
    let process: Process
    private let stdout = Locked<[UInt8]>([])
    private let stderr = Locked<[UInt8]>([])
    private let readersDone = DispatchGroup()

    /// Starts `executable` with `arguments` (a shell command when `executable` is /bin/bash).
    init(_ executable: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        self.process = process
        try process.run()
        for (pipe, sink) in [(out, stdout), (err, stderr)] {
            let fd = pipe.fileHandleForReading.fileDescriptor
            readersDone.enter()
            Thread { [readersDone] in
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                    if count < 0, errno == EINTR { continue }
                    if count <= 0 { break }
                    sink.update { $0 += buffer[0..<count] }
                }
                readersDone.leave()
            }.start()
        }
    }

    /// Runs the built `reactor` with `arguments`.
    static func reactor(_ arguments: [String]) throws -> ChildProcess {
        try ChildProcess(try reactorExecutable(), arguments)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    var pid: Int32 { process.processIdentifier }
    var standardOutput: String { String(decoding: stdout.value, as: UTF8.self) }
    var standardError: String { String(decoding: stderr.value, as: UTF8.self) }

    /// The lines of stderr that are not empty.
    var standardErrorLines: [String] {
        standardError.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }

    /// Waits for the first complete line on stdout.
    func firstLine(timeout: Duration = .seconds(10)) throws -> String {
        guard let bytes = stdout.wait(timeout: timeout, until: { $0.contains(UInt8(ascii: "\n")) || !process.isRunning }),
            let newline = bytes.firstIndex(of: UInt8(ascii: "\n"))
        else {
            throw TestFailure("no line on stdout within \(timeout); stderr: \(standardError)")
        }
        return String(decoding: bytes[..<newline], as: UTF8.self)
    }

    /// Waits until stderr contains `text`.
    func waitForStandardError(containing text: String, timeout: Duration = .seconds(5)) -> Bool {
        waitUntil(timeout: timeout) { standardError.contains(text) }
    }

    /// Waits for the process to exit; returns its status, or nil if it still runs after `timeout`.
    func waitForExit(timeout: Duration = .seconds(10)) -> Int32? {
        guard waitUntil(timeout: timeout, { !process.isRunning }) else { return nil }
        process.waitUntilExit()
        // Make sure everything it wrote has been collected.
        _ = readersDone.wait(timeout: .now() + .seconds(2))
        return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
    }

    func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// CPU time (user + system) the process has used, in clock ticks, from /proc/PID/stat.
    func cpuTicks() throws -> Int {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // The command name is in parentheses and may contain spaces; fields after it
        // start at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
        guard let close = stat.lastIndex(of: ")") else { throw TestFailure("unreadable /proc/\(pid)/stat") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else {
            throw TestFailure("unreadable /proc/\(pid)/stat: \(stat)")
        }
        return user + system
    }
}
