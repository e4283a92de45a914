// A bundled service on a reactor thread, over TCP and UDP on loopback port 0.

import Foundation
import Glibc
import ReactorCore
import ReactorServices
import ReactorTestSupport
import Testing

/// A reactor thread serving one service, a TCP listener and a UDP socket each on a port
/// of its own, for the length of a ``withServiceServer`` block. The objects live on the
/// reactor thread; reach them through ``run(_:)`` or ``sync(timeout:_:)``.
final class ServiceServer: Sendable {
    let reactor: TestReactor
    let tcp: SocketAddress
    let udp: SocketAddress
    private let state: ReactorBound<State>

    /// What the reactor thread holds for the test.
    struct State {
        var socket: UDPSocket?
        var connections: [Connection] = []
        var replyGuard: ReplyGuard?
    }

    init(reactor: TestReactor, tcp: SocketAddress, udp: SocketAddress, state: ReactorBound<State>) {
        self.reactor = reactor
        self.tcp = tcp
        self.udp = udp
        self.state = state
    }

    /// Runs `body` on the reactor thread with what it holds; returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable (State) -> T) async throws -> T {
        try await reactor.run { [state] _ in body(state.value) }
    }

    /// Runs `body` on the reactor thread and blocks until it returns (at most `timeout`),
    /// for tests that poll; see ``TestReactor/sync(timeout:_:)``.
    func sync<T: Sendable>(timeout: Duration = .seconds(5), _ body: @escaping @Sendable (State) -> T) throws -> T {
        try reactor.sync(timeout: timeout) { [state] _ in body(state.value) }
    }

    /// The UDP socket's counters.
    func udpCounters() async throws -> UDPCounters {
        try await run { $0.socket?.counters ?? UDPCounters() }
    }

    /// The reply guard's counters.
    func guardCounters() async throws -> ReplyGuardCounters {
        try await run { $0.replyGuard?.counters ?? ReplyGuardCounters() }
    }
}

/// Runs `body` with a service on a reactor thread: `makeTCP` and `makeUDP` run on the
/// reactor thread; `makeUDP` gets the guard made from `guardOptions` (nil: no UDP
/// socket). The reactor is stopped and joined when `body` returns or throws.
func withServiceServer<T>(
    udpOptions: UDPOptions = UDPOptions(), guardOptions: ReplyGuardOptions = ReplyGuardOptions(),
    makeTCP: @escaping @Sendable () -> any ConnectionHandler,
    makeUDP: (@Sendable (ReplyGuard) -> any DatagramHandler)?,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (ServiceServer) async throws -> T
) async throws -> T {
    let (state, setup) = serviceSetup(udpOptions, guardOptions, makeTCP, makeUDP)
    return try await withReactor(name: "service-server", setup: setup, sourceLocation: sourceLocation) { reactor, addresses in
        try await body(ServiceServer(reactor: reactor, tcp: addresses.tcp, udp: addresses.udp, state: state))
    }
}

/// The blocking form of the function above, for tests that poll from a thread of their own.
func withServiceServer<T>(
    udpOptions: UDPOptions = UDPOptions(), guardOptions: ReplyGuardOptions = ReplyGuardOptions(),
    makeTCP: @escaping @Sendable () -> any ConnectionHandler,
    makeUDP: (@Sendable (ReplyGuard) -> any DatagramHandler)?,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (ServiceServer) throws -> T
) throws -> T {
    let (state, setup) = serviceSetup(udpOptions, guardOptions, makeTCP, makeUDP)
    return try withReactor(name: "service-server", setup: setup, sourceLocation: sourceLocation) { reactor, addresses in
        try body(ServiceServer(reactor: reactor, tcp: addresses.tcp, udp: addresses.udp, state: state))
    }
}

private func serviceSetup(
    _ udpOptions: UDPOptions, _ guardOptions: ReplyGuardOptions,
    _ makeTCP: @escaping @Sendable () -> any ConnectionHandler,
    _ makeUDP: (@Sendable (ReplyGuard) -> any DatagramHandler)?
) -> (ReactorBound<ServiceServer.State>, @Sendable (Reactor) throws -> (tcp: SocketAddress, udp: SocketAddress)) {
    let state = ReactorBound(ServiceServer.State())
    return (state, { reactor in
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
    })
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
