import Glibc
import ReactorAsync
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

/// Runs `body` with a reactor thread and an async line-echo server on it (its handler runs
/// on the reactor through `serve`), stopping the reactor when `body` ends.
func withAsyncEchoServer<T>(
    framing: Framing = .line, options: AsyncConnectionOptions = .init(),
    _ body: (TestReactor, AsyncListener) async throws -> T
) async throws -> T {
    try await withReactor { reactor in
        let listener = try await reactor.handle.listen(host: "127.0.0.1", port: 0, framing: framing, connectionOptions: options)
        let serving = Task {
            await listener.serve { connection in
                for try await frame in connection.inbound { try await connection.outbound.write(frame) }
            }
        }
        defer { serving.cancel() }
        return try await body(reactor, listener)
    }
}

@Suite("AsyncConnection", .serialized)
struct AsyncConnectionTests {
    @Test("lines go out and come back through an async server and an async client, from the global executor")
    func echoRoundTrip() async throws {
        try await withAsyncEchoServer { reactor, listener in
            let connection = try await reactor.handle.connect(host: "127.0.0.1", port: listener.address.port, framing: .line)
            let received = try await connection.executeThenClose { inbound, outbound in
                for index in 0..<50 { try await outbound.write("line \(index)") }
                var lines: [String] = []
                for try await line in inbound {
                    lines.append(line.string)
                    if lines.count == 50 { break }
                }
                return lines
            }
            #expect(received == (0..<50).map { "line \($0)" })
        }
    }

    @Test("a task on the reactor's executor runs the connection's code on the reactor thread")
    func onReactorExecutor() async throws {
        try await withAsyncEchoServer { reactor, listener in
            let handle = reactor.handle
            let port = listener.address.port
            let result = try await Task(executorPreference: handle.executor) {
                let connection = try await handle.connect(host: "127.0.0.1", port: port, framing: .line)
                return try await connection.executeThenClose { inbound, outbound in
                    var iterator = inbound.makeAsyncIterator()
                    try await outbound.write("ping")
                    let reply = try await iterator.next()
                    return (reply?.string, handle.executor.isCurrentThread)
                }
            }.value
            #expect(result.0 == "ping")
            #expect(result.1)
        }
    }

    @Test("a 1 MiB write just before executeThenClose ends is received whole")
    func lastWriteDelivered() async throws {
        try await withReactor { reactor in
            let listener = try await reactor.handle.listen(host: "127.0.0.1", port: 0, framing: .raw)
            let payload = pattern(count: 1 << 20)
            let serving = Task {
                await listener.serve { connection in
                    try await connection.outbound.write(payload)
                }
            }
            defer { serving.cancel() }
            let address = listener.address
            let received = try await blocking {
                try TestClient(connectingTo: address, defaultTimeout: .seconds(20)).receiveUntilEnd()
            }
            #expect(received.bytes.count == payload.count)
            #expect(firstPatternMismatch(received.bytes) == nil)
            #expect(received.end == .endOfFile)
        }
    }

    @Test("a consumer that stops iterating pauses reading: a flooding peer is held under the high watermark")
    func backpressureHoldsAFlood() async throws {
        var options = AsyncConnectionOptions()
        options.highWatermarkBytes = 64 * 1024
        options.lowWatermarkBytes = 32 * 1024
        try await withReactor { reactor in
            let listener = try await reactor.handle.listen(
                host: "127.0.0.1", port: 0, framing: .lengthPrefix(.four), connectionOptions: options)
            let client = Peer(try TestClient(connectingTo: listener.address, receiveBuffer: 16384, sendBuffer: 16384))
            var accepted = listener.connections.makeAsyncIterator()
            let connection = try #require(try await accepted.next())
            // 1000-byte frames until the kernel takes nothing for half a second: the server
            // has stopped reading.
            let frame: [UInt8] = [0, 0, 0x03, 0xE8] + pattern(count: 1000)
            let (sent, partial) = try await blocking {
                var sent = 0
                var offset = 0
                while sent < 64 << 20 {
                    let taken = try frame[offset...].withUnsafeBytes { try client.value.sendAvailable($0) }
                    sent += taken
                    offset = (offset + taken) % frame.count
                    if taken == 0, !client.value.waitWritable(timeout: .milliseconds(500)) { break }
                }
                return (sent, offset)
            }
            let stalled = sent < 64 << 20
            #expect(stalled, "the peer was never held back")
            let buffered = await connection.inbound.buffered
            #expect(buffered.readingPaused)
            let peak = await connection.inbound.peakBufferedBytes
            // The stated bound: the high watermark plus one frame.
            #expect(peak <= options.highWatermarkBytes + 1000)
            // Everything sent arrives once the consumer reads.
            let finishing = Task {
                try await blocking {
                    if partial > 0 { try client.value.send(frame[partial...], timeout: .seconds(10)) }
                    shutdown(client.value.fd, Int32(SHUT_WR))
                }
            }
            var total = 0
            for try await received in connection.inbound {
                #expect(received.count == 1000)
                total += received.count + 4
            }
            try await finishing.value
            #expect(total == sent + (partial == 0 ? 0 : frame.count - partial))
        }
    }

    @Test("cancelling the task that iterates inbound closes the connection")
    func cancellingTheReaderCloses() async throws {
        try await withReactor { reactor in
            let listener = try await reactor.handle.listen(host: "127.0.0.1", port: 0, framing: .line)
            let client = Peer(try TestClient(connectingTo: listener.address))
            var accepted = listener.connections.makeAsyncIterator()
            let connection = try #require(try await accepted.next())
            let reader = Task {
                var count = 0
                for try await _ in connection.inbound { count += 1 }
                return count
            }
            try client.value.send("one\n")
            try await Task.sleep(for: .milliseconds(50))
            reader.cancel()
            await #expect(throws: CancellationError.self) { _ = try await reader.value }
            #expect(try await blocking { client.value.receiveUntilEnd().end } == .endOfFile)
            await #expect(throws: ReactorError.self) { try await connection.outbound.write("late") }
        }
    }

    @Test("a write waiting for writability throws CancellationError when cancelled; the connection stays usable")
    func cancellingAWaitingWrite() async throws {
        try await withReactor { reactor in
            let server = try RawSocket(listenBacklog: 4)
            let connection = try await reactor.handle.connect(host: "127.0.0.1", port: server.port, framing: .raw)
            let peer = accept(server.fd, nil, nil)
            #expect(peer >= 0)
            defer { close(peer) }
            // Generous: the last bytes wait for this test's task, which a busy cooperative
            // pool may hold back.
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            // The peer reads nothing, so within a few MiB a write has to wait.
            let chunk = [UInt8](repeating: 0x61, count: 1 << 20)
            let written = Locked(0)
            let ended = Locked(false)
            let writer = Task {
                defer { ended.set(true) }
                for _ in 0..<64 {
                    try await connection.outbound.write(chunk)
                    written.update { $0 += 1 }
                }
            }
            // Long enough for the writes to stall; a cancel that comes sooner ends the same way.
            try await Task.sleep(for: .milliseconds(300))
            writer.cancel()
            try await eventually("the cancelled write to end", timeout: .seconds(5)) { ended.value }
            await #expect(throws: CancellationError.self) { try await writer.value }
            let sent = written.value
            #expect(sent > 0 && sent < 64)
            // Still open: once the peer reads, a new write goes out after all the others.
            let expected = sent * chunk.count + 4
            let received = Task { try await blocking { readBlocking(peer, count: expected) } }
            try await connection.outbound.write("done")
            let bytes = try await received.value
            #expect(bytes.count == expected)
            #expect(Array(bytes.suffix(4)) == Array("done".utf8))
        }
    }

    @Test("a stopped reactor is freed with its async connections, though a client still holds its connection")
    func stoppedReactorIsFreed() async throws {
        let watched = WeakReference<Reactor>()
        let servingEnded = Locked(false)
        let connection = try await withReactor(setup: { reactor in watched.set(reactor) }) { reactor, _ in
            let listener = try await reactor.handle.listen(host: "127.0.0.1", port: 0, framing: .line)
            _ = Task {
                defer { servingEnded.set(true) }
                await listener.serve { connection in
                    for try await frame in connection.inbound { try await connection.outbound.write(frame) }
                }
            }
            let connection = try await reactor.handle.connect(host: "127.0.0.1", port: listener.address.port, framing: .line)
            try await connection.outbound.write("ping")
            var replies = connection.inbound.makeAsyncIterator()
            let reply = try await replies.next()
            #expect(reply?.string == "ping")
            // Both ends are open when the reactor stops.
            return connection
        }
        try await eventually("the server's task to end", timeout: .seconds(5)) { servingEnded.value }
        try await eventually("the reactor to be freed", timeout: .seconds(5)) { watched.isNil }
        withExtendedLifetime(connection) {}
    }

    @Test("after its reactor stopped, a connection still held throws reactorStopped instead of trapping off the reactor thread")
    func connectionAfterTheReactorStopped() async throws {
        let (connection, client, listener) = try await withReactor { reactor in
            let listener = try await reactor.handle.listen(host: "127.0.0.1", port: 0, framing: .line)
            let connection = try await reactor.handle.connect(host: "127.0.0.1", port: listener.address.port, framing: .line)
            let client = try await AsyncRequestClient.connect(reactor.handle, host: "127.0.0.1", port: listener.address.port, framing: .line)
            return (connection, client, listener)
        }
        let write = await #expect(throws: ReactorError.self) { try await connection.outbound.write("late") }
        #expect(write?.code == .reactorStopped)
        let read = await #expect(throws: ReactorError.self) {
            var frames = connection.inbound.makeAsyncIterator()
            _ = try await frames.next()
        }
        #expect(read?.code == .reactorStopped)
        let request = await #expect(throws: ReactorError.self) { _ = try await client.request("late") }
        #expect(request?.code == .reactorStopped)
        // Nothing to wait for: the connections closed with the reactor, and so did the listener.
        await connection.close()
        await client.close()
        var accepted = listener.connections.makeAsyncIterator()
        let next = try await accepted.next()
        #expect(next == nil)
    }

    @Test("an async connect still in progress when the reactor stops, or shuts down gracefully, throws reactorStopped",
          arguments: [false, true])
    func connectPendingWhenTheReactorStops(gracefully: Bool) async throws {
        // A listener whose accept queue is full drops further SYNs, so a connect to it
        // stays pending: backlog 0 queues one connection.
        let server = try RawSocket(listenBacklog: 0)
        let queued = try blockingLoopbackSocket(port: server.port)
        defer { close(queued) }
        let port = server.port
        let ended = Locked(false)
        let connecting = try await withReactor { reactor in
            let handle = reactor.handle
            let connecting = Task {
                defer { ended.set(true) }
                _ = try await handle.connect(host: "127.0.0.1", port: port, framing: .line, timeout: .seconds(30))
            }
            try await Task.sleep(for: .milliseconds(200))
            #expect(!ended.value, "the connect did not stay pending")
            if gracefully { handle.shutdownGracefully() }
            return connecting
        }
        try await eventually("the connect to end", timeout: .seconds(5)) { ended.value }
        let error = await #expect(throws: ReactorError.self) { try await connecting.value }
        #expect(error?.code == .reactorStopped)
    }

    @Test("100 connections at once through an async echo server, each echoed byte for byte", .timeLimit(.minutes(1)))
    func hundredConnections() async throws {
        try await withReactor { reactor in
            let listener = try await reactor.handle.listen(host: "127.0.0.1", port: 0, framing: .raw)
            let open = Locked((now: 0, peak: 0))
            let serving = Task {
                await listener.serve { connection in
                    open.update { $0.now += 1; $0.peak = max($0.peak, $0.now) }
                    defer { open.update { $0.now -= 1 } }
                    for try await chunk in connection.inbound { try await connection.outbound.write(chunk) }
                }
            }
            defer { serving.cancel() }
            let address = listener.address
            let count = 100
            let round = 4096
            let rounds = 8
            // One thread drives all the clients: every round sends a chunk on each connection
            // (which the kernel takes without the server reading), then reads every echo, so
            // all the connections are in flight together.
            let (mismatches, ends) = try await blocking {
                let clients = try (0..<count).map { _ in try TestClient(connectingTo: address, noDelay: true, defaultTimeout: .seconds(20)) }
                var mismatches: [String] = []
                for index in 0..<rounds {
                    for (client, fd) in zip(clients, 0...) {
                        try client.send(pattern(count: round, offset: index * round, seed: UInt64(fd + 1)))
                    }
                    for (client, fd) in zip(clients, 0...) {
                        let echoed = try client.receive(count: round)
                        if firstPatternMismatch(echoed, offset: index * round, seed: UInt64(fd + 1)) != nil {
                            mismatches.append("connection \(fd), round \(index)")
                        }
                    }
                }
                for client in clients { client.shutdownWrite() }
                // After the echoes, nothing more: the server closes once its inbound ends.
                let ends = clients.map { client in client.receiveUntilEnd() }.map { $0.bytes.isEmpty && $0.end == .endOfFile }
                return (mismatches, ends)
            }
            #expect(mismatches.isEmpty, "\(mismatches)")
            #expect(ends == Array(repeating: true, count: count))
            #expect(open.value.peak == count)
            #expect(try await blocking { open.wait(timeout: .seconds(10)) { $0.now == 0 } } != nil)
        }
    }

    @Test("a refused connect throws connectionRefused")
    func refusedConnect() async throws {
        try await withReactor { reactor in
            let port = try await reactor.run { reactor in
                let listener = try reactor.listen(host: "127.0.0.1", port: 0) { _ in DiscardingHandler() }
                let port = listener.address.port
                listener.close()
                return port
            }
            let error = await #expect(throws: ReactorError.self) {
                _ = try await reactor.handle.connect(host: "127.0.0.1", port: port, framing: .line)
            }
            #expect(error?.code == .connectionRefused)
        }
    }

    @Test("a peer's bad frame ends inbound with the framing error")
    func framingErrorThrows() async throws {
        try await withReactor { reactor in
            let listener = try await reactor.handle.listen(host: "127.0.0.1", port: 0, framing: .netstring)
            let client = try TestClient(connectingTo: listener.address)
            var accepted = listener.connections.makeAsyncIterator()
            let connection = try #require(try await accepted.next())
            try client.send("3:abc,x")
            var frames: [String] = []
            let error = await #expect(throws: FramingError.self) {
                for try await frame in connection.inbound { frames.append(frame.string) }
            }
            #expect(error != nil)
            #expect(frames == ["abc"])
        }
    }

    @Test("serve ends on its own when the reactor shuts down gracefully")
    func serveEndsOnGracefulShutdown() async throws {
        try await withReactor { reactor in
            let listener = try await reactor.handle.listen(host: "127.0.0.1", port: 0, framing: .line)
            let served = Locked(0)
            let serving = Task {
                await listener.serve { connection in
                    for try await line in connection.inbound { try await connection.outbound.write(line) }
                    served.update { $0 += 1 }
                }
            }
            let address = listener.address
            let clients = Peer(try (0..<3).map { _ in try TestClient(connectingTo: address) })
            let echoed = try await blocking {
                try clients.value.map { client in
                    try client.send("hi\n")
                    return try client.receive(count: 3)
                }
            }
            #expect(echoed == Array(repeating: Array("hi\n".utf8), count: 3))
            reactor.handle.shutdownGracefully()
            await serving.value
            #expect(served.value == 3)
            let ends = try await blocking { clients.value.map { $0.receiveUntilEnd().end } }
            #expect(ends == [.endOfFile, .endOfFile, .endOfFile])
        }
    }
}

/// A weak reference that a test's threads may share: set once, on the reactor thread
/// before its loop runs, then only read.
final class WeakReference<Object: AnyObject>: @unchecked Sendable {
    private weak var object: Object?

    func set(_ object: Object) { self.object = object }
    var isNil: Bool { object == nil }
}

final class DiscardingHandler: ConnectionHandler {
    func received(_ bytes: RawSpan, on connection: Connection) {}
}
