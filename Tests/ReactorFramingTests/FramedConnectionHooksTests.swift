// The hooks a framed connection passes on from its TCP connection: a failed outgoing
// connect, and the peer's FIN under half-closure (issue 12, items 1 and 4); and replies
// sent without do/catch (item 3).

import Glibc
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

/// Records what a framed connection passed on, and answers the peer's FIN with a frame.
final class HookRecorder: FrameHandler {
    var frames: [String] = []
    var inputClosedCount = 0
    var closedReason: CloseReason?
    var connectError: ReactorError?
    var replyToInputClosed: String?

    func received(frame: RawSpan, on connection: FramedConnection) {
        frames.append(frame.decodeUTF8())
        connection.send(frame: "got \(frame.decodeUTF8())")
    }

    func inputClosed(_ connection: FramedConnection) {
        inputClosedCount += 1
        if let replyToInputClosed { connection.send(frame: replyToInputClosed) }
    }

    func closed(_ connection: FramedConnection, reason: CloseReason) { closedReason = reason }

    func connectFailed(_ error: ReactorError, on connection: FramedConnection) { connectError = error }
}

@Suite("FramedConnection hooks", .timeLimit(.minutes(1)))
struct FramedConnectionHooksTests {
    @Test("a refused connect through a FramedConnection reaches FrameHandler.connectFailed with the address")
    func refusedConnectIsPassedOn() throws {
        // Bound but not listening: the port stays ours, and the kernel answers SYN with RST.
        let closedPort = try RawSocket()
        let target = try SocketAddress(ip: "127.0.0.1", port: closedPort.port)
        let failure = Locked<ReactorError?>(nil)
        try withReactor(setup: { reactor in
            final class Forward: FrameHandler {
                let failure: Locked<ReactorError?>
                init(_ failure: Locked<ReactorError?>) { self.failure = failure }
                func received(frame: RawSpan, on connection: FramedConnection) {}
                func connectFailed(_ error: ReactorError, on connection: FramedConnection) { failure.set(error) }
            }
            reactor.connect(
                to: target, timeout: .seconds(5),
                handler: FramedConnection(framer: DelimiterFramer.line(), handler: Forward(failure)))
            return ()
        }) { _, _ in
            let error = try #require(failure.wait(timeout: .seconds(10), until: { $0 != nil }) ?? nil, "connectFailed was never called")
            #expect(error.code == .connectionRefused)
            #expect(error.address == target)
        }
    }

    @Test("with allowRemoteHalfClosure a framed connection stays open after the peer's FIN and hears inputClosed")
    func halfClosureUnderAFramer() throws {
        var options = ConnectionOptions()
        options.allowRemoteHalfClosure = true
        let recorder = HookRecorder()
        recorder.replyToInputClosed = "bye"
        let framed = FramedConnection(framer: DelimiterFramer.line(), handler: recorder)
        let embedded = try EmbeddedConnection(options: options, handler: framed)
        embedded.receive("one\n")
        embedded.receiveEndOfFile()
        #expect(recorder.inputClosedCount == 1)
        #expect(embedded.connection.phase == .open, "the FIN closed the connection although half-closure is on")
        #expect(!embedded.sentEndOfFile)
        #expect(framed.send(frame: "later") == .sent, "this side may still send after the peer's FIN")
        #expect(embedded.takeWrittenText() == "got one\nbye\nlater\n")
        framed.shutdownOutput()
        embedded.run()
        #expect(embedded.sentEndOfFile)
        #expect(recorder.closedReason == .endOfFile)
    }

    @Test("without half-closure the FIN still closes a framed connection after flushing (the default inputClosed)")
    func finClosesByDefault() throws {
        final class Plain: FrameHandler {
            var closedReason: CloseReason?
            func received(frame: RawSpan, on connection: FramedConnection) { connection.send(frame: frame) }
            func closed(_ connection: FramedConnection, reason: CloseReason) { closedReason = reason }
        }
        let plain = Plain()
        let embedded = try EmbeddedConnection(handler: FramedConnection(framer: DelimiterFramer.line(), handler: plain))
        embedded.receive("one\n")
        embedded.receiveEndOfFile()
        #expect(embedded.takeWrittenText() == "one\n")
        #expect(embedded.sentEndOfFile)
        #expect(plain.closedReason == .endOfFile)
    }

    @Test("a frame echoed unchanged goes out; other payloads, and the frame after a framer switch, are still checked")
    func echoedFrameIsChecked() throws {
        final class Echo: FrameHandler {
            var results: [String] = []
            func received(frame: RawSpan, on connection: FramedConnection) {
                // The frame "a": from now on "a" is the delimiter, which the frame holds.
                if frame.byteCount == 1 { connection.framer = DelimiterFramer(delimiter: Array("a".utf8)) }
                for result in [connection.send(frame: frame), connection.send(frame: "x\ny")] {
                    switch result {
                    case .sent: results.append("sent")
                    case .refused(.unframeablePayload): results.append("refused")
                    case let other: results.append("\(other)")
                    }
                }
            }
        }
        let echo = Echo()
        let embedded = try EmbeddedConnection(handler: FramedConnection(framer: DelimiterFramer.line(), handler: echo))
        embedded.receive("hello\na\n")
        #expect(echo.results == ["sent", "refused", "refused", "sent"])
        #expect(embedded.takeWrittenText() == "hello\nx\nya")
    }

    @Test("send(frame:) needs no try: the result says sent, closed or refused")
    func sendResult() throws {
        let recorder = HookRecorder()
        let framed = FramedConnection(framer: DelimiterFramer.line(maxFrameLength: 8), handler: recorder)
        let embedded = try EmbeddedConnection(handler: framed)
        #expect(framed.send(frame: "ok") == .sent)
        if case .refused(.unframeablePayload) = framed.send(frame: "a\nb") {} else {
            Issue.record("a payload with the delimiter was not refused")
        }
        #expect(framed.send(frame: "123456789") == .refused(.frameTooLong(length: 9, limit: 8)))
        #expect(embedded.takeWrittenText() == "ok\n")
        framed.abort()
        embedded.run()
        #expect(framed.send(frame: "late") == .closed)
    }
}
