import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// Writes nothing of its own: the test writes through the connection it kept.
private final class Quiet: ConnectionHandler {
    func received(_ bytes: RawSpan, on connection: Connection) {}
}

@Suite("Writes held until the executor's jobs end")
struct HeldWritesTests {
    /// Runs `body` with a reactor, a client connected to it and, bound to the reactor, the
    /// server's side of that connection.
    private func withConnection<T>(
        _ body: (TestReactor, TestClient, LoopBoundBox<Connection?>) async throws -> T
    ) async throws -> T {
        try await withReactor { reactor in
            let kept = try await reactor.run { reactor in LoopBoundBox<Connection?>(nil, reactor: reactor) }
            let address = try await reactor.run { reactor in
                try reactor.listen(host: "127.0.0.1", port: 0) { connection in
                    kept.value = connection
                    return Quiet()
                }.address
            }
            let client = try TestClient(connectingTo: address)
            try await eventually("the server accepted the connection") { try reactor.sync { _ in kept.value != nil } }
            return try await body(reactor, client, kept)
        }
    }

    @Test("writes from a task on the reactor wait for the end of the jobs the reactor runs, then go out in order")
    func heldUntilJobsEnd() async throws {
        try await withConnection { reactor, client, kept in
            let executor = reactor.handle.executor
            let (queuedInJob, queuedLater) = await Task(executorPreference: executor) {
                let connection = kept.value!
                connection.holdWritesUntilJobsEnd()
                for line in ["one\n", "two\n", "three\n"] { connection.write(line) }
                let queuedInJob = connection.queuedOutputBytes
                // The job after a suspension runs in a later pass over the mailbox, after
                // the reactor has sent what this one held.
                await Task.yield()
                return (queuedInJob, connection.queuedOutputBytes)
            }.value
            #expect(queuedInJob == 14)
            #expect(queuedLater == 0)
            let received = try client.receive(count: 14)
            #expect(String(decoding: received, as: UTF8.self) == "one\ntwo\nthree\n")
        }
    }

    @Test("outside the executor's jobs (a reactor callback) nothing is held: a write goes out at once")
    func notHeldInCallbacks() async throws {
        try await withConnection { reactor, client, kept in
            let queued = try reactor.sync { _ in
                let connection = kept.value!
                connection.holdWritesUntilJobsEnd()
                connection.write("now\n")
                return connection.queuedOutputBytes
            }
            #expect(queued == 0)
            let received = try client.receive(count: 4)
            #expect(String(decoding: received, as: UTF8.self) == "now\n")
        }
    }

    @Test("a connection closed while its writes are held sends them before it closes")
    func closeWhileHeld() async throws {
        try await withConnection { reactor, client, kept in
            let executor = reactor.handle.executor
            let payload = pattern(count: 1 << 20)
            await Task(executorPreference: executor) {
                let connection = kept.value!
                connection.holdWritesUntilJobsEnd()
                connection.write(payload)
                connection.close()
            }.value
            let received = client.receiveUntilEnd(timeout: .seconds(10))
            #expect(received.end == .endOfFile)
            #expect(received.bytes.count == payload.count)
            #expect(firstPatternMismatch(received.bytes) == nil)
        }
    }
}
