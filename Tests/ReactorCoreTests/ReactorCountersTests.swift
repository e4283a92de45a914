// Reactor.counters over connections in memory: bytes counted as the kernel takes them
// (whole, partial and queued sends), and closes counted by kind, the write buffer limit
// and the output budget included.

import ReactorCore
import ReactorTestSupport
import Testing

@Suite("Reactor.counters: bytes and closes by kind", .timeLimit(.minutes(1)))
struct ReactorCountersTests {
    @Test("bytes sent are what the kernel took: a partial send, then the flush of the rest")
    func bytesAsTheKernelTakesThem() throws {
        let embedded = try EmbeddedConnection(handler: ScriptedHandler())
        embedded.sendWindow = 4
        embedded.receive(Array(repeating: 0x61, count: 10))
        #expect(embedded.reactor.counters.bytesReceived == 10)
        #expect(embedded.reactor.counters.bytesSent == 4)
        embedded.sendWindow = .max
        #expect(embedded.takeWritten().count == 10)
        #expect(embedded.reactor.counters.bytesSent == 10)
        embedded.connection.close()
        embedded.receiveEndOfFile()
        #expect(embedded.reactor.counters.closedConnections[.normal] == 1)
        #expect(embedded.reactor.counters.closedConnections.total == 1)
    }

    @Test("over the write buffer limit counts as limit; abort as aborted")
    func limitAndAbort() throws {
        var options = ConnectionOptions()
        options.writeBufferLimit = 16
        let handler = ScriptedHandler()
        handler.echo = false
        let reactor = try Reactor()
        let limited = try EmbeddedConnection(reactor: reactor, options: options, handler: handler)
        limited.sendWindow = 0
        #expect(!limited.connection.write(Array(repeating: 0x41, count: 20)))
        limited.run()
        let aborted = try EmbeddedConnection(reactor: reactor, handler: ScriptedHandler())
        aborted.connection.abort()
        aborted.run()
        #expect(reactor.counters.closedConnections[.limit] == 1)
        #expect(reactor.counters.closedConnections[.aborted] == 1)
        #expect(reactor.counters.closedConnections.total == 2)
    }

    @Test("a connection the output budget throttles, then aborted, counts as output_budget")
    func outputBudget() throws {
        let reactor = try Reactor(outputBudget: 100)
        let a = try EmbeddedConnection(reactor: reactor, handler: ScriptedHandler())
        let b = try EmbeddedConnection(reactor: reactor, handler: ScriptedHandler())
        a.sendWindow = 0
        b.sendWindow = 0
        a.receive(Array(repeating: 0x61, count: 80))
        b.receive(Array(repeating: 0x62, count: 40))
        #expect(b.connection.isThrottled)
        b.connection.abort()
        b.run()
        #expect(reactor.counters.closedConnections[.outputBudget] == 1)
        #expect(reactor.counters.closedConnections.total == 1)
    }
}
