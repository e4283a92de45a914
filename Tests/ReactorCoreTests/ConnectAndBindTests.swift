// Outgoing connects that fail (refused, timed out, cancelled) and listeners that cannot
// bind: typed errors that name the address and the cause.

import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// Runs `body` with a reactor thread that connects to `address` with the framework, and
/// the record the handler fills.
private func withFrameworkConnect(
    to address: SocketAddress, timeout: Duration = .seconds(5), _ body: (TestReactor, Locked<ConnectionRecord>) throws -> Void
) throws {
    let record = Locked(ConnectionRecord())
    try withReactor(setup: { reactor in
        reactor.connect(to: address, timeout: timeout, handler: ProbeHandler(record: record))
        return ()
    }) { thread, _ in try body(thread, record) }
}

@Suite("Connect and bind errors", .timeLimit(.minutes(1)))
struct ConnectAndBindTests {
    @Test("connecting to a port nobody listens on fails with connectionRefused, naming the address", arguments: ["127.0.0.1", "::1"])
    func connectRefused(host: String) throws {
        // Bound but not listening: the port stays ours, and the kernel answers SYN with RST.
        let closedPort = try RawSocket(host: host)
        let target = try SocketAddress(ip: host, port: closedPort.port)
        try withFrameworkConnect(to: target) { thread, record in
            let result = try #require(record.wait(until: { $0.connectFailed != nil }), "connectFailed was not called")
            let error = try #require(result.connectFailed)
            #expect(error.code == .connectionRefused)
            #expect(error.errno == ECONNREFUSED)
            #expect(error.operation == .connect)
            #expect(error.address == target)
            #expect(error.description.contains(target.description), "\(error)")
            #expect(error.description.contains("refused"), "\(error)")
            #expect(result.opened == 0)
            usleep(20_000)
            #expect(record.value.closed.isEmpty, "closed() must not follow connectFailed()")
        }
    }

    @Test("a connect nobody answers fails with timedOut after the connect timeout")
    func connectTimeout() throws {
        // Once a listener's accept queue is full, the kernel drops further SYNs.
        let silent = try SilentListener()
        defer { withExtendedLifetime(silent) {} }
        let target = silent.address

        let started = ContinuousClock.now
        try withFrameworkConnect(to: target, timeout: .milliseconds(300)) { thread, record in
            let result = try #require(record.wait(until: { $0.connectFailed != nil }), "connectFailed was not called")
            let elapsed = ContinuousClock.now - started
            let error = try #require(result.connectFailed)
            #expect(error.code == .timedOut, "\(error)")
            #expect(error.address == target)
            #expect(error.description.contains(target.description), "\(error)")
            #expect(elapsed >= .milliseconds(250), "gave up before the timeout: \(elapsed)")
            #expect(result.opened == 0)
        }
    }

    @Test("a cancelled connect never calls its handler")
    func connectCancelled() throws {
        let silent = try SilentListener()
        defer { withExtendedLifetime(silent) {} }
        let target = silent.address
        let record = Locked(ConnectionRecord())
        try withReactor(setup: { reactor in
            let pending = reactor.connect(to: target, timeout: .milliseconds(100), handler: ProbeHandler(record: record))
            let wasPending = pending.isPending
            pending.cancel()
            return (wasPending, pending.isPending)
        }) { thread, wasPending in
            #expect(wasPending == (true, false))
            usleep(300_000)  // past the connect timeout
            let seen = record.value
            #expect(seen.connectFailed == nil)
            #expect(seen.opened == 0)
        }
    }

    @Test("binding a port in use throws addressInUse, naming the address", arguments: ["127.0.0.1", "::1"])
    func bindInUse(host: String) throws {
        try withEchoServer(host: host) { server in
            let error = try reactorError { reactor in
                _ = try reactor.listen(host: host, port: server.port) { _ in ByteEcho() }
            }
            let thrown = try #require(error, "a second listener on the same port must fail")
            #expect(thrown.code == .addressInUse)
            #expect(thrown.errno == EADDRINUSE)
            #expect(thrown.operation == .bind)
            #expect(thrown.address == server.address)
            #expect(thrown.description.contains(server.address.description), "\(thrown)")
            #expect(thrown.description.contains("address already in use"), "\(thrown)")
        }
    }

    @Test("listening on a host that does not resolve throws invalidAddress, naming the host")
    func listenBadHost() throws {
        let error = try reactorError { reactor in
            _ = try reactor.listen(host: "nonsense.invalid", port: 0) { _ in ByteEcho() }
        }
        let thrown = try #require(error)
        #expect(thrown.code == .invalidAddress)
        #expect(thrown.description.contains("nonsense.invalid"), "\(thrown)")
    }

    @Test("listener port 0 picks a real port and accepts on it")
    func listenerPortZero() throws {
        try withEchoServer { server in
            #expect(server.port > 0)
            let client = try TestClient(connectingTo: server.address)
            try client.send("x")
            #expect(try client.receive(count: 1) == Array("x".utf8))
        }
    }

    @Test("closing a listener refuses new connections but keeps the accepted ones")
    func closeListenerKeepsConnections() throws {
        let listener = ReactorBound<TCPListener?>(nil)
        try withReactor(setup: { reactor in
            listener.value = try reactor.listen(host: "127.0.0.1", port: 0) { _ in ByteEcho() }
            return listener.value!.address
        }) { thread, address in
            let client = try TestClient(connectingTo: address)
            try client.send("a")
            #expect(try client.receive(count: 1) == Array("a".utf8))
            let listening = try thread.sync { _ in
                listener.value?.close()
                return listener.value?.isListening
            }
            #expect(listening == false)
            #expect(throws: TestFailure.self) { try TestClient(connectingTo: address, timeout: .seconds(1)) }
            try client.send("b")
            #expect(try client.receive(count: 1) == Array("b".utf8), "an accepted connection died with its listener")
        }
    }

    @Test("a connect from a source address reaches the server from that address, on a port the kernel picked")
    func connectFromSourceAddress() throws {
        let sources = try (7...9).map { try SocketAddress(ip: "127.0.0.\($0)", port: 0) }
        let clients = sources.map { _ in Locked(ConnectionRecord()) }
        let accepted = Locked<[SocketAddress]>([])
        try withReactor(setup: { reactor in
            let listener = try reactor.listen(host: "127.0.0.1", port: 0) { connection in
                let peer = connection.peerAddress
                accepted.update { $0.append(peer) }
                return ByteEcho()
            }
            for (source, record) in zip(sources, clients) {
                reactor.connect(to: listener.address, from: source, handler: ProbeHandler(record: record))
            }
            return ()
        }) { _, _ in
            let peers = try #require(accepted.wait(until: { $0.count == sources.count }), "not every connect arrived")
            #expect(Set(peers.map(\.ip)) == Set(sources.map(\.ip)))
            #expect(peers.allSatisfy { $0.port != 0 })
            for (source, record) in zip(sources, clients) {
                let seen = try #require(record.wait(until: { $0.opened == 1 }), "the connect from \(source.ip) did not open")
                #expect(seen.local?.ip == source.ip)
                #expect(seen.connectFailed == nil)
            }
        }
    }

    @Test("a source address of the other family fails with invalidAddress, naming it")
    func connectFromOtherFamily() throws {
        let listening = try RawSocket(listenBacklog: 4)
        let target = try SocketAddress(ip: "127.0.0.1", port: listening.port)
        defer { withExtendedLifetime(listening) {} }
        let source = try SocketAddress(ip: "::1", port: 0)
        let record = Locked(ConnectionRecord())
        try withReactor(setup: { reactor in
            reactor.connect(to: target, from: source, handler: ProbeHandler(record: record))
            return ()
        }) { _, _ in
            let result = try #require(record.wait(until: { $0.connectFailed != nil }), "connectFailed was not called")
            let error = try #require(result.connectFailed)
            #expect(error.code == .invalidAddress)
            #expect(error.operation == .bind)
            #expect(error.address == source)
            #expect(error.description.contains("same family"), "\(error)")
            #expect(result.opened == 0)
        }
    }

    @Test("a source address this machine does not have fails with addressNotAvailable")
    func connectFromForeignAddress() throws {
        let listening = try RawSocket(listenBacklog: 4)
        let target = try SocketAddress(ip: "127.0.0.1", port: listening.port)
        defer { withExtendedLifetime(listening) {} }
        let source = try SocketAddress(ip: "192.0.2.1", port: 0)  // TEST-NET-1: on no interface
        let record = Locked(ConnectionRecord())
        try withReactor(setup: { reactor in
            reactor.connect(to: target, from: source, handler: ProbeHandler(record: record))
            return ()
        }) { _, _ in
            let result = try #require(record.wait(until: { $0.connectFailed != nil }), "connectFailed was not called")
            let error = try #require(result.connectFailed)
            #expect(error.code == .addressNotAvailable, "\(error)")
            #expect(error.errno == EADDRNOTAVAIL)
            #expect(error.operation == .bind)
            #expect(error.address == source)
            #expect(result.opened == 0)
        }
    }
}
