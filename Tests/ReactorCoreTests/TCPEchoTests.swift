// TCP echo over real loopback sockets: round trips over IPv4 and IPv6 against plain
// POSIX clients and the framework's own connect, and multi-MiB transfers checked byte
// for byte.

import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

@Suite("TCP echo", .timeLimit(.minutes(1)))
struct TCPEchoTests {
    @Test("echo round trip with a plain POSIX client", arguments: ["127.0.0.1", "::1"])
    func echoRoundTrip(host: String) throws {
        try withProbedServer(host: host, echo: true, keepReceivedBytes: false) { server, logs in
            #expect(server.address.ip == host)
            #expect(server.address.port != 0, "port 0 must be replaced by the port the kernel chose")

            let client = try TestClient(connectingTo: server.address)
            for message in [Array("hello".utf8), [0], Array("line\r\n".utf8), pattern(count: 10_000)] {
                try client.send(message)
                #expect(try client.receive(count: message.count) == message)
            }
            client.shutdownWrite()
            let (rest, end) = client.receiveUntilEnd()
            #expect(rest.isEmpty)
            #expect(end == .endOfFile)

            let record = try logs.record().value
            let local = try #require(record.local)
            let peer = try #require(record.peer)
            #expect(local == server.address, "the server side's local address is the listener's")
            #expect(peer.ip == host)
            #expect(peer.port == boundPort(of: client.fd), "the peer address is the client's")
            #expect(try logs.closeReason() == .endOfFile)
        }
    }

    @Test("echo round trip with the framework's own connect", arguments: ["127.0.0.1", "::1"])
    func echoWithFrameworkClient(host: String) throws {
        try withEchoServer(host: host) { server in
            let message = Array("hello from the reactor\n".utf8)
            let client = Locked(ConnectionRecord())
            try server.sync { reactor in
                let handler = ProbeHandler(record: client)
                handler.onOpened = { connection in connection.write(message) }
                handler.onReceived = { _, connection in
                    if client.value.receivedCount >= message.count { connection.close() }
                }
                reactor.connect(to: server.address, handler: handler)
            }
            let done = try #require(client.wait(until: { !$0.closed.isEmpty }), "the client connection did not close")
            #expect(done.connectFailed == nil)
            #expect(done.opened == 1)
            #expect(done.received == message)
            #expect(done.closed == [.closed])
            #expect(done.peer == server.address)
        }
    }

    @Test("many clients at once each get their own bytes back")
    func manyConcurrentClients() throws {
        try withEchoServer { server in
            let clients = try (0..<50).map { _ in try TestClient(connectingTo: server.address) }
            // Interleave: everybody sends, then everybody reads.
            for (index, client) in clients.enumerated() {
                try client.send(pattern(count: 1000, seed: UInt64(index)))
            }
            for (index, client) in clients.enumerated() {
                let echoed = try client.receive(count: 1000)
                #expect(firstPatternMismatch(echoed, seed: UInt64(index)) == nil, "client \(index) got someone else's bytes")
            }
        }
    }

    @Test("8 MiB through echo arrives intact (plain client)", arguments: ["127.0.0.1", "::1"])
    func largeTransfer(host: String) throws {
        try withEchoServer(host: host) { server in
            let size = 8 * 1024 * 1024
            let data = pattern(count: size)
            let client = try TestClient(connectingTo: server.address)
            let echoed = try client.exchange(data, timeout: .seconds(30))
            #expect(echoed.count == size)
            #expect(firstPatternMismatch(echoed) == nil, "the echo differs from what was sent")
            client.shutdownWrite()
            #expect(client.receiveUntilEnd().end == .endOfFile)
        }
    }

    @Test("8 MiB written at once by a framework client comes back intact")
    func largeTransferFrameworkClient() throws {
        try withEchoServer { server in
            let size = 8 * 1024 * 1024
            let client = Locked(ConnectionRecord())
            let writeAccepted = Locked<Bool?>(nil)
            try server.sync { reactor in
                let handler = ProbeHandler(record: client)
                handler.onOpened = { connection in
                    // Far above the high watermark but under the 16 MiB limit: queued, not dropped.
                    writeAccepted.set(connection.write(pattern(count: size)))
                }
                handler.onReceived = { _, connection in
                    if client.value.receivedCount >= size { connection.close() }
                }
                reactor.connect(to: server.address, handler: handler)
            }
            let done = try #require(client.wait(timeout: .seconds(30), until: { !$0.closed.isEmpty }), "the transfer did not finish")
            #expect(writeAccepted.value == true)
            #expect(done.received.count == size)
            #expect(firstPatternMismatch(done.received) == nil, "the echo differs from what was sent")
            #expect(done.closed == [.closed])
        }
    }

    @Test("writes batched with withBatchedWrites arrive complete and in order")
    func batchedWrites() throws {
        try withServer(makeHandler: { _, _ in
            let handler = ProbeHandler(record: Locked(ConnectionRecord()))
            handler.onReceived = { _, connection in
                // One reply per "request": 1000 small writes, one syscall.
                connection.withBatchedWrites {
                    for index in 0..<1000 { connection.write("\(index),") }
                }
                connection.close()
            }
            return handler
        }) { server in
            let client = try TestClient(connectingTo: server.address)
            try client.send("go")
            expectText(client.receiveUntilEnd(), (0..<1000).map { "\($0)," }.joined())
        }
    }

    @Test("past maxConnections, new connections wait in the backlog until one closes")
    func maxConnections() throws {
        var options = ListenerOptions()
        options.maxConnections = 2
        let logs = ConnectionLogs()
        try withReactor(setup: { [options] reactor in
            try reactor.listen(host: "127.0.0.1", port: 0, options: options) { _ in
                ProbeHandler(record: logs.add(), inner: ByteEcho())
            }.address
        }) { thread, address in
            let first = try TestClient(connectingTo: address)
            let second = try TestClient(connectingTo: address)
            let third = try TestClient(connectingTo: address)  // completed by the kernel, not accepted
            for client in [first, second] {
                try client.send("in")
                #expect(try client.receive(count: 2) == Array("in".utf8))
            }
            try third.send("waiting")
            #expect(third.receiveSome(timeout: .milliseconds(200)).end == .timedOut, "a third connection was served")
            first.close()
            #expect(try third.receive(count: 7) == Array("waiting".utf8), "the waiting connection was not accepted after one closed")
            #expect(logs.all.count == 3)
        }
    }
}
