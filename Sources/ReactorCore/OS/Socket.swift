import CReactorSystem
import Glibc

// The reactor's socket calls, in one thin layer: each non-blocking call returns an
// `IOResult`, EINTR is retried here and EAGAIN becomes `.wouldBlock`, so no call site
// reads errno. Socket options are set here, for TCP and UDP alike.

/// What a non-blocking socket call did.
enum IOResult: Equatable {
    /// Moved this many bytes (or datagrams, for the batch calls); a send may move fewer
    /// than asked.
    case done(Int)
    /// The kernel has nothing to give or no room to take (EAGAIN): wait for readiness.
    case wouldBlock
    /// A read found the peer's FIN.
    case endOfFile
    /// The call failed with this errno.
    case failed(Int32)

    /// Classifies a failed call's errno; EINTR is handled by the caller, which retries.
    @inline(__always)
    fileprivate static func failure(_ error: Int32) -> IOResult {
        error == EAGAIN || error == EWOULDBLOCK ? .wouldBlock : .failed(error)
    }
}

/// One datagram of a batch: see `csystem_datagram` in CReactorSystem.h.
typealias Datagram = csystem_datagram

/// Socket options applied when a socket is opened.
struct SocketSettings {
    /// SO_REUSEADDR.
    var reuseAddress = false
    /// SO_REUSEPORT.
    var reusePort = false
    /// IPV6_V6ONLY, for IPv6 sockets; nil leaves the kernel's default.
    var ipv6Only: Bool?
    /// SO_RCVBUF; nil leaves the kernel's default.
    var receiveBufferSize: Int?
    /// SO_SNDBUF; nil leaves the kernel's default.
    var sendBufferSize: Int?
    /// IP_BIND_ADDRESS_NO_PORT, for a client that binds a source address with port 0: the
    /// port is then picked at connect, unique for the whole four-tuple, instead of at bind
    /// among the ports no socket of that address holds.
    var bindAddressNoPort = false
}

/// The kinds of socket the reactor opens.
enum SocketType {
    case stream
    case datagram

    var rawValue: Int32 {
        switch self {
        case .stream: Int32(SOCK_STREAM.rawValue)
        case .datagram: Int32(SOCK_DGRAM.rawValue)
        }
    }
}

enum Socket {
    /// The most datagrams one ``receiveBatch(_:_:count:)`` or ``sendBatch(_:_:count:segmentation:)`` moves.
    static let datagramBatchMax = Int(CSYSTEM_DATAGRAM_BATCH_MAX)

    // MARK: - Opening

    /// A non-blocking, close-on-exec socket for `address`'s family, with `settings`
    /// applied; closed again if any of them fails.
    static func open(
        _ type: SocketType, for address: SocketAddress, _ settings: SocketSettings = SocketSettings()
    ) throws(ReactorError) -> Int32 {
        let fd = csystem_socket(address.domain, type.rawValue)
        guard fd >= 0 else { throw ReactorError(errno: errno, operation: .socket, address: address) }
        func option(_ level: Int32, _ name: Int32, _ value: Int) throws(ReactorError) {
            if !setOption(fd, level, name, value) {
                let error = ReactorError(errno: errno, operation: .setOption, address: address)
                Glibc.close(fd)
                throw error
            }
        }
        if settings.reuseAddress { try option(SOL_SOCKET, SO_REUSEADDR, 1) }
        if settings.reusePort { try option(SOL_SOCKET, SO_REUSEPORT, 1) }
        if address.family == .ipv6, let only = settings.ipv6Only { try option(Int32(IPPROTO_IPV6), IPV6_V6ONLY, only ? 1 : 0) }
        if let size = settings.receiveBufferSize { try option(SOL_SOCKET, SO_RCVBUF, size) }
        if let size = settings.sendBufferSize { try option(SOL_SOCKET, SO_SNDBUF, size) }
        if settings.bindAddressNoPort { try option(Int32(IPPROTO_IP), IP_BIND_ADDRESS_NO_PORT, 1) }
        return fd
    }

    /// Binds `fd` to `address`; on failure closes it and throws.
    static func bind(_ fd: Int32, to address: SocketAddress) throws(ReactorError) {
        if address.withSockAddr({ Glibc.bind(fd, $0, $1) }) != 0 {
            let error = ReactorError(errno: errno, operation: .bind, address: address)
            Glibc.close(fd)
            throw error
        }
    }

    /// Listens on a bound `fd`; on failure closes it and throws.
    static func listen(_ fd: Int32, backlog: Int32, address: SocketAddress) throws(ReactorError) {
        if Glibc.listen(fd, backlog) != 0 {
            let error = ReactorError(errno: errno, operation: .listen, address: address)
            Glibc.close(fd)
            throw error
        }
    }

    /// Starts a connect: `.done(0)` when it completed at once, `.wouldBlock` while in
    /// progress (wait for writability), `.failed` otherwise. An interrupted connect goes
    /// on in the background like one in progress (POSIX), so EINTR is not retried here.
    static func connect(_ fd: Int32, to address: SocketAddress) -> IOResult {
        guard address.withSockAddr({ Glibc.connect(fd, $0, $1) }) != 0 else { return .done(0) }
        let error = errno
        return error == EINPROGRESS || error == EINTR ? .wouldBlock : .failed(error)
    }

    /// The error a connect in progress ended with (SO_ERROR), 0 when it succeeded.
    static func pendingError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 ? error : errno
    }

    /// Accepts one connection, non-blocking and close-on-exec; its peer is nil for a
    /// family other than IPv4 and IPv6.
    static func accept(_ fd: Int32) -> (result: IOResult, fd: Int32, peer: SocketAddress?) {
        while true {
            let (accepted, peer) = SocketAddress.filled { csystem_accept(fd, $0, $1) }
            if accepted >= 0 { return (.done(1), accepted, peer) }
            let error = errno
            if error != EINTR { return (.failure(error), -1, nil) }
        }
    }

    // MARK: - Options

    /// setsockopt with an int value; false with errno set when the kernel refuses.
    @discardableResult
    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int) -> Bool {
        var value = Int32(clamping: value)
        return setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) == 0
    }

    /// TCP_NODELAY: small writes leave at once.
    static func setNoDelay(_ fd: Int32) {
        setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
    }

    /// SO_KEEPALIVE with its timing (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT); false with
    /// errno set when the kernel refuses one.
    @discardableResult
    static func setKeepAlive(_ fd: Int32, idleSeconds: Int, intervalSeconds: Int, count: Int) -> Bool {
        let tcp = Int32(IPPROTO_TCP)
        return setOption(fd, tcp, TCP_KEEPIDLE, idleSeconds) && setOption(fd, tcp, TCP_KEEPINTVL, intervalSeconds)
            && setOption(fd, tcp, TCP_KEEPCNT, count) && setOption(fd, SOL_SOCKET, SO_KEEPALIVE, 1)
    }

    /// Asks the kernel to coalesce runs of datagrams from one sender into one receive
    /// (UDP_GRO); without it the kernel splits such runs itself, so failing costs only speed.
    static func enableReceiveOffload(_ fd: Int32) {
        _ = csystem_enable_udp_gro(fd)
    }

    // MARK: - Moving bytes

    /// One `read` into `buffer`.
    @inline(__always)
    static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        while true {
            let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if count > 0 { return .done(count) }
            if count == 0 { return .endOfFile }
            let error = errno
            if error != EINTR { return .failure(error) }
        }
    }

    /// One `send` (MSG_NOSIGNAL: a closed peer gives EPIPE instead of killing the process).
    @inline(__always)
    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> IOResult {
        while true {
            let count = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if count >= 0 { return .done(count) }
            let error = errno
            if error != EINTR { return .failure(error) }
        }
    }

    /// Up to three buffers in one `sendmsg`; empty ones are skipped.
    @inline(__always)
    static func send(
        _ fd: Int32, _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer
    ) -> IOResult {
        while true {
            let count = csystem_send3(fd, a.baseAddress, a.count, b.baseAddress, b.count, c.baseAddress, c.count)
            if count >= 0 { return .done(count) }
            let error = errno
            if error != EINTR { return .failure(error) }
        }
    }

    /// `recvmmsg` headers for the first `count` slots, pointing at their `data` and armed
    /// with their `capacity`, or nil when out of memory; free them with
    /// ``freeReceiveHeaders(_:)``.
    static func makeReceiveHeaders(_ slots: UnsafeMutablePointer<Datagram>, count: Int) -> OpaquePointer? {
        csystem_recv_headers_create(slots, UInt32(count))
    }

    static func freeReceiveHeaders(_ headers: OpaquePointer) {
        csystem_recv_headers_destroy(headers)
    }

    /// Receives up to `count` datagrams of at most `capacity` bytes into the slots of
    /// `headers` (one `recvmmsg`): `.done(n)` with n > 0.
    @inline(__always)
    static func receiveBatch(_ fd: Int32, _ headers: OpaquePointer, count: Int, capacity: Int) -> IOResult {
        while true {
            let received = Int(csystem_recv_batch(fd, headers, UInt32(count), capacity))
            if received > 0 { return .done(received) }
            if received == 0 { return .wouldBlock }
            let error = errno
            if error != EINTR { return .failure(error) }
        }
    }

    /// Sends up to `count` datagrams from `slots` (one `sendmmsg`, or one `sendto` for a
    /// single one): `.done(n)` for the first n sent; a failure is the first datagram's.
    /// While `segmentation` is nonzero, runs of equal-sized datagrams go as UDP_SEGMENT
    /// messages; a kernel that refuses clears it.
    @inline(__always)
    static func sendBatch(
        _ fd: Int32, _ slots: UnsafeMutablePointer<Datagram>, count: Int, segmentation: inout Int32
    ) -> IOResult {
        while true {
            let sent = Int(csystem_send_batch(fd, slots, UInt32(count), &segmentation))
            if sent >= 0 { return .done(sent) }
            let error = errno
            if error != EINTR { return .failure(error) }
        }
    }

    // MARK: - Closing

    /// Shuts down the sending side: the peer reads end-of-file.
    static func shutdownOutput(_ fd: Int32) {
        Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Closes the descriptor.
    static func close(_ fd: Int32) {
        Glibc.close(fd)
    }

    /// Closes with a reset: SO_LINGER with a zero timeout makes close() send RST and drop
    /// unsent data.
    static func closeWithReset(_ fd: Int32) {
        var linger = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<linger>.size))
        Glibc.close(fd)
    }
}

/// Clocks, thread names and CPU pinning, errno names and the wake-up descriptor: the other system calls
/// the reactor makes through CReactorSystem.
enum System {
    /// CLOCK_MONOTONIC in nanoseconds (a vDSO call: no system call).
    @inline(__always)
    static var monotonicNanoseconds: UInt64 { csystem_monotonic_ns() }

    /// CLOCK_MONOTONIC_COARSE in nanoseconds: a few milliseconds of resolution for a
    /// fraction of the cost, for stamps taken on every read.
    @inline(__always)
    static var coarseMonotonicNanoseconds: UInt64 { csystem_coarse_monotonic_ns() }

    /// Names the calling thread (top -H, debuggers); at most 15 bytes are kept.
    static func setThreadName(_ name: String) {
        csystem_set_thread_name(name)
    }

    /// Pins the calling thread to `cpu`; returns 0 or the error number (EINVAL for a CPU
    /// outside the process's affinity mask).
    static func pinThread(toCPU cpu: Int) -> Int32 {
        csystem_pin_thread(Int32(cpu))
    }

    /// The CPUs the process may run on (its affinity mask, so `taskset` and cgroup
    /// cpusets count), at least 1.
    static var availableCPUs: Int { Int(csystem_cpu_count()) }

    /// The errno's name ("ECONNREFUSED"), or nil when not one we name.
    static func errnoName(_ error: Int32) -> String? {
        csystem_errno_name(error).map { String(cString: $0) }
    }

    /// A non-blocking, close-on-exec eventfd, or -1 with errno.
    static func eventfd() -> Int32 {
        csystem_eventfd()
    }

    /// The process's open-file limits (RLIMIT_NOFILE), or the errno of getrlimit.
    static func openFileLimits() -> Result<(soft: UInt64, hard: UInt64), Errno> {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return .failure(Errno(errno)) }
        return .success((UInt64(limit.rlim_cur), UInt64(limit.rlim_max)))
    }

    /// Sets the soft open-file limit, keeping the hard one; 0 or the errno of setrlimit.
    static func setOpenFileLimit(soft: UInt64, hard: UInt64) -> Int32 {
        var limit = rlimit(rlim_cur: rlim_t(soft), rlim_max: rlim_t(hard))
        return setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? 0 : errno
    }

    /// An errno as an `Error`, for `Result`.
    struct Errno: Error { let code: Int32; init(_ code: Int32) { self.code = code } }
}
