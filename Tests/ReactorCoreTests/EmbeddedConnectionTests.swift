// Connection behaviour over the in-memory transport (EmbeddedConnection): no kernel
// socket and no reactor thread, so the kernel's part (how much a send takes, where reads
// are cut, when the peer's FIN comes) is set exactly by the test.

import ReactorCore
import ReactorTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Records what a connection tells its handler, and can echo or act on input.
final class ScriptedHandler: ConnectionHandler {
    var echo = true
    var events: [String] = []
    var closedReason: CloseReason?
    var onReceived: ((Connection) -> Void)?
    var onInputClosed: ((Connection) -> Void)?

    func received(_ bytes: RawSpan, on connection: Connection) {
        events.append("received \(bytes.byteCount)")
        if echo { connection.write(bytes) }
        onReceived?(connection)
    }

    func writabilityChanged(_ connection: Connection) {
        events.append("writable \(connection.isWritable)")
    }

    func inputClosed(_ connection: Connection) {
        events.append("input closed")
        if let onInputClosed { onInputClosed(connection) } else { connection.close() }
    }

    func closed(_ connection: Connection, reason: CloseReason) {
        events.append("closed \(reason)")
        closedReason = reason
    }
}

@Suite("Connection in memory", .timeLimit(.minutes(1)))
struct EmbeddedConnectionTests {
    @Test("a reply the kernel takes whole is one send; reads cut anywhere reach the handler as cut")
    func echoAcrossReads() throws {
        let handler = ScriptedHandler()
        let embedded = try EmbeddedConnection(handler: handler)
        embedded.readLimit = 3
        embedded.receive("hello, world")
        #expect(embedded.takeWrittenText() == "hello, world")
        #expect(handler.events == ["received 3", "received 3", "received 3", "received 3"])
        #expect(embedded.transport.sends == 4)
        #expect(embedded.connection.queuedOutputBytes == 0)
    }

    @Test("what the kernel does not take is queued and sent, in order, when the socket has room")
    func partialSendQueuesTheRest() throws {
        let handler = ScriptedHandler()
        let embedded = try EmbeddedConnection(handler: handler)
        embedded.sendWindow = 4
        embedded.receive("abcdefghij")
        #expect(embedded.takeWrittenText() == "abcd")
        #expect(embedded.connection.queuedOutputBytes == 6)
        #expect(embedded.connection.writeArmed)
        embedded.receive("KLM")
        #expect(embedded.connection.queuedOutputBytes == 9)
        embedded.sendWindow = .max
        #expect(embedded.takeWrittenText() == "efghijKLM")
        #expect(embedded.connection.queuedOutputBytes == 0)
        #expect(!embedded.connection.writeArmed)
    }

    @Test("graceful close: queued output first, then FIN, lingering until the peer's FIN, closed with .closed")
    func gracefulClose() throws {
        let handler = ScriptedHandler()
        let embedded = try EmbeddedConnection(handler: handler)
        embedded.sendWindow = 0
        embedded.receive("owed")
        embedded.connection.close()
        #expect(embedded.connection.phase == .closing)
        #expect(!embedded.sentEndOfFile)
        #expect(!embedded.connection.write(Array("late".utf8)))
        embedded.receive("ignored while closing")
        #expect(embedded.unreadInput == 21)

        embedded.sendWindow = .max
        #expect(embedded.takeWrittenText() == "owed")
        #expect(embedded.sentEndOfFile)
        #expect(embedded.connection.phase == .lingering)
        #expect(handler.closedReason == nil)

        embedded.receiveEndOfFile()
        #expect(embedded.connection.phase == .closed)
        #expect(handler.closedReason == .closed)
        #expect(embedded.socketClosed == (true, false))
        #expect(embedded.unreadInput == 0, "lingering reads and discards the peer's late bytes")
        #expect(embedded.takeWritten().isEmpty)
    }

    @Test("the peer's FIN without half-closure: output owed is flushed, FIN sent, closed at once with end of file")
    func peerFINClosesAfterFlushing() throws {
        let handler = ScriptedHandler()
        let embedded = try EmbeddedConnection(handler: handler)
        embedded.sendWindow = 2
        embedded.receive("last words")
        embedded.receiveEndOfFile()
        #expect(embedded.connection.phase == .closing)
        #expect(embedded.connection.isInputClosed)
        embedded.sendWindow = .max
        #expect(embedded.takeWrittenText() == "last words")
        #expect(embedded.sentEndOfFile)
        #expect(handler.closedReason == .endOfFile)
        #expect(embedded.socketClosed == (true, false))
    }

    @Test("half-closure: the peer's FIN is delivered, writes go on, shutdownOutput ends it with end of file")
    func remoteHalfClosure() throws {
        var options = ConnectionOptions()
        options.allowRemoteHalfClosure = true
        let handler = ScriptedHandler()
        handler.onInputClosed = { connection in
            connection.write(Array("still here".utf8))
            connection.shutdownOutput()
        }
        let embedded = try EmbeddedConnection(options: options, handler: handler)
        embedded.sendWindow = 3
        embedded.receiveEndOfFile()
        #expect(handler.events == ["input closed"])
        #expect(embedded.connection.isOutputShutdown)
        #expect(!embedded.sentEndOfFile, "FIN waits for the queued output")
        #expect(handler.closedReason == nil)
        embedded.sendWindow = .max
        #expect(embedded.takeWrittenText() == "still here")
        #expect(embedded.sentEndOfFile)
        #expect(handler.closedReason == .endOfFile)
    }

    @Test("shutdownOutput: later writes are refused, reading goes on, the peer's FIN then closes")
    func localHalfClose() throws {
        let handler = ScriptedHandler()
        handler.echo = false
        let embedded = try EmbeddedConnection(handler: handler)
        embedded.connection.shutdownOutput()
        #expect(embedded.sentEndOfFile)
        #expect(!embedded.connection.write(Array("x".utf8)))
        embedded.receive("more")
        #expect(handler.events == ["received 4"])
        #expect(embedded.connection.phase == .open)
        embedded.receiveEndOfFile()
        #expect(handler.closedReason == .endOfFile)
    }

    @Test("abort drops queued output and resets")
    func abortResets() throws {
        let handler = ScriptedHandler()
        let embedded = try EmbeddedConnection(handler: handler)
        embedded.sendWindow = 0
        embedded.receive("never sent")
        embedded.connection.abort()
        embedded.sendWindow = .max
        #expect(embedded.takeWritten().isEmpty)
        #expect(handler.closedReason == .aborted)
        #expect(embedded.socketClosed == (true, true))
        #expect(embedded.reactor.queuedOutputBytes == 0)
    }

    @Test("watermarks: not writable above the high one, writable again at the low one; over the limit aborts")
    func watermarksAndLimit() throws {
        var options = ConnectionOptions()
        options.writeBufferHighWatermark = 8
        options.writeBufferLowWatermark = 4
        options.writeBufferLimit = 16
        let handler = ScriptedHandler()
        handler.echo = false
        let embedded = try EmbeddedConnection(options: options, handler: handler)
        embedded.sendWindow = 0
        let connection = embedded.connection
        #expect(connection.write(Array("12345678".utf8)))
        #expect(connection.isWritable, "at the high watermark, not above it")
        #expect(connection.write(Array("9".utf8)))
        #expect(!connection.isWritable)
        #expect(handler.events == ["writable false"])
        embedded.sendWindow = 5
        #expect(connection.queuedOutputBytes == 4)
        #expect(connection.isWritable)
        #expect(handler.events == ["writable false", "writable true"])

        #expect(!connection.write(Array(repeating: 0x41, count: 13)))
        embedded.run()
        #expect(handler.closedReason == .writeBufferLimitExceeded)
        #expect(embedded.socketClosed == (true, true))
    }

    @Test("a peer that pipelines and never reads: reading stops while not writable, by default, with no handler code")
    func pausesReadingWhileNotWritableByDefault() throws {
        // ScriptedHandler only records writability: it neither pauses nor resumes.
        let handler = ScriptedHandler()
        let embedded = try EmbeddedConnection(handler: handler)
        embedded.readLimit = 4096
        embedded.sendWindow = 0
        let flood = [UInt8](repeating: 0x61, count: 1 << 20)
        embedded.receive(flood)
        let options = embedded.connection.options
        #expect(!embedded.connection.isWritable)
        #expect(!embedded.connection.readArmed, "still reading while not writable")
        #expect(!embedded.connection.isReadingPaused, "the handler's own switch is untouched")
        #expect(embedded.connection.queuedOutputBytes <= options.writeBufferHighWatermark + embedded.readLimit)
        #expect(embedded.unreadInput >= flood.count - options.writeBufferHighWatermark - embedded.readLimit)
        #expect(handler.closedReason == nil)
        // The peer reads again: everything is echoed, in order, and reading resumed.
        embedded.sendWindow = .max
        #expect(embedded.takeWritten() == flood)
        #expect(embedded.connection.readArmed)
        #expect(embedded.connection.isWritable)
    }

    @Test("pauseReadingWhileNotWritable off: reading goes on past the high watermark until the limit aborts")
    func pauseWhileNotWritableCanBeTurnedOff() throws {
        var options = ConnectionOptions()
        options.pauseReadingWhileNotWritable = false
        options.writeBufferLimit = 256 * 1024
        let handler = ScriptedHandler()
        let embedded = try EmbeddedConnection(options: options, handler: handler)
        embedded.readLimit = 4096
        embedded.sendWindow = 0
        embedded.receive([UInt8](repeating: 0x61, count: 1 << 20))
        #expect(handler.events.contains("writable false"))
        #expect(handler.closedReason == .writeBufferLimitExceeded)
    }

    @Test("resumeReading while not writable does not read until the queue drains to the low watermark")
    func handlerResumeDoesNotOverrideWritability() throws {
        var options = ConnectionOptions()
        options.writeBufferHighWatermark = 8
        options.writeBufferLowWatermark = 4
        let handler = ScriptedHandler()
        let embedded = try EmbeddedConnection(options: options, handler: handler)
        embedded.sendWindow = 0
        embedded.receive("0123456789")
        #expect(!embedded.connection.readArmed)
        embedded.connection.pauseReading()
        embedded.connection.resumeReading()
        embedded.receive("more")
        #expect(embedded.unreadInput == 4)
        embedded.sendWindow = .max
        #expect(embedded.takeWrittenText() == "0123456789more")
    }

    @Test("a send that fails with ECONNRESET closes with .reset and refuses the write")
    func sendFailure() throws {
        let handler = ScriptedHandler()
        handler.echo = false
        let embedded = try EmbeddedConnection(handler: handler)
        embedded.transport.failNextSend = ECONNRESET
        #expect(!embedded.connection.write(Array("x".utf8)))
        embedded.run()
        #expect(handler.closedReason == .reset)
    }

    @Test("a write batch is one send at its end, and a close inside it waits for the batch")
    func batchedWrites() throws {
        let handler = ScriptedHandler()
        handler.echo = false
        let embedded = try EmbeddedConnection(handler: handler)
        let connection = embedded.connection
        connection.withBatchedWrites {
            for word in ["one ", "two ", "three"] { connection.write(Array(word.utf8)) }
            connection.close()
            #expect(embedded.transport.sends == 0)
        }
        #expect(embedded.transport.sends == 1)
        #expect(embedded.takeWrittenText() == "one two three")
        #expect(connection.phase == .lingering)
    }

    @Test("output budget: a connection adding output over the reactor's budget stops reading, and reads again once output drains")
    func outputBudgetThrottles() throws {
        let reactor = try Reactor(outputBudget: 100)
        let first = ScriptedHandler()
        let second = ScriptedHandler()
        let a = try EmbeddedConnection(reactor: reactor, handler: first)
        let b = try EmbeddedConnection(reactor: reactor, handler: second)
        a.sendWindow = 0
        b.sendWindow = 0
        a.receive(Array(repeating: 0x61, count: 80))
        #expect(reactor.queuedOutputBytes == 80)
        #expect(!a.connection.isThrottled)
        b.receive(Array(repeating: 0x62, count: 40))
        #expect(reactor.queuedOutputBytes == 120)
        #expect(b.connection.isThrottled)
        #expect(!b.connection.isWritable)
        #expect(reactor.throttledConnectionCount == 1)
        b.receive(Array(repeating: 0x62, count: 10))
        #expect(b.unreadInput == 10, "a throttled connection does not read")
        #expect(second.events == ["received 40", "writable false"])

        // A drains to 0: the total (40) is under half the budget, so B is released and reads.
        a.sendWindow = .max
        b.run()
        #expect(reactor.throttledConnectionCount == 0)
        #expect(!b.connection.isThrottled)
        #expect(b.connection.isWritable)
        #expect(b.unreadInput == 0)
        #expect(reactor.queuedOutputBytes == 50)
        b.sendWindow = .max
        #expect(b.takeWritten() == Array(repeating: 0x62, count: 50))
        #expect(reactor.queuedOutputBytes == 0)
    }

    @Test("pauseReading leaves input in the socket; resumeReading reads it")
    func pauseAndResume() throws {
        let handler = ScriptedHandler()
        let embedded = try EmbeddedConnection(handler: handler)
        embedded.connection.pauseReading()
        embedded.receive("wait")
        #expect(embedded.unreadInput == 4)
        embedded.connection.resumeReading()
        embedded.run()
        #expect(embedded.takeWrittenText() == "wait")
    }
}
