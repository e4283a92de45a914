// A bundled service on a reactor thread, over TCP and UDP on loopback port 0, and a plain
// POSIX UDP client for the test's side of the wire.

import Foundation
import ReactorCore
import ReactorServices
import ReactorTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A reactor thread serving one service: a TCP listener and a UDP socket, each on a port
/// of its own. The objects live on the reactor thread; reach them through ``onReactor(_:)``.
final class ServiceServer: Sendable {
    let thread: ReactorThread
    let tcp: SocketAddress
    let udp: SocketAddress
    private let state: ReactorBound<State>

    /// What the reactor thread holds for the test.
    struct State {
        var socket: UDPSocket?
        var connections: [Connection] = []
        var replyGuard: ReplyGuard?
    }

    /// Starts the service. `makeTCP` and `makeUDP` run on the reactor thread; `makeUDP`
    /// gets the guard made from `guardOptions` (nil: no UDP socket).
    init(
        udpOptions: UDPOptions = UDPOptions(), guardOptions: ReplyGuardOptions = ReplyGuardOptions(),
        makeTCP: @escaping @Sendable () -> any ConnectionHandler,
        makeUDP: (@Sendable (ReplyGuard) -> any DatagramHandler)?
    ) throws {
        let state = ReactorBound(State())
        let (thread, addresses) = try ReactorThread.start(name: "service-server") { reactor in
            let listener = try reactor.listen(host: "127.0.0.1", port: 0) { connection in
                state.value.connections.append(connection)
                return makeTCP()
            }
            guard let makeUDP else { return (listener.address, listener.address) }
            let replyGuard = try ReplyGuard(guardOptions)
            state.value.replyGuard = replyGuard
            let socket = try reactor.bindUDP(host: "127.0.0.1", port: 0, options: udpOptions, handler: makeUDP(replyGuard))
            state.value.socket = socket
            return (listener.address, socket.localAddress)
        }
        self.thread = thread
        (tcp, udp) = addresses
        self.state = state
    }

    deinit {
        thread.stopAndJoin()
    }

    /// Runs `body` on the reactor thread with what it holds; returns its result.
    func onReactor<T: Sendable>(_ body: @escaping @Sendable (State) -> T) async throws -> T {
        try await thread.handle.submit { [state] _ in body(state.value) }
    }

    /// The UDP socket's counters.
    func udpCounters() async throws -> UDPCounters {
        try await onReactor { $0.socket?.counters ?? UDPCounters() }
    }

    /// The reply guard's counters.
    func guardCounters() async throws -> ReplyGuardCounters {
        try await onReactor { $0.replyGuard?.counters ?? ReplyGuardCounters() }
    }
}

/// A plain UDP socket on 127.0.0.1, every receive bounded by poll() and a deadline.
final class UDPClient {
    let fd: Int32

    /// Binds 127.0.0.1:`port` (0: any free port). Throws ``BindFailure`` when the port is
    /// taken or not allowed.
    init(port: Int = 0, bufferSize: Int32 = 1 << 20) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        for option in [SO_SNDBUF, SO_RCVBUF] {
            var size = bufferSize
            setsockopt(fd, SOL_SOCKET, option, &size, socklen_t(4))
        }
        let address = try SocketAddress(ip: "127.0.0.1", port: port)
        guard withSockAddr(address, { bind(fd, $0, $1) }) == 0 else {
            let error = errno
            Glibc.close(fd)
            throw BindFailure(port: port, errno: error)
        }
    }

    deinit { Glibc.close(fd) }

    /// A bind that failed, with its errno.
    struct BindFailure: Error, CustomStringConvertible {
        let port: Int
        let errno: Int32
        var description: String { "bind 127.0.0.1:\(port): \(String(cString: strerror(errno)))" }
    }

    var localPort: Int { boundPort(of: fd) }

    /// Sends one datagram; throws unless the kernel took all of it.
    func send(_ bytes: [UInt8], to address: SocketAddress) throws {
        let sent = bytes.withUnsafeBytes { buffer in
            withSockAddr(address) { sendto(fd, buffer.baseAddress, buffer.count, 0, $0, $1) }
        }
        guard sent == bytes.count else { throw TestFailure("sendto \(address): \(sent) of \(bytes.count) bytes, \(String(cString: strerror(errno)))") }
    }

    /// The next datagram, or nil if none comes within `timeout`.
    func receive(timeout: Duration = .seconds(5)) -> [UInt8]? {
        let deadline = Deadline(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count >= 0 { return Array(buffer[..<count]) }
            guard errno == EAGAIN || errno == EINTR else { return nil }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&entry, 1, deadline.remainingMilliseconds) == 0 { return nil }
        }
    }

    /// Every datagram that arrives until none has for `quiet`.
    func receiveAll(quiet: Duration = .milliseconds(300)) -> [[UInt8]] {
        var datagrams: [[UInt8]] = []
        while let datagram = receive(timeout: quiet) { datagrams.append(datagram) }
        return datagrams
    }
}

/// Sleeps the calling thread for `duration`.
func pause(_ duration: Duration) {
    usleep(UInt32(duration.milliseconds * 1000))
}

/// Runs a shell command with a deadline; returns its status and output.
func shell(_ command: String, timeout: Duration = .seconds(10)) async throws -> (status: Int32?, output: String, error: String) {
    let child = try ChildProcess("/bin/bash", ["-c", command])
    let status = await child.waitForExit(timeout: timeout)
    return (status, child.standardOutput, child.standardError)
}
