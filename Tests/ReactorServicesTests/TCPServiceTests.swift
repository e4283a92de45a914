// The bundled services over TCP, against a reactor thread on loopback: what each sends,
// that it closes when it should, and that chargen's output stays bounded.

import Foundation
import ReactorCore
import ReactorServices
import ReactorTestSupport
import Testing

/// The date a test sets, read by the services through a ``ServiceClock``.
let testNow = Locked<Int64>(0)
let testClock = ServiceClock { testNow.value }

@Suite("services over TCP", .timeLimit(.minutes(1)))
struct TCPServiceTests {
    @Test("discard: reads everything, sends nothing, closes when the peer closes")
    func discard() async throws {
        try await withServiceServer(makeTCP: { DiscardHandler() }, makeUDP: nil) { server in
            let client = try TestClient(connectingTo: server.tcp)
            let sent = [UInt8](repeating: 0x61, count: 1 << 20)
            let early = try client.sendWhileReading(sent)
            #expect(early.isEmpty)
            client.shutdownWrite()
            let end = client.receiveUntilEnd(timeout: .seconds(5))
            #expect(end.bytes.isEmpty, "discard sent \(end.bytes.count) bytes")
            #expect(end.end == .endOfFile)
        }
    }

    @Test("chargen: 72 printable characters and CRLF per line, each line one character on, around the 95-character cycle")
    func chargenStream() async throws {
        try await withServiceServer(makeTCP: { ChargenHandler() }, makeUDP: nil) { server in
            let client = try TestClient(connectingTo: server.tcp)
            let lineCount = 95 * 3 + 10
            let bytes = try client.receive(count: lineCount * 74, timeout: .seconds(10))
            for index in 0..<lineCount {
                let line = Array(bytes[index * 74..<(index + 1) * 74])
                guard line == chargenLine(index) else {
                    Issue.record("line \(index): \(String(decoding: line, as: UTF8.self).debugDescription)")
                    return
                }
            }
            #expect(bytes[0..<74] == bytes[95 * 74..<96 * 74], "the pattern repeats after 95 lines")
            #expect(bytes.allSatisfy { (0x20...0x7E).contains($0) || $0 == 13 || $0 == 10 })
        }
    }

    @Test("chargen to a peer that does not read: output queued stays under the high watermark plus one chunk; the stream resumes intact")
    func chargenBackpressure() throws {
        try withServiceServer(makeTCP: { ChargenHandler() }, makeUDP: nil) { server in
            let client = try TestClient(connectingTo: server.tcp, receiveBuffer: 16 * 1024)
            // Until the server stops writing: the kernel buffers are full, the queue is over the
            // high watermark. Polled from this thread, not with await: in a full parallel run the
            // cooperative pool can be busy for seconds.
            let deadline = Deadline(.seconds(10))
            while try server.sync({ $0.connections.first?.isWritable ?? true }) {
                guard !deadline.hasPassed else { throw TestFailure("chargen never stopped writing to a peer that does not read") }
                usleep(5_000)
            }
            usleep(200_000)
            let queued = try server.sync { $0.connections.first?.queuedOutputBytes ?? -1 }
            let options = ConnectionOptions()
            #expect(queued > options.writeBufferHighWatermark)
            #expect(queued <= options.writeBufferHighWatermark + 16 * 1024, "chargen queued \(queued) bytes")
            // Reading everything the server had buffered, and more, finds the stream intact.
            let bytes = try client.receive(count: 2 * 1024 * 1024, timeout: .seconds(20))
            for index in stride(from: 0, to: bytes.count / 74, by: 97) {
                #expect(Array(bytes[index * 74..<(index + 1) * 74]) == chargenLine(index), "line \(index)")
            }
        }
    }

    @Test("qotd: the quotes in turn, one per connection, then close")
    func quotes() async throws {
        let list = try QuoteList(["first quote", "second\nquote on two lines"])
        let cursor = ReactorBound<QuoteCursor?>(nil)
        try await withServiceServer(
            makeTCP: {
                if cursor.value == nil { cursor.value = QuoteCursor(list) }
                return QuoteHandler(cursor: cursor.value!)
            }, makeUDP: nil) { server in
            for expected in ["first quote\r\n", "second\r\nquote on two lines\r\n", "first quote\r\n"] {
                let client = try TestClient(connectingTo: server.tcp)
                let reply = client.receiveUntilEnd(timeout: .seconds(5))
                #expect(reply.end == .endOfFile)
                #expect(String(decoding: reply.bytes, as: UTF8.self) == expected)
            }
        }
    }

    @Test("the built-in quotes each fit in under 512 bytes")
    func builtInQuotes() {
        #expect(QuoteList.builtIn.replies.count >= 5)
        for reply in QuoteList.builtIn.replies {
            #expect(reply.count < 512)
            #expect(reply.suffix(2) == [13, 10])
        }
    }

    @Test("daytime: one UTC line with the year, CRLF, then close", arguments: daytimeCases)
    func daytime(seconds: Int64, expected: String) async throws {
        try await withServiceServer(makeTCP: { DaytimeHandler(clock: .fixed(at: seconds)) }, makeUDP: nil) { server in
            let client = try TestClient(connectingTo: server.tcp)
            let reply = client.receiveUntilEnd(timeout: .seconds(5))
            #expect(reply.end == .endOfFile)
            #expect(String(decoding: reply.bytes, as: UTF8.self) == expected + "\r\n")
        }
    }

    @Test("time: 4 bytes big-endian, seconds since 1900 modulo 2^32, then close", arguments: timeCases)
    func time(seconds: Int64, expected: UInt32) async throws {
        try await withServiceServer(makeTCP: { TimeHandler(clock: .fixed(at: seconds)) }, makeUDP: nil) { server in
            let client = try TestClient(connectingTo: server.tcp)
            let reply = client.receiveUntilEnd(timeout: .seconds(5))
            #expect(reply.end == .endOfFile)
            #expect(reply.bytes == withUnsafeBytes(of: expected.bigEndian) { Array($0) })
        }
    }

    @Test("time: the system clock, read back by rdate -p over TCP")
    func rdateTCP() async throws {
        try await withServiceServer(makeTCP: { TimeHandler() }, makeUDP: nil) { server in
            let result = try await shell("TZ=UTC rdate -p -o \(server.tcp.port) 127.0.0.1")
            try expectRdate(result)
        }
    }
}

/// Dates as seconds since 1970 and the daytime line for each.
let daytimeCases: [(Int64, String)] = [
    (0, "Thursday, January 1, 1970 00:00:00-UTC"),
    (951_786_061, "Tuesday, February 29, 2000 01:01:01-UTC"),
    (1_763_712_783, "Friday, November 21, 2025 08:13:03-UTC"),
    (2_085_978_495, "Thursday, February 7, 2036 06:28:15-UTC"),
    (2_085_978_496, "Thursday, February 7, 2036 06:28:16-UTC"),
    (4_102_531_199, "Friday, January 1, 2100 23:59:59-UTC"),
    (-2_208_988_800, "Monday, January 1, 1900 00:00:00-UTC"),
]

/// Dates as seconds since 1970 and their RFC 868 value: around the 2036 rollover, and
/// the epochs of both clocks.
let timeCases: [(Int64, UInt32)] = [
    (0, 2_208_988_800),
    (1_763_712_783, 3_972_701_583),
    (2_085_978_495, 0xFFFF_FFFF),
    (2_085_978_496, 0),
    (2_085_978_497, 1),
    (4_102_531_199, 2_016_552_703),
    (-2_208_988_800, 0),
]

/// rdate printed the date it read, and that date is within a minute of ours.
func expectRdate(_ result: (status: Int32?, output: String, error: String), sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(result.status == 0, "rdate: \(result.error)", sourceLocation: sourceLocation)
    // With TZ=UTC, rdate -p prints the date as date(1) does: "Sat Nov 21 08:21:55 UTC 2026".
    let line = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "EEE MMM d HH:mm:ss 'UTC' yyyy"
    let date = try #require(formatter.date(from: line.replacingOccurrences(of: "  ", with: " ")), "rdate printed '\(line)'", sourceLocation: sourceLocation)
    #expect(abs(date.timeIntervalSinceNow) < 60, "rdate read \(date)", sourceLocation: sourceLocation)
}
