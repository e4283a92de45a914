// The bundled services over UDP, against a reactor thread on loopback: one reply datagram
// per request (none for discard), echo of every size up to 65,000 bytes, truncation.

import Foundation
import ReactorCore
import ReactorServices
import ReactorTestSupport
import Testing

@Suite("services over UDP", .timeLimit(.minutes(1)))
struct UDPServiceTests {
    @Test("echo: each datagram comes back whole to its sender", arguments: [1, 1400, 8000, 65000])
    func echo(size: Int) async throws {
        try await withServiceServer(makeTCP: { EchoHandler() }, makeUDP: { EchoDatagramHandler(replyGuard: $0) }) { server in
            let client = try UDPTestClient()
            let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            try client.send(payload, to: server.udp)
            let reply = try #require(client.receive()?.bytes, "no echo of \(size) bytes")
            #expect(reply.count == size)
            #expect(reply == payload)
            #expect(try await server.udpCounters().received == 1)
        }
    }

    @Test("echo: a datagram longer than maxDatagramSize is counted as truncated and not echoed; the next one is")
    func truncated() async throws {
        var options = UDPOptions()
        options.maxDatagramSize = 1000
        try await withServiceServer(udpOptions: options, makeTCP: { EchoHandler() }, makeUDP: { EchoDatagramHandler(replyGuard: $0) }) { server in
            let client = try UDPTestClient()
            try client.send([UInt8](repeating: 1, count: 1001), to: server.udp)
            try client.send([UInt8](repeating: 2, count: 1000), to: server.udp)
            let replies = client.receiveAll()
            #expect(replies == [[UInt8](repeating: 2, count: 1000)])
            let counters = try await server.udpCounters()
            #expect(counters.truncated == 1)
            #expect(counters.received == 1)
        }
    }

    @Test("discard: counts what arrives, answers nothing")
    func discard() async throws {
        try await withServiceServer(makeTCP: { DiscardHandler() }, makeUDP: { _ in DiscardDatagramHandler() }) { server in
            let client = try UDPTestClient()
            for size in [0, 1, 512, 9000] { try client.send([UInt8](repeating: 7, count: size), to: server.udp) }
            #expect(client.receiveAll().isEmpty)
            let counters = try await server.udpCounters()
            #expect(counters.received == 4)
            #expect(counters.sent == 0)
        }
    }

    @Test("chargen: one datagram of whole lines, at most 512 bytes, each reply a line further on")
    func chargen() async throws {
        try await withServiceServer(makeTCP: { ChargenHandler() }, makeUDP: { ChargenDatagramHandler(replyGuard: $0) }) { server in
            let client = try UDPTestClient()
            for request in 0..<3 {
                try client.send(Array("any content \(request)".utf8), to: server.udp)
                let reply = try #require(client.receive()?.bytes, "no reply to datagram \(request)")
                #expect(reply.count <= 512)
                #expect(reply.count == 6 * 74)
                #expect(reply == (request..<request + 6).flatMap { chargenLine($0) })
            }
            try client.send([], to: server.udp)
            #expect(client.receive()?.bytes.count == 444, "an empty datagram is answered too")
        }
    }

    @Test("qotd: one quote per datagram, in turn, shared with TCP")
    func quotes() async throws {
        let list = try QuoteList(["one", "two"])
        let cursor = ReactorBound<QuoteCursor?>(nil)
        let shared: @Sendable () -> QuoteCursor = {
            if cursor.value == nil { cursor.value = QuoteCursor(list) }
            return cursor.value!
        }
        try await withServiceServer(makeTCP: { QuoteHandler(cursor: shared()) }, makeUDP: { QuoteDatagramHandler(cursor: shared(), replyGuard: $0) }) { server in
            let client = try UDPTestClient()
            try client.send([0], to: server.udp)
            #expect(client.receive()?.bytes == Array("one\r\n".utf8))
            let tcp = try TestClient(connectingTo: server.tcp)
            #expect(tcp.receiveUntilEnd(timeout: .seconds(5)).bytes == Array("two\r\n".utf8))
            try client.send([0], to: server.udp)
            #expect(client.receive()?.bytes == Array("one\r\n".utf8))
        }
    }

    @Test("daytime: one datagram holding the UTC line", arguments: daytimeCases)
    func daytime(seconds: Int64, expected: String) async throws {
        try await withServiceServer(
            makeTCP: { DaytimeHandler() }, makeUDP: { DaytimeDatagramHandler(clock: .fixed(at: seconds), replyGuard: $0) }) { server in
            let client = try UDPTestClient()
            try client.send([], to: server.udp)
            #expect(client.receive().map { String(decoding: $0.bytes, as: UTF8.self) } == expected + "\r\n")
        }
    }

    @Test("time: one 4-byte datagram, correct on both sides of the 2036 rollover", arguments: timeCases)
    func time(seconds: Int64, expected: UInt32) async throws {
        try await withServiceServer(
            makeTCP: { TimeHandler() }, makeUDP: { TimeDatagramHandler(clock: .fixed(at: seconds), replyGuard: $0) }) { server in
            let client = try UDPTestClient()
            try client.send([], to: server.udp)
            #expect(client.receive()?.bytes == withUnsafeBytes(of: expected.bigEndian) { Array($0) })
        }
    }

    @Test("time: the system clock, read back by rdate -p -u")
    func rdateUDP() async throws {
        try await withServiceServer(makeTCP: { TimeHandler() }, makeUDP: { TimeDatagramHandler(replyGuard: $0) }) { server in
            let result = try await shell("TZ=UTC rdate -p -u -o \(server.udp.port) 127.0.0.1")
            try expectRdate(result)
        }
    }

    @Test("echo: socat over TCP and over UDP")
    func socat() async throws {
        try await withServiceServer(makeTCP: { EchoHandler() }, makeUDP: { EchoDatagramHandler(replyGuard: $0) }) { server in
            let tcp = try await shell("printf 'hello over tcp\\n' | socat -t 2 - TCP:127.0.0.1:\(server.tcp.port)")
            #expect(tcp.status == 0, "\(tcp.error)")
            #expect(tcp.output == "hello over tcp\n")
            let udp = try await shell("printf 'hello over udp\\n' | socat -t 0.5 - UDP:127.0.0.1:\(server.udp.port)")
            #expect(udp.status == 0, "\(udp.error)")
            #expect(udp.output == "hello over udp\n")
        }
    }
}
