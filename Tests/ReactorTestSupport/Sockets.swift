// Plain POSIX sockets on the test's side of the wire, written independently of the
// framework's own socket code: a non-blocking client where every call is bounded by
// poll() and a deadline, a bound socket that never accepts, and a blocking loopback
// client for tests that talk to a socket with read() and write().

import Foundation
import Glibc
import ReactorCore

/// How a read loop ended.
public enum StreamEnd: Equatable, CustomStringConvertible, Sendable {
    case endOfFile
    case reset
    case timedOut
    case error(Int32)

    public var description: String {
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
public func withSockAddr<R>(_ address: SocketAddress, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
    /// `storage` as a sockaddr of its own size.
    func asSockaddr<Storage>(_ storage: inout Storage) -> R {
        withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<Storage>.size)) }
        }
    }
    switch address.family {
    case .ipv4:
        var v4 = sockaddr_in()
        v4.sin_family = sa_family_t(AF_INET)
        v4.sin_port = in_port_t(UInt16(address.port).bigEndian)
        precondition(inet_pton(AF_INET, address.ip, &v4.sin_addr) == 1)
        return asSockaddr(&v4)
    case .ipv6:
        var v6 = sockaddr_in6()
        v6.sin6_family = sa_family_t(AF_INET6)
        v6.sin6_port = in_port_t(UInt16(address.port).bigEndian)
        precondition(inet_pton(AF_INET6, address.ip, &v6.sin6_addr) == 1)
        return asSockaddr(&v6)
    }
}

/// The port a socket is bound to (getsockname).
public func boundPort(of fd: Int32) -> Int {
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
public final class TestClient {
    public private(set) var fd: Int32
    public let address: SocketAddress
    /// How long a call waits when it is not given a timeout.
    public let defaultTimeout: Duration

    /// Connects to `address`, waiting at most `timeout`.
    /// - Parameters:
    ///   - receiveBuffer: SO_RCVBUF to set before connecting (a small one makes the kernel
    ///     hold less on our side, so a server's queue fills sooner).
    ///   - sendBuffer: SO_SNDBUF to set before connecting.
    ///   - noDelay: set TCP_NODELAY.
    ///   - defaultTimeout: how long `send`, `receiveSome`, `receive` and `receiveUntilEnd`
    ///     wait when they are not given a timeout.
    public init(
        connectingTo address: SocketAddress, timeout: Duration = .seconds(5), receiveBuffer: Int? = nil, sendBuffer: Int? = nil,
        noDelay: Bool = false, defaultTimeout: Duration = .seconds(5)
    ) throws {
        self.address = address
        self.defaultTimeout = defaultTimeout
        let domain = address.family == .ipv4 ? AF_INET : AF_INET6
        fd = socket(domain, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        if let receiveBuffer { setOption(SO_RCVBUF, Int32(receiveBuffer)) }
        if let sendBuffer { setOption(SO_SNDBUF, Int32(sendBuffer)) }
        if noDelay {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(4))
        }
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

    /// The client's own port: the server sees it as the peer's port.
    public var localPort: Int { boundPort(of: fd) }

    /// Sets a SOL_SOCKET option.
    public func setOption(_ option: Int32, _ value: Int32) {
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

    /// Sends every byte, waiting at most `timeout` (default: ``defaultTimeout``) for the
    /// kernel to take them.
    public func send(_ bytes: some Collection<UInt8>, timeout: Duration? = nil) throws {
        let timeout = timeout ?? defaultTimeout
        let bytes = Array(bytes)
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

    /// Sends the UTF-8 bytes of `text`.
    public func send(_ text: String, timeout: Duration? = nil) throws {
        try send(Array(text.utf8), timeout: timeout)
    }

    /// Sends as much of `bytes` as the kernel takes right now; returns how many.
    public func sendAvailable(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        let result = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
        if result >= 0 { return result }
        if errno == EAGAIN || errno == EINTR { return 0 }
        throw TestFailure("send: \(String(cString: strerror(errno)))")
    }

    /// Waits at most `timeout` for the socket to accept more bytes.
    public func waitWritable(timeout: Duration) -> Bool {
        wait(for: Int16(POLLOUT), deadline: Deadline(timeout))
    }

    /// One read of whatever is there (waiting at most `timeout`, default ``defaultTimeout``,
    /// for something).
    public func receiveSome(max: Int = 65536, timeout: Duration? = nil) -> (bytes: [UInt8], end: StreamEnd?) {
        let deadline = Deadline(timeout ?? defaultTimeout)
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
    public func sendWhileReading(_ data: [UInt8], timeout: Duration = .seconds(20)) throws -> [UInt8] {
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

    /// Reads exactly `count` bytes; throws if the stream ends or `timeout` (default
    /// ``defaultTimeout``) passes first.
    public func receive(count: Int, timeout: Duration? = nil) throws -> [UInt8] {
        let deadline = Deadline(timeout ?? defaultTimeout)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            let (chunk, end) = receiveSome(max: min(65536, count - bytes.count), timeout: deadline.remaining)
            if let end { throw TestFailure("receive: \(end) after \(bytes.count) of \(count) bytes") }
            bytes += chunk
        }
        return bytes
    }

    /// Reads until the stream ends (end of file, reset, error) or `timeout` (default
    /// ``defaultTimeout``) passes.
    public func receiveUntilEnd(timeout: Duration? = nil) -> (bytes: [UInt8], end: StreamEnd) {
        let deadline = Deadline(timeout ?? defaultTimeout)
        var bytes: [UInt8] = []
        while true {
            let (chunk, end) = receiveSome(timeout: deadline.remaining)
            bytes += chunk
            if let end { return (bytes, end) }
        }
    }

    /// Sends `data` while reading what comes back, until `expected` bytes (by default
    /// `data.count`) came back. Needed for anything larger than the socket buffers: a
    /// client that wrote everything before reading would deadlock against a server that
    /// stops reading when its replies back up.
    /// - Parameter pause: given the bytes received so far, how long to sleep before the
    ///   next read (nil: none), to play a slow reader.
    public func exchange(
        _ data: [UInt8], expecting expected: Int? = nil, pause: (Int) -> Duration? = { _ in nil },
        timeout: Duration = .seconds(30)
    ) throws -> [UInt8] {
        let expected = expected ?? data.count
        let deadline = Deadline(timeout)
        var sent = 0
        var received: [UInt8] = []
        received.reserveCapacity(expected)
        var buffer = [UInt8](repeating: 0, count: 128 * 1024)
        try data.withUnsafeBytes { source in
            while received.count < expected {
                guard !deadline.hasPassed else {
                    throw TestFailure(
                        "exchange: timed out after sending \(sent) of \(data.count) and receiving \(received.count) of \(expected) bytes")
                }
                var entry = pollfd(fd: fd, events: Int16(POLLIN) | (sent < data.count ? Int16(POLLOUT) : 0), revents: 0)
                if poll(&entry, 1, 100) <= 0 { continue }
                if entry.revents & Int16(POLLOUT) != 0, sent < data.count {
                    sent += try sendAvailable(UnsafeRawBufferPointer(rebasing: source[sent..<min(data.count, sent + 64 * 1024)]))
                }
                if entry.revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 {
                    if let wait = pause(received.count) {
                        let (seconds, attoseconds) = wait.components
                        usleep(UInt32(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
                    }
                    let result = buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
                    if result > 0 {
                        received += buffer[0..<result]
                    } else if result == 0 {
                        throw TestFailure("exchange: end of file after receiving \(received.count) of \(expected) bytes")
                    } else if errno != EAGAIN && errno != EINTR {
                        throw TestFailure("exchange: recv: \(String(cString: strerror(errno)))")
                    }
                }
            }
        }
        return received
    }

    /// Shuts down the sending side: the peer reads end of file.
    public func shutdownWrite() {
        Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Closes with a reset instead of a FIN (SO_LINGER 0).
    public func reset() {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}

/// A raw socket bound to a loopback port, optionally listening, never accepting: the
/// test's tool for "a port that refuses", "a port that is taken" and "a listener whose
/// queue is full". Closed when released.
public final class RawSocket {
    public let fd: Int32
    public let port: Int

    public init(host: String = "127.0.0.1", listenBacklog: Int32? = nil) throws {
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

/// A blocking TCP socket connected to 127.0.0.1:`port`, whose reads give up after
/// `receiveTimeout` (SO_RCVTIMEO). The caller closes it. Throws the connect error.
public func blockingLoopbackSocket(port: Int, receiveTimeout: Duration = .seconds(5)) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    let address = try SocketAddress(ip: "127.0.0.1", port: port)
    guard withSockAddr(address, { connect(fd, $0, $1) }) == 0 else {
        let error = POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        Glibc.close(fd)
        throw error
    }
    let (seconds, attoseconds) = receiveTimeout.components
    var timeout = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Reads from a blocking socket until `count` bytes came, the stream ends, or a read
/// fails (for example on its SO_RCVTIMEO); returns what came.
public func readBlocking(_ fd: Int32, count: Int) -> [UInt8] {
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while result.count < count {
        let n = Glibc.read(fd, &chunk, min(chunk.count, count - result.count))
        guard n > 0 else { break }
        result += chunk[..<n]
    }
    return result
}
