// A group of reactors on real sockets: how each listen mode spreads connections, that a
// connection and its handler stay on one reactor's thread, UDP on every reactor, and a
// graceful shutdown that serves the clients waiting in the backlogs instead of
// resetting them.

import Dispatch
import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// The calling thread's name, as the kernel has it.
private func threadName() -> String {
    threadFile("comm").trimmingCharacters(in: .whitespacesAndNewlines)
}

/// A file of /proc/thread-self: what the kernel says of the calling thread.
private func threadFile(_ name: String) -> String {
    (try? String(contentsOfFile: "/proc/thread-self/\(name)", encoding: .utf8)) ?? ""
}

/// Runs `body` with a started group, stopped and joined however `body` ends.
private func withGroup<T>(count: Int = 2, name: String = "grp", _ body: (ReactorGroup) throws -> T) throws -> T {
    let group = try ReactorGroup(count: count, name: name)
    defer { group.stop() }
    return try body(group)
}

/// Counts the connections each reactor thread opened.
private final class OpenCounter: ConnectionHandler {
    let counts: Locked<[String: Int]>
    init(_ counts: Locked<[String: Int]>) { self.counts = counts }
    func opened(_ connection: Connection) { counts.update { $0[threadName(), default: 0] += 1 } }
    func received(_ bytes: RawSpan, on connection: Connection) {}
}

/// Opens `total` connections one after another, each closed at once (so only a few
/// descriptors are open at any time); returns the count per reactor thread once the
/// group has opened them all.
private func spread(_ total: Int, mode: GroupListenMode) throws -> [String: Int] {
    try withGroup { group in
        let counts = Locked<[String: Int]>([:])
        let listener = try group.listen(host: "127.0.0.1", port: 0, mode: mode) { _ in { _ in OpenCounter(counts) } }
        for _ in 0..<total {
            try TestClient(connectingTo: listener.address).close()
        }
        let opened = waitUntil(timeout: .seconds(30)) { counts.value.values.reduce(0, +) == total }
        #expect(opened, "opened \(counts.value) of \(total)")
        return counts.value
    }
}

@Suite("ReactorGroup")
struct ReactorGroupTests {
    @Test("the acceptor spreads 10,000 connections over two reactors within one of even")
    func acceptorBalance() throws {
        let counts = try spread(10_000, mode: .acceptor)
        #expect(Set(counts.keys) == ["grp-0", "grp-1"], "\(counts)")
        #expect(abs((counts["grp-0"] ?? 0) - (counts["grp-1"] ?? 0)) <= 1, "\(counts)")
    }

    @Test("SO_REUSEPORT spreads 10,000 connections over two reactors within 20% of even")
    func reusePortBalance() throws {
        let counts = try spread(10_000, mode: .reusePort)
        for reactor in ["grp-0", "grp-1"] {
            #expect((4_000...6_000).contains(counts[reactor] ?? 0), "\(counts)")
        }
    }

    @Test("a connection's handler is made, opened and fed on one reactor's thread, the one whose factory made it",
          arguments: GroupListenMode.allCases)
    func confinement(mode: GroupListenMode) throws {
        /// Records the thread of every call it gets, and echoes.
        final class ThreadRecorder: ConnectionHandler {
            let factoryThread: String
            let log: Locked<[[String]]>
            var calls: [String] = []
            init(factoryThread: String, log: Locked<[[String]]>) {
                self.factoryThread = factoryThread
                self.log = log
            }
            func opened(_ connection: Connection) { calls = [factoryThread, threadName()] }
            func received(_ bytes: RawSpan, on connection: Connection) {
                calls.append(threadName())
                connection.write(bytes)
            }
            func closed(_ connection: Connection, reason: CloseReason) {
                calls.append(threadName())
                log.update { $0.append(calls) }
            }
        }
        try withGroup(count: 3) { group in
            let log = Locked<[[String]]>([])
            let listener = try group.listen(host: "127.0.0.1", port: 0, mode: mode) { _ in
                let factoryThread = threadName()
                return { _ in ThreadRecorder(factoryThread: factoryThread, log: log) }
            }
            for index in 0..<12 {
                let client = try TestClient(connectingTo: listener.address)
                #expect(try client.exchange(Array("ping \(index)".utf8)) == Array("ping \(index)".utf8))
                client.close()
            }
            #expect(waitUntil(timeout: .seconds(10)) { log.value.count == 12 })
            let threads = Set(log.value.flatMap { $0 })
            #expect(threads.isSubset(of: ["grp-0", "grp-1", "grp-2"]), "\(threads)")
            for calls in log.value {
                #expect(calls.count >= 4 && Set(calls).count == 1, "\(calls)")
            }
            if mode == .acceptor { #expect(threads.count == 3, "round robin reaches every reactor: \(threads)") }
        }
    }

    @Test("UDP: one SO_REUSEPORT socket per reactor on one port, each sender answered")
    func udpOnEveryReactor() throws {
        try withGroup { group in
            let address = try group.bindUDP(host: "127.0.0.1", port: 0) { _ in DatagramEcho() }
            let bound = try group.performOnAll { reactor in reactor.connectionCount }
            #expect(bound == [0, 0])
            for index in 0..<16 {
                let client = try UDPTestClient()
                let payload = Array("datagram \(index)".utf8)
                try client.send(payload, to: address)
                #expect(client.receive(timeout: .seconds(5))?.bytes == payload)
            }
        }
    }

    @Test("next() goes round the reactors; work posted to each runs on its own thread")
    func roundRobin() throws {
        try withGroup(count: 3) { group in
            let names = (0..<6).map { _ in
                let name = Locked("")
                let done = DispatchSemaphore(value: 0)
                group.next().execute { _ in
                    name.set(threadName())
                    done.signal()
                }
                _ = done.wait(timeout: .now() + 10)
                return name.value
            }
            #expect(names == ["grp-0", "grp-1", "grp-2", "grp-0", "grp-1", "grp-2"])
            let threads: [String] = try group.performOnAll { _ in threadName() }
            #expect(threads == ["grp-0", "grp-1", "grp-2"])
        }
    }

    @Test("pinning: a reactor pinned to CPU 0 runs there; a CPU the process may not use is a typed error")
    func pinning() throws {
        let group = try ReactorGroup(count: 1, name: "pin", cpus: [0])
        defer { group.stop() }
        let allowed = try group.perform(on: 0) { _ in
            threadFile("status").split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") } ?? ""
        }
        #expect(allowed.split(separator: "\t").last == "0", "\(allowed)")
        #expect {
            _ = try ReactorGroup(count: 2, name: "pin", cpus: [0, 4095])
        } throws: { ($0 as? ReactorError)?.operation == .pinThread }
    }

    @Test("stop() ends every reactor and joins their threads once: afterwards the handles refuse work")
    func stop() throws {
        let group = try ReactorGroup(count: 2, name: "grp")
        group.stop()
        group.join()  // joined already: returns at once
        #expect(group.handles.allSatisfy { !$0.execute { _ in } })
    }

    @Test("graceful shutdown serves every client waiting in the backlogs: each is answered, none reset",
          arguments: GroupListenMode.allCases)
    func shutdownServesBacklog(mode: GroupListenMode) throws {
        let group = try ReactorGroup(count: 2, name: "grp")
        defer { group.stop() }
        let listener = try group.listen(host: "127.0.0.1", port: 0, mode: mode) { _ in { _ in ByteEcho() } }
        // Hold both loops, so nothing is accepted while the clients queue and send.
        let release = DispatchSemaphore(value: 0)
        let held = DispatchSemaphore(value: 0)
        group.executeOnAll { _ in
            held.signal()
            release.wait()
        }
        held.wait()
        held.wait()
        let clients = try (0..<40).map { index in
            let client = try TestClient(connectingTo: listener.address)
            try client.send("request \(index)")
            return client
        }
        group.shutdownGracefully(timeout: .seconds(20))
        release.signal()
        release.signal()
        for (index, client) in clients.enumerated() {
            let (bytes, end) = client.receiveUntilEnd(timeout: .seconds(20))
            #expect(String(decoding: bytes, as: UTF8.self) == "request \(index)" && end == .endOfFile, "client \(index): \(end)")
        }
        #expect(waitUntil(timeout: .seconds(20)) { group.handles.allSatisfy { !$0.execute { _ in } } })
    }

    @Test("graceful shutdown serves clients from the backlogs whose requests come after it began",
          arguments: GroupListenMode.allCases)
    func shutdownServesLateRequestsFromBacklog(mode: GroupListenMode) throws {
        let group = try ReactorGroup(count: 2, name: "grp")
        defer { group.stop() }
        let listener = try group.listen(host: "127.0.0.1", port: 0, mode: mode) { _ in { _ in ByteEcho() } }
        let release = DispatchSemaphore(value: 0)
        let held = DispatchSemaphore(value: 0)
        group.executeOnAll { _ in
            held.signal()
            release.wait()
        }
        held.wait()
        held.wait()
        // Queued, silent: the drain accepts them (the acceptor hands them to both reactors)
        // before their requests come.
        let clients = try (0..<20).map { _ in try TestClient(connectingTo: listener.address) }
        group.shutdownGracefully(timeout: .seconds(20))
        release.signal()
        release.signal()
        Thread.sleep(forTimeInterval: 0.3)  // within ShutdownGrace's 1 s wait for a first input
        for (index, client) in clients.enumerated() { try client.send("late \(index)") }
        for (index, client) in clients.enumerated() {
            let (bytes, end) = client.receiveUntilEnd(timeout: .seconds(20))
            #expect(String(decoding: bytes, as: UTF8.self) == "late \(index)" && end == .endOfFile, "client \(index): \(end)")
        }
    }
}

/// One reactor's graceful shutdown, started while clients wait in its backlog.
@Suite("Graceful shutdown and the backlog")
struct ShutdownBacklogTests {
    @Test("a PROXY header completed after the shutdown began: the request that follows it is still answered")
    func proxiedRequestAfterTheHeader() throws {
        try withReactor(setup: { reactor in
            var options = ListenerOptions()
            options.proxyProtocol = ProxyProtocolOptions(.v2)
            return try reactor.listen(host: "127.0.0.1", port: 0, options: options) { _ in ByteEcho() }.address
        }) { reactor, address in
            let header = proxyV2(family: 0x11, addresses: exampleIPv4Block)
            let client = try TestClient(connectingTo: address)
            try client.send(Array(header.prefix(10)))
            usleep(100_000)
            try reactor.sync { $0.shutdownGracefully(timeout: .seconds(10)) }
            try client.send(Array(header.dropFirst(10)))
            usleep(100_000)
            try client.send("the request")
            let (bytes, end) = client.receiveUntilEnd(timeout: .seconds(10))
            #expect(String(decoding: bytes, as: UTF8.self) == "the request" && end == .endOfFile, "\(end)")
            #expect(reactor.waitUntilStopped(timeout: .seconds(10)))
        }
    }

    @Test("a group's acceptor with the PROXY protocol: it reads each header and hands the connection, the header and the bytes after it to the reactors in turn")
    func acceptorReadsProxyHeaders() throws {
        try withGroup { group in
            var options = ListenerOptions()
            options.proxyProtocol = ProxyProtocolOptions(.v2)
            let seen = Locked<[ProxiedConnection]>([])
            let threads = Locked<Set<String>>([])
            let listener = try group.listen(host: "127.0.0.1", port: 0, mode: .acceptor, options: options) { _ in
                { _ in
                    threads.update { _ = $0.insert(threadName()) }
                    return ProxyProbe(seen: seen)
                }
            }
            for index in 0..<4 {
                let client = try TestClient(connectingTo: listener.address)
                try client.send(proxyV2(family: 0x11, addresses: exampleIPv4Block) + Array("ping \(index)".utf8))
                #expect(try client.receive(count: 6) == Array("ping \(index)".utf8), "the bytes after the header, handed over")
            }
            #expect(seen.value.count == 4)
            #expect(seen.value.allSatisfy { $0.peer == (try? SocketAddress(ip: "192.168.0.1", port: 56324)) && $0.proxyPeer != nil })
            #expect(threads.value.count == 2, "both reactors served: \(threads.value)")
        }
    }

    @Test("shutdownGracefully accepts what waits in the backlog and answers it before closing")
    func singleReactor() throws {
        try withReactor { reactor in
            let address = try reactor.sync { reactor in
                try reactor.listen(host: "127.0.0.1", port: 0) { _ in ByteEcho() }.address
            }
            let release = DispatchSemaphore(value: 0)
            let held = DispatchSemaphore(value: 0)
            reactor.handle.execute { reactor in
                held.signal()
                release.wait()
                // Still inside this callback: the listener has not seen the queue yet.
                reactor.shutdownGracefully(timeout: .seconds(20))
            }
            held.wait()
            let clients = try (0..<30).map { index in
                let client = try TestClient(connectingTo: address)
                try client.send("waiting \(index)")
                return client
            }
            release.signal()
            for (index, client) in clients.enumerated() {
                let (bytes, end) = client.receiveUntilEnd(timeout: .seconds(20))
                #expect(String(decoding: bytes, as: UTF8.self) == "waiting \(index)" && end == .endOfFile, "client \(index): \(end)")
            }
            #expect(reactor.waitUntilStopped(timeout: .seconds(20)))
        }
    }
}
