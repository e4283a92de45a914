import Foundation
import ReactorAsync
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

    /// The getting-started client: connects to an echo server by name and gets its
    /// request back; a name that does not resolve is a typed error naming it.
    @Test func askOnceConnectsByName() throws {
        try withEchoServer { server in
            let answer = Locked<Result<[UInt8], ReactorError>?>(nil)
            let port = server.port
            try server.sync { reactor in ask("hello\n", host: "localhost", port: port, on: reactor) { answer.set($0) } }
            let reply = try #require(answer.wait(timeout: .seconds(10)) { $0 != nil })
            #expect(try reply?.get() == Array("hello\n".utf8))
            answer.set(nil)
            try server.sync { reactor in ask("hello\n", host: "no-such-host.invalid", port: port, on: reactor) { answer.set($0) } }
            let failure = try #require(answer.wait(timeout: .seconds(10)) { $0 != nil })
            #expect(throws: ReactorError.self) { try failure?.get() }
            if case .failure(let error) = failure { #expect(error.host == "no-such-host.invalid", "\(error)") }
        }
    }

    /// The group article's example: two reactors serve echo on one port, and every
    /// connection is answered whichever reactor it lands on.
    @Test func groupServesEchoOnEveryReactor() throws {
        let group = try ReactorGroup(count: 2)
        defer {
            group.stop()
            group.join()
        }
        let listener = try serveEchoOnGroup(group)
        #expect(listener.mode == .reusePort)
        for index in 0..<8 {
            let client = try TestClient(connectingTo: listener.address)
            defer { client.close() }
            try client.send("hi \(index)")
            #expect(try client.receive(count: 4) == Array("hi \(index)".utf8))
        }
    }

    /// The embedding article's example: a reactor thread serves echo while the test's
    /// thread asks it how many connections are open.
    @Test func echoThreadServesAndAnswersThroughItsHandle() async throws {
        let (thread, port) = try startEchoThread()
        defer { thread.stop() }
        let client = try TestClient(connectingTo: try SocketAddress(ip: "127.0.0.1", port: port))
        defer { client.close() }
        try client.send("hi")
        #expect(try client.receive(count: 2) == Array("hi".utf8))
        #expect(try await openConnections(of: thread) == 1)
    }

    /// The async article's example: a task per connection echoes, and a scoped client
    /// connection gets its line back.
    @Test func asyncEchoAnswersItsClient() async throws {
        let (thread, _) = try ReactorThread.start { _ in }
        defer { thread.stop() }
        #expect(try await askAsyncEcho(on: thread.handle, "hello") == "hello")
    }

    /// The backpressure article's example: a slow reader holds the server's queued output
    /// to about one high watermark, and still gets every byte.
    @Test func streamerQueuesNoMoreThanTheWatermarkForASlowReader() throws {
        let total = 4 * 1024 * 1024
        try withServer(makeHandler: { _, _ in Streamer(total: total) }) { server in
            let client = try TestClient(connectingTo: server.address)
            defer { client.close() }
            var peak = 0
            for _ in 0..<5 {
                usleep(50_000)
                peak = max(peak, try server.sync { $0.queuedOutputBytes })
            }
            // The high watermark (64 KiB) plus the write that crossed it.
            #expect(peak > 0, "the reader was not slow enough to queue anything")
            #expect(peak <= 64 * 1024 + 16 * 1024, "queued \(peak) bytes")
            let (bytes, end) = client.receiveUntilEnd(timeout: .seconds(30))
            #expect(bytes.count == total)
            #expect(end == .endOfFile)
        }
    }

    /// The UDP article's example: replies in upper case, and a datagram over the
    /// socket's limit is reported, not passed on cut short.
    @Test func shoutAnswersInUpperCaseAndReportsTruncation() throws {
        try withReactor(setup: { reactor in try serveShout(on: reactor) }) { _, address in
            let client = try UDPTestClient()
            try client.send(Array("hello, udp".utf8), to: address)
            #expect(client.receive()?.bytes == Array("HELLO, UDP".utf8))
            try client.send([UInt8](repeating: UInt8(ascii: "a"), count: 600), to: address)
            #expect(client.receive()?.bytes == Array("too long: 600 bytes".utf8))
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
        connection.send(frame: reply)
    }
}
