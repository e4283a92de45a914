// A bundled service on a reactor thread, over TCP and UDP on loopback port 0.

import Foundation
import Glibc
import ReactorCore
import ReactorServices
import ReactorTestSupport
import Testing

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

    /// Runs `body` on the reactor thread and blocks until it returns (at most `timeout`),
    /// for tests that poll: a blocked thread of its own keeps polling on time even when
    /// busy tests hold every thread of Swift's cooperative pool.
    func onReactorBlocking<T: Sendable>(
        timeout: Duration = .seconds(5), _ body: @escaping @Sendable (State) -> T
    ) throws -> T {
        let result = Locked<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        let posted = thread.handle.execute { [state] _ in
            result.set(body(state.value))
            done.signal()
        }
        guard posted else { throw TestFailure("the reactor has stopped") }
        guard done.wait(timeout: .now() + .milliseconds(Int(timeout.components.seconds * 1000))) == .success,
              let value = result.value else {
            throw TestFailure("the reactor did not run the job within \(timeout)")
        }
        return value
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
