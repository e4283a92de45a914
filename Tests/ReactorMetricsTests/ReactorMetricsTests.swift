// ReactorMetrics against MetricsTestKit: known traffic over real sockets (TCP line echo
// through FramedConnection, UDP echo), the reactor's counters flushed on its timer, every
// figure checked against what was sent.

import Glibc
import Metrics
import MetricsTestKit
import ReactorCore
import ReactorFraming
import ReactorMetrics
import ReactorTestSupport
import Testing

/// Echoes each line back as a line.
final class LineEcho: FrameHandler {
    func received(frame: RawSpan, on connection: FramedConnection) {
        _ = try? connection.send(frame: frame)
    }
}

/// A reactor with a line echo (frames of at most 64 bytes, a 300 ms idle timeout), a UDP
/// echo (datagrams of at most 512 bytes) and a ReactorMetrics made under
/// `withMetricsFactory`, flushing every 50 ms.
struct MetricsServer: Sendable {
    let tcp: SocketAddress
    let udp: SocketAddress

    static func setUp(_ reactor: Reactor, metrics: TestMetrics) throws -> MetricsServer {
        var connectionOptions = ConnectionOptions()
        connectionOptions.idleTimeout = .milliseconds(300)
        let listener = try reactor.listen(host: "127.0.0.1", port: 0, connectionOptions: connectionOptions) { _ in
            FramedConnection(framer: DelimiterFramer.line(maxFrameLength: 64), handler: LineEcho())
        }
        var udpOptions = UDPOptions()
        udpOptions.maxDatagramSize = 512
        let socket = try reactor.bindUDP(host: "127.0.0.1", port: 0, options: udpOptions, handler: DatagramEcho())
        // The factory bound here, on the reactor's thread, is the one every later flush uses.
        withMetricsFactory(metrics) {
            _ = ReactorMetrics(reactor: reactor, interval: .milliseconds(50))
        }
        return MetricsServer(tcp: listener.address, udp: socket.localAddress)
    }
}

let tcp = ("network.transport", "tcp")
let udp = ("network.transport", "udp")
let receive = ("network.io.direction", "receive")
let transmit = ("network.io.direction", "transmit")

func total(_ metrics: TestMetrics, _ label: String, _ dimensions: [(String, String)]) -> Int64 {
    (try? metrics.expectCounter(label, dimensions).totalValue) ?? -1
}

func closes(_ metrics: TestMetrics, _ reason: String) -> Int64 {
    total(metrics, ReactorMetrics.Label.closedConnections, [tcp, ("reactor.close.reason", reason)])
}

@Suite("ReactorMetrics: counters after known traffic, through MetricsTestKit", .timeLimit(.minutes(1)))
struct ReactorMetricsTests {
    @Test("TCP accepts, closes by reason, bytes and frames; UDP datagrams, bytes and truncation; loop latency")
    func countsKnownTraffic() async throws {
        let metrics = TestMetrics()
        try await withReactor(setup: { try MetricsServer.setUp($0, metrics: metrics) }) { reactor, server in
            // Every figure is zero (and present) before any traffic.
            #expect(total(metrics, ReactorMetrics.Label.acceptedConnections, [tcp]) == 0)
            #expect(closes(metrics, "framing_error") == 0)

            var sentBytes = 0
            for client in 0..<3 {
                let connection = try TestClient(connectingTo: server.tcp)
                var expected: [UInt8] = []
                for line in 0..<5 {
                    let text = Array("client \(client) line \(line)\n".utf8)
                    expected += text
                    sentBytes += text.count
                    try connection.send(text)
                }
                #expect(try connection.receive(count: expected.count) == expected)
                connection.shutdownWrite()
                #expect(connection.receiveUntilEnd(timeout: .seconds(5)).end == .endOfFile)
            }
            // A line over the 64-byte limit: its connection is closed, no frame delivered.
            let tooLong = try TestClient(connectingTo: server.tcp)
            try tooLong.send([UInt8](repeating: 0x61, count: 100) + [0x0A])
            sentBytes += 101
            _ = tooLong.receiveUntilEnd(timeout: .seconds(5))
            // A peer that resets, and one that goes quiet past the idle timeout.
            let resetting = try TestClient(connectingTo: server.tcp)
            try resetting.send("one\n")
            sentBytes += 4
            #expect(try resetting.receive(count: 4) == Array("one\n".utf8))
            resetting.reset()
            let quiet = try TestClient(connectingTo: server.tcp)
            #expect(quiet.receiveUntilEnd(timeout: .seconds(5)).end == .endOfFile)

            let datagrams = try UDPTestClient()
            for index in 0..<4 {
                try datagrams.send(Array(repeating: UInt8(index), count: 10), to: server.udp)
                #expect(datagrams.receive()?.bytes.count == 10)
            }
            try datagrams.send(Array(repeating: 7, count: 600), to: server.udp)

            try await eventually("the closes and the truncated datagram flushed", timeout: .seconds(10)) {
                closes(metrics, "normal") == 3 && closes(metrics, "framing_error") == 1 && closes(metrics, "reset") == 1
                    && closes(metrics, "idle_timeout") == 1
                    && total(metrics, ReactorMetrics.Label.truncatedDatagrams, [udp]) == 1
            }
            let counters = try await reactor.run { $0.counters }
            #expect(counters.acceptedConnections == 6)
            #expect(total(metrics, ReactorMetrics.Label.acceptedConnections, [tcp]) == 6)
            #expect(try metrics.expectGauge(ReactorMetrics.Label.activeConnections, [tcp]).lastValue == 0)
            for reason in ["close_timeout", "limit", "output_budget", "aborted", "error"] {
                #expect(closes(metrics, reason) == 0, "\(reason)")
            }
            #expect(counters.closedConnections.total == 6)
            #expect(total(metrics, ReactorMetrics.Label.networkIO, [tcp, receive]) == Int64(sentBytes))
            // Everything but the refused line came back.
            #expect(total(metrics, ReactorMetrics.Label.networkIO, [tcp, transmit]) == Int64(sentBytes - 101))
            #expect(total(metrics, ReactorMetrics.Label.frames, [tcp, receive]) == 16)
            #expect(total(metrics, ReactorMetrics.Label.frames, [tcp, transmit]) == 16)
            #expect(total(metrics, ReactorMetrics.Label.datagrams, [udp, receive]) == 4)
            #expect(total(metrics, ReactorMetrics.Label.datagrams, [udp, transmit]) == 4)
            #expect(total(metrics, ReactorMetrics.Label.networkIO, [udp, receive]) == 40)
            #expect(total(metrics, ReactorMetrics.Label.networkIO, [udp, transmit]) == 40)
            #expect(counters.udp.truncated == 1)
            for error in ["send_buffer_full", "EMSGSIZE", "ECONNREFUSED", "_OTHER"] {
                #expect(total(metrics, ReactorMetrics.Label.sendErrors, [udp, ("error.type", error)]) == 0)
            }
            #expect(metrics.counters(label: ReactorMetrics.Label.acceptErrors).isEmpty)
            // The flush timer and the idle timers fired: each firing's lateness is a sample.
            let latency = try metrics.expectTimer(ReactorMetrics.Label.loopLatency)
            #expect(!latency.values.isEmpty)
            #expect(latency.values.allSatisfy { $0 >= 0 && $0 < 5_000_000_000 })
        }
    }

    @Test("PROXY protocol headers: accepted and refused by kind")
    func proxyHeaders() async throws {
        let metrics = TestMetrics()
        try await withReactor(setup: { reactor in
            var options = ListenerOptions()
            options.proxyProtocol = ProxyProtocolOptions(.v1)
            let listener = try reactor.listen(host: "127.0.0.1", port: 0, options: options) { _ in ByteEcho() }
            withMetricsFactory(metrics) { _ = ReactorMetrics(reactor: reactor, interval: .milliseconds(50)) }
            return listener.address
        }) { _, address in
            let proxied = try TestClient(connectingTo: address)
            try proxied.send("PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\nhello")
            #expect(try proxied.receive(count: 5) == Array("hello".utf8))
            let garbage = try TestClient(connectingTo: address)
            try garbage.send("GET / HTTP/1.1\r\n\r\n")
            #expect(garbage.receiveUntilEnd(timeout: .seconds(5)).end != .timedOut)
            let refused = { (kind: String) in
                total(metrics, ReactorMetrics.Label.proxyHeadersRefused, [tcp, ("error.type", kind)])
            }
            try await eventually("the refusal flushed", timeout: .seconds(10)) { refused("malformed") == 1 }
            #expect(total(metrics, ReactorMetrics.Label.proxyHeadersAccepted, [tcp]) == 1)
            for kind in ["too_long", "bad_checksum", "truncated", "timed_out", "untrusted"] {
                #expect(refused(kind) == 0, "\(kind)")
            }
        }
    }

    @Test("A closed UDP socket's counts stay in the reactor's totals")
    func closedUDPSocketsStayCounted() throws {
        try withReactor { reactor in
            let address = try reactor.sync { reactor in
                try reactor.bindUDP(host: "127.0.0.1", port: 0, handler: DatagramEcho()).localAddress
            }
            let client = try UDPTestClient()
            for _ in 0..<3 {
                try client.send([1, 2, 3], to: address)
                #expect(client.receive()?.bytes == [1, 2, 3])
            }
            let before = try reactor.sync { $0.counters.udp }
            #expect(before.received == 3 && before.sent == 3 && before.receivedBytes == 9)
            let after = try reactor.sync { reactor in
                reactor.shutdownGracefully()
                return reactor.counters.udp
            }
            #expect(after == before)
        }
    }

}
