// UDP sockets on the reactor over real loopback sockets: binding, whole datagrams with
// their senders, batched replies, truncation, typed send errors, connected mode, and
// closing. The bundled UDP services are tested in ReactorServicesTests.

import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// What a UDP handler saw, written on the reactor thread, read by the test.
struct DatagramRecord: Sendable {
    var opened = 0
    var received: [[UInt8]] = []
    var senders: [SocketAddress] = []
    var truncated: [Int] = []
    var errors: [ReactorError] = []
    var closed = 0
}

/// Records everything; echoes each datagram to its sender when `echo` is set.
final class DatagramProbe: DatagramHandler {
    let record: Locked<DatagramRecord>
    let echo: Bool
    var onReceived: ((RawSpan, SocketAddress, UDPSocket) -> Void)?

    init(record: Locked<DatagramRecord>, echo: Bool = true) {
        self.record = record
        self.echo = echo
    }

    func opened(_ socket: UDPSocket) { record.update { $0.opened += 1 } }

    func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        let bytes = datagram.copyBytes()
        record.update {
            $0.received.append(bytes)
            $0.senders.append(sender)
        }
        if echo { socket.send(datagram, to: sender) }
        onReceived?(datagram, sender, socket)
    }

    func truncated(length: Int, from sender: SocketAddress, on socket: UDPSocket) {
        record.update { $0.truncated.append(length) }
    }

    func errorCaught(_ error: ReactorError, on socket: UDPSocket) {
        record.update { $0.errors.append(error) }
    }

    func closed(_ socket: UDPSocket) { record.update { $0.closed += 1 } }
}

/// A UDP socket on a reactor thread whose handler is a ``DatagramProbe`` recording into
/// ``record``.
struct UDPTestServer {
    let server: TestUDPServer
    let record: Locked<DatagramRecord>
    var address: SocketAddress { server.address }

    /// The server socket's counters, read on its thread.
    func counters() throws -> UDPCounters {
        try server.sync { $0.counters }
    }
}

/// Runs `body` with a UDP socket bound on `host` port 0 whose ``DatagramProbe`` echoes when
/// `echo` is set and is set up further by `configure`; stopped and joined when `body`
/// returns or throws.
func withUDPTestServer<T>(
    host: String = "127.0.0.1", options: UDPOptions = UDPOptions(), echo: Bool = true,
    configure: @escaping @Sendable (DatagramProbe) -> Void = { _ in },
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: (UDPTestServer) throws -> T
) throws -> T {
    let record = Locked(DatagramRecord())
    return try withUDPServer(
        host: host, options: options,
        makeHandler: { _ in
            let probe = DatagramProbe(record: record, echo: echo)
            configure(probe)
            return probe
        }, sourceLocation: sourceLocation
    ) { server in try body(UDPTestServer(server: server, record: record)) }
}

@Suite("UDP sockets", .timeLimit(.minutes(1)))
struct UDPSocketTests {
    @Test("binds port 0, reports the real port, and echoes whole datagrams with their sender", arguments: ["127.0.0.1", "::1"])
    func echoRoundTrip(host: String) throws {
        try withUDPTestServer(host: host) { server in
            #expect(server.address.ip == host)
            #expect(server.address.port != 0)

            let client = try UDPTestClient(host: host)
            for size in [1, 1400, 8000, 65_000] {
                let message = pattern(count: size)
                try client.send(message, to: server.address)
                let reply = try #require(client.receive(), "no reply to a \(size)-byte datagram")
                #expect(reply.bytes == message)
                #expect(reply.fromPort == server.address.port)
            }
            let record = try #require(server.record.wait { $0.received.count == 4 })
            #expect(record.opened == 1)
            #expect(record.senders.allSatisfy { $0 == client.address })
            let counters = try server.counters()
            #expect(counters.received == 4 && counters.sent == 4)
            #expect(counters.receivedBytes == 1 + 1400 + 8000 + 65_000)
            #expect(counters.sentBytes == counters.receivedBytes)
        }
    }

    @Test("an empty datagram is a datagram")
    func emptyDatagram() throws {
        try withUDPTestServer { server in
            let client = try UDPTestClient()
            try client.send([], to: server.address)
            let reply = try #require(client.receive())
            #expect(reply.bytes.isEmpty)
        }
    }

    @Test("a burst larger than one receive batch is answered in full, in order, datagram by datagram",
          arguments: [true, false])
    func burst(segmentationOffload: Bool) throws {
        var options = UDPOptions()
        options.receiveBatch = 8
        options.receiveBufferSize = 4 << 20
        options.segmentationOffload = segmentationOffload
        try withUDPTestServer(options: options) { server in
            let client = try UDPTestClient(bufferSize: 4 << 20)
            // Runs of equal sizes (what segmentation offload coalesces) mixed with odd sizes.
            let messages = (0..<600).map { index in
                index % 7 == 0 ? pattern(count: 1 + index % 300, offset: index) : pattern(count: 64, offset: index)
            }
            for message in messages { try client.send(message, to: server.address) }
            let replies = client.receiveAll()
            #expect(replies.count == messages.count)
            #expect(replies == messages, "loopback with room in both buffers loses nothing, keeps order and boundaries")
            let counters = try server.counters()
            #expect(counters.received == 600 && counters.sent == 600 && counters.sendDropped == 0)
        }
    }

    @Test("replies batched for two senders each reach their own sender, whether segmented or not",
          arguments: [true, false])
    func interleavedSenders(segmentationOffload: Bool) throws {
        var options = UDPOptions()
        options.receiveBufferSize = 4 << 20
        options.segmentationOffload = segmentationOffload
        // The first datagram (one byte) holds the reactor while both clients' datagrams queue
        // up, so one receive batch holds them interleaved: equal sizes, two destinations
        // that differ only in their port.
        try withUDPTestServer(options: options, configure: { probe in
            probe.onReceived = { datagram, _, _ in
                if datagram.byteCount == 1 { Thread.sleep(forTimeInterval: 0.3) }
            }
        }) { server in
            let first = try UDPTestClient(bufferSize: 4 << 20)
            let second = try UDPTestClient(bufferSize: 4 << 20)
            try first.send([0], to: server.address)
            _ = try #require(server.record.wait { $0.received.count == 1 })
            var toFirst: [[UInt8]] = [[0]]
            var toSecond: [[UInt8]] = []
            for index in 0..<24 {
                let mine = pattern(count: 64, offset: index), theirs = pattern(count: 64, offset: 100 + index)
                try first.send(mine, to: server.address)
                try second.send(theirs, to: server.address)
                toFirst.append(mine)
                toSecond.append(theirs)
            }
            #expect(first.receiveAll() == toFirst)
            #expect(second.receiveAll() == toSecond)
            let counters = try server.counters()
            #expect(counters.received == 49 && counters.sent == 49 && counters.sendDropped == 0)
        }
    }

    @Test("a run sent as one GSO message arrives as its datagrams, whether the kernel coalesces it or not",
          arguments: [true, false])
    func coalescedRun(receiveOffload: Bool) throws {
        var options = UDPOptions()
        options.receiveOffload = receiveOffload
        try withUDPTestServer(options: options) { server in
            let client = try UDPTestClient()
            let run = (0..<20).map { pattern(count: 100, offset: $0) } + [pattern(count: 37, offset: 99)]
            try client.sendSegmented(run, to: server.address)
            let replies = client.receiveAll()
            #expect(replies == run)
            let record = try #require(server.record.wait { $0.received.count == run.count })
            #expect(record.received == run, "the handler saw each datagram on its own")
            let counters = try server.counters()
            #expect(counters.received == 21)
            // Loopback keeps a GSO message whole up to a socket with UDP_GRO on.
            #expect(counters.coalesced == (receiveOffload ? 1 : 0))
        }
    }

    @Test("a datagram longer than maxDatagramSize is reported with its real length, never passed on")
    func truncation() throws {
        var options = UDPOptions()
        options.maxDatagramSize = 100
        try withUDPTestServer(options: options) { server in
            let client = try UDPTestClient()
            try client.send(pattern(count: 500), to: server.address)
            try client.send(pattern(count: 100), to: server.address)
            let reply = try #require(client.receive())
            #expect(reply.bytes == pattern(count: 100), "only the datagram that fit is echoed")
            #expect(client.receive(timeout: .milliseconds(200)) == nil)
            let record = try #require(server.record.wait { $0.received.count == 1 })
            #expect(record.truncated == [500])
            #expect(try server.counters().truncated == 1)
        }
    }

    @Test("a datagram too large to send is a typed, counted error; the socket keeps working")
    func messageTooLong() throws {
        let record = Locked(DatagramRecord())
        let client = try UDPTestClient()
        let destination = client.address
        try withReactor(name: "udp-test", setup: { reactor in
            let socket = try reactor.bindUDP(host: "127.0.0.1", port: 0, handler: DatagramProbe(record: record))
            let large = socket.send(pattern(count: 70_000), to: destination)
            let small = socket.send(Array("still here".utf8), to: destination)
            return [large, small, socket.counters.sendTooLarge == 1, socket.counters.sent == 1]
        }) { thread, sentLarge in
            #expect(sentLarge == [false, true, true, true])
            #expect(client.receive()?.bytes == Array("still here".utf8))
            let errors = try #require(record.wait { !$0.errors.isEmpty }).errors
            #expect(errors.first?.code == .messageTooLong)
            #expect(errors.first?.operation == .send)
            #expect(errors.first?.address == client.address)
        }
    }

    @Test("connected mode: only the peer is heard, and a closed port comes back as refused")
    func connectedMode() throws {
        try withUDPTestServer { server in
            let stranger = try UDPTestClient()
            // A port that was bound a moment ago and is closed now: the kernel answers ICMP
            // port unreachable to anything sent there.
            let closedAddress = try UDPTestClient().address
            let record = Locked(DatagramRecord())
            let refused = Locked(DatagramRecord())
            try withReactor(name: "udp-client", setup: { reactor in
                let socket = try reactor.connectUDP(to: server.address, handler: DatagramProbe(record: record, echo: false))
                socket.send("ping")  // the string form, to the connected peer
                let lonely = try reactor.connectUDP(to: closedAddress, handler: DatagramProbe(record: refused, echo: false))
                lonely.send(Array("anyone?".utf8))
                return socket.localAddress
            }) { thread, local in
                #expect(local.port != 0)
                try stranger.send(Array("intruder".utf8), to: local)
                let got = try #require(record.wait { !$0.received.isEmpty })
                #expect(got.received == [Array("ping".utf8)])
                #expect(got.senders == [server.address])
                let errors = try #require(refused.wait { !$0.errors.isEmpty }, "no ECONNREFUSED reported").errors
                #expect(errors.first?.code == .connectionRefused)
                #expect(errors.first?.operation == .receive)
                #expect(errors.first?.address == closedAddress)
                #expect(record.value.received.count == 1, "the stranger's datagram never reached the handler")
            }
        }
    }

    @Test("closing from the handler sends the batched replies, then reports closed once")
    func closeFromHandler() throws {
        try withUDPTestServer(configure: { probe in
            probe.onReceived = { _, _, socket in socket.close() }
        }) { server in
            let client = try UDPTestClient()
            try client.send(Array("last".utf8), to: server.address)
            #expect(client.receive()?.bytes == Array("last".utf8), "the reply batched before close() is sent")
            let record = try #require(server.record.wait { $0.closed == 1 })
            #expect(record.received.count == 1)
            try client.send(Array("after".utf8), to: server.address)
            #expect(client.receive(timeout: .milliseconds(200)) == nil)
        }
    }

    @Test("graceful shutdown closes UDP sockets and stops the reactor")
    func gracefulShutdown() throws {
        try withUDPTestServer { server in
            server.server.handle.execute { $0.shutdownGracefully(timeout: .seconds(2)) }
            #expect(server.server.reactor.waitUntilStopped(timeout: .seconds(5)))
            #expect(server.record.wait { $0.closed == 1 } != nil)
        }
    }

    @Test("binding a port already bound is addressInUse; bad options are refused before any socket")
    func bindErrors() throws {
        let taken = try UDPTestClient()
        let takenPort = taken.port
        var options = UDPOptions()
        let defaults = options
        let error = try reactorError { reactor in
            try reactor.bindUDP(host: "127.0.0.1", port: takenPort, options: defaults, handler: DatagramProbe(record: Locked(DatagramRecord())))
        }
        #expect(error?.code == .addressInUse)
        #expect(error?.description.contains("bind 127.0.0.1:\(takenPort)") == true)

        options = UDPOptions()
        options.maxDatagramSize = 70_000
        let tooLarge = options
        let invalid = try reactorError { reactor in
            try reactor.bindUDP(host: "127.0.0.1", port: 0, options: tooLarge, handler: DatagramProbe(record: Locked(DatagramRecord())))
        }
        #expect(invalid?.code == .invalidOption)
        #expect(invalid?.description == "check options: invalid maxDatagramSize 70000; it must be from 1 to 65536")
    }
}
