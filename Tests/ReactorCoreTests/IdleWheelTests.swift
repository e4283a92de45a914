// The idle timeouts of many connections in one wheel (IdleWheel): on time, spared by
// activity, and gone from the wheel when the connection goes, with the sweeper stopping
// once nothing is left to watch.

import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

@Suite("Idle wheel", .timeLimit(.minutes(1)))
struct IdleWheelTests {
    @Test("many idle connections close on time; the ones that moved close a timeout after they moved")
    func manyConnections() throws {
        var options = ConnectionOptions()
        options.idleTimeout = .seconds(1)
        try withProbedServer(options, echo: true) { server, logs in
            let started = ContinuousClock.now
            let quiet = try (0..<20).map { _ in try TestClient(connectingTo: server.address) }
            let active = try (0..<20).map { _ in try TestClient(connectingTo: server.address) }
            #expect(waitUntil { logs.all.count == 40 })
            #expect(try server.sync { $0.idleWatchedConnectionCount } == 40)
            usleep(300_000)
            let touched = ContinuousClock.now
            for client in active {
                try client.send([7])
                #expect(try client.receive(count: 1) == [7])
            }
            for client in quiet {
                #expect(client.receiveUntilEnd(timeout: .seconds(5)).end == .endOfFile)
            }
            let quietFor = ContinuousClock.now - started
            // The coarse clock stamps up to a few milliseconds behind the precise one.
            #expect(quietFor >= .milliseconds(990), "closed before the idle timeout: \(quietFor)")
            #expect(quietFor < .seconds(3), "closed long after the idle timeout: \(quietFor)")
            for client in active {
                #expect(client.receiveUntilEnd(timeout: .seconds(5)).end == .endOfFile)
            }
            let activeFor = ContinuousClock.now - touched
            #expect(activeFor >= .milliseconds(990), "closed before the idle timeout after the last echo: \(activeFor)")
            #expect(activeFor < .seconds(3), "closed long after the idle timeout: \(activeFor)")
            // A client can see its end of file before the server's handler has logged the
            // close (a CI run under load did): wait for the reasons, do not race them.
            #expect(waitUntil { logs.all.allSatisfy { $0.closeReason == .timedOut } }, "\(logs.all.map(\.closeReason))")
            #expect(try server.sync { $0.idleWatchedConnectionCount } == 0)
            // The sweeper stops at its first tick (8 ms here) that finds the wheel empty.
            #expect(waitUntil(timeout: .seconds(2)) { (try? server.sync { $0.idleSweeperCount }) == 0 })
        }
    }

    @Test("a connection leaves its wheel when it closes, aborts or is dropped; an idle one times out")
    func leavesTheWheel() throws {
        var options = ConnectionOptions()
        options.idleTimeout = .milliseconds(50)
        let reactor = try Reactor()
        let closing = ScriptedHandler()
        let aborting = ScriptedHandler()
        let idle = ScriptedHandler()
        let first = try EmbeddedConnection(reactor: reactor, options: options, handler: closing)
        let second = try EmbeddedConnection(reactor: reactor, options: options, handler: aborting)
        let openedAt = ContinuousClock.now
        let third = try EmbeddedConnection(reactor: reactor, options: options, handler: idle)
        var dropped: Connection? = Connection(
            reactor: reactor, memory: MemoryTransport(), peer: try SocketAddress(ip: "192.0.2.2", port: 1), options: options)
        dropped?.start(handler: ScriptedHandler())
        #expect(reactor.idleWatchedConnectionCount == 4)
        #expect(reactor.idleSweeperCount == 1)

        first.connection.close()
        first.receiveEndOfFile()
        #expect(closing.closedReason == .closed)
        #expect(reactor.idleWatchedConnectionCount == 3)
        second.connection.abort()
        second.run()
        #expect(aborting.closedReason == .aborted)
        #expect(reactor.idleWatchedConnectionCount == 2)
        dropped = nil  // never closed: its deinit takes it out
        #expect(reactor.idleWatchedConnectionCount == 1)

        while idle.closedReason == nil, ContinuousClock.now - openedAt < .seconds(5) {
            usleep(2_000)
            third.run()
        }
        let elapsed = ContinuousClock.now - openedAt
        #expect(idle.closedReason == .timedOut)
        // The coarse clock stamps up to a few milliseconds behind the precise one.
        #expect(elapsed >= .milliseconds(45), "closed before the idle timeout: \(elapsed)")
        #expect(reactor.idleWatchedConnectionCount == 0)
        // Not running: the sweeper stops as soon as the wheel is empty.
        #expect(reactor.idleSweeperCount == 0)
    }
}
