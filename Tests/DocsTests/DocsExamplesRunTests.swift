import Foundation
import ReactorBench
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

/// The examples in the docs do what the docs say, over real sockets.
@Suite(.timeLimit(.minutes(1))) struct DocsExamplesRunTests {
    @Test func typeLengthFramerAnswersPingWithPong() throws {
        try withServer(makeHandler: { _, _ in FramedConnection(framer: TypeLengthFramer(), handler: PingHandler()) }) { server in
            let fd = try blockingLoopbackSocket(port: server.port, receiveTimeout: .seconds(5))
            defer { close(fd) }
            let ping: [UInt8] = [0, 1, 0, 0, 0, 3] + Array("abc".utf8)
            // Split the frame across two writes to exercise the framer's partial-header path.
            _ = ping.withUnsafeBytes { write(fd, $0.baseAddress, 4) }
            usleep(20_000)
            _ = ping.withUnsafeBytes { write(fd, $0.baseAddress! + 4, ping.count - 4) }
            #expect(readBlocking(fd, count: ping.count) == [0, 2, 0, 0, 0, 3] + Array("abc".utf8))
        }
    }

    @Test func typeLengthFramerRefusesOversizedHeaderAtOnce() throws {
        try withServer(makeHandler: { _, _ in FramedConnection(framer: TypeLengthFramer(maxBodyLength: 16), handler: PingHandler()) }) { server in
            let fd = try blockingLoopbackSocket(port: server.port, receiveTimeout: .seconds(5))
            defer { close(fd) }
            let header: [UInt8] = [0, 1, 0, 0, 1, 0]  // a 256-byte body: over the limit; no body sent
            _ = header.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            var byte: UInt8 = 0
            #expect(Foundation.read(fd, &byte, 1) <= 0, "the server closes the connection without waiting for the body")
        }
    }

    @Test func putHandlerSwitchesBetweenLinesAndFixedBodies() throws {
        try withServer(makeHandler: { _, _ in FramedConnection(framer: DelimiterFramer.line(), handler: PutHandler()) }) { server in
            let fd = try blockingLoopbackSocket(port: server.port, receiveTimeout: .seconds(5))
            defer { close(fd) }
            // Header, body and the next header in one write: the bytes after each header
            // must reach the framer that follows it.
            let request = Array("PUT 5\nhelloPUT 3\nabc".utf8)
            _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let expected = Array("OK 5\nOK 3\n".utf8)
            #expect(readBlocking(fd, count: expected.count) == expected)
        }
    }

    /// docs/bench.md's protocol of your own: every response checked, and a server that
    /// answers with the wrong number is caught.
    @Test func benchCodecOfYourOwnLoadsALineServer() throws {
        try withServer(makeHandler: { _, _ in FramedConnection(framer: DelimiterFramer.line(), handler: PongLines(wrong: false)) }) { server in
            let result = try benchPingServer(port: server.port)
            #expect(result.protocolName == "ping")
            #expect(result.requests > 500, "\(result.requests) requests")
            #expect(result.errors.total == 0, "\(result.errors)")
        }
        try withServer(makeHandler: { _, _ in FramedConnection(framer: DelimiterFramer.line(), handler: PongLines(wrong: true)) }) { server in
            let wrong = try benchPingServer(port: server.port)
            #expect(wrong.errors.wrongResponse > 0, "\(wrong.errors)")
            #expect(wrong.requests < wrong.errors.wrongResponse, "\(wrong.requests) passed of \(wrong.errors.wrongResponse) wrong")
        }
    }
}

/// Answers `PING <n>` with `PONG <n>`; when `wrong`, nine answers in ten carry another number.
final class PongLines: FrameHandler {
    private let wrong: Bool
    private var count = 0
    init(wrong: Bool) { self.wrong = wrong }

    func received(frame: RawSpan, on connection: FramedConnection) {
        count += 1
        var reply = frame.copyBytes()
        reply[1] = UInt8(ascii: "O")
        if wrong, count % 10 != 0 { reply.append(UInt8(ascii: "7")) }
        _ = try? connection.send(frame: reply)
    }
}
