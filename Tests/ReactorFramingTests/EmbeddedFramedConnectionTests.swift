// FramedConnection over the in-memory transport (EmbeddedConnection): the stream cut into
// reads of every size without a kernel socket, close semantics in the middle of a read,
// framing failures, pausing, and the reactor's output budget refusing a framed peer.

import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

/// Echoes every frame (re-encoded by the framer) and records what it saw.
final class FrameEcho: FrameHandler {
    var frames: [[UInt8]] = []
    var errors: [FramingError] = []
    var closedReason: CloseReason?
    var writability: [Bool] = []
    var onFrame: ((FramedConnection, Int) -> Void)?

    func received(frame: RawSpan, on connection: FramedConnection) {
        frames.append(frame.copyBytes())
        connection.send(frame: frame)
        onFrame?(connection, frames.count)
    }

    func framingFailed(_ error: FramingError, on connection: FramedConnection) {
        errors.append(error)
        connection.abort()
    }

    func writabilityChanged(_ connection: FramedConnection) {
        writability.append(connection.isWritable)
    }

    func closed(_ connection: FramedConnection, reason: CloseReason) {
        closedReason = reason
    }
}

@Suite("FramedConnection in memory", .timeLimit(.minutes(1)))
struct EmbeddedFramedConnectionTests {
    @Test("every framer echoes a stream cut into reads of every size: same frames, same bytes back, one send per read at most",
          arguments: FramerCase.all)
    func echoAtEveryReadSize(_ framerCase: FramerCase) throws {
        let payloads = framerCase.samplePayloads
        let stream = try framerCase.encode(payloads)
        // One reactor for every connection of the test: making one opens an epoll base and
        // an eventfd, which made a reactor per read size the slowest test of the suite.
        let reactor = try Reactor()
        for readSize in 1...stream.count {
            let echo = FrameEcho()
            let embedded = try EmbeddedConnection(
                reactor: reactor, handler: FramedConnection(framer: framerCase.makeFramer(), handler: echo))
            embedded.readLimit = readSize
            embedded.receive(stream)
            let reads = (stream.count + readSize - 1) / readSize
            if framerCase.preservesBoundaries {
                #expect(echo.frames == payloads, "read size \(readSize)")
            } else {
                #expect(Array(echo.frames.joined()) == Array(payloads.joined()), "read size \(readSize)")
            }
            #expect(embedded.takeWritten() == stream, "read size \(readSize)")
            #expect(embedded.transport.sends <= reads, "read size \(readSize): replies of one read go out in one send")
            #expect(echo.errors.isEmpty)
        }
    }

    @Test("close() in the middle of a read: later frames of the read are not delivered, replies so far are flushed before FIN")
    func closeMidRead() throws {
        let echo = FrameEcho()
        echo.onFrame = { connection, count in if count == 2 { connection.close() } }
        let framed = FramedConnection(framer: DelimiterFramer.line(), handler: echo)
        let embedded = try EmbeddedConnection(handler: framed)
        embedded.receive("one\ntwo\nthree\nfour\n")
        #expect(echo.frames == [Array("one".utf8), Array("two".utf8)])
        #expect(embedded.takeWrittenText() == "one\ntwo\n")
        #expect(embedded.transport.sends == 1)
        #expect(embedded.sentEndOfFile)
        #expect(embedded.connection.phase == .lingering)
        #expect(framed.send(frame: "late") == .closed)
        embedded.receiveEndOfFile()
        #expect(echo.closedReason == .closed)
    }

    @Test("a frame over the limit fails framing once; the handler's abort resets the connection")
    func frameTooLong() throws {
        let echo = FrameEcho()
        let embedded = try EmbeddedConnection(
            handler: FramedConnection(framer: DelimiterFramer.line(maxFrameLength: 8), handler: echo))
        embedded.readLimit = 4
        embedded.receive("ok\n123456789abc\nnever\n")
        #expect(echo.frames == [Array("ok".utf8)])
        #expect(echo.errors == [.frameTooLong(length: nil, limit: 8)])
        #expect(echo.closedReason == .aborted)
        #expect(embedded.socketClosed == (true, true))
    }

    @Test("pauseDelivery holds the rest of a read and stops reading; resumeDelivery delivers it, in order, after the call")
    func pauseAndResumeDelivery() throws {
        let echo = FrameEcho()
        echo.onFrame = { connection, count in if count == 1 { connection.pauseDelivery() } }
        let framed = FramedConnection(framer: DelimiterFramer.line(), handler: echo)
        let embedded = try EmbeddedConnection(handler: framed)
        embedded.receive("a\nb\nc")
        embedded.receive("\nd\n")
        #expect(echo.frames == [Array("a".utf8)])
        #expect(framed.bufferedInputBytes == 3)
        #expect(embedded.unreadInput == 3)
        framed.resumeDelivery()
        #expect(echo.frames.count == 1, "delivery resumes after the current callback, not inside resumeDelivery")
        embedded.run()
        #expect(echo.frames == ["a", "b", "c", "d"].map { Array($0.utf8) })
        #expect(embedded.takeWrittenText() == "a\nb\nc\nd\n")
    }

    @Test("over the output budget a framed peer is refused: not writable, its input unread, until the kernel takes the output")
    func outputBudgetRefusal() throws {
        let reactor = try Reactor(outputBudget: 64)
        let echo = FrameEcho()
        let framed = FramedConnection(framer: DelimiterFramer.line(), handler: echo)
        let embedded = try EmbeddedConnection(reactor: reactor, handler: framed)
        embedded.sendWindow = 0
        let line = String(repeating: "x", count: 39) + "\n"
        embedded.receive(line + line)
        #expect(echo.frames.count == 2)
        #expect(reactor.queuedOutputBytes == 80)
        #expect(embedded.connection.isThrottled)
        #expect(!framed.isWritable)
        #expect(echo.writability == [false])
        embedded.receive(line)
        #expect(echo.frames.count == 2, "a throttled connection reads nothing")
        #expect(embedded.unreadInput == 40)

        embedded.sendWindow = .max
        #expect(!embedded.connection.isThrottled)
        #expect(echo.writability == [false, true])
        #expect(echo.frames.count == 3)
        #expect(embedded.takeWrittenText() == line + line + line)
        #expect(reactor.queuedOutputBytes == 0)
    }
}
