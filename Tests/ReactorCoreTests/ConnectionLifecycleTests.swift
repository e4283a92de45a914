// How connections end and how they push back: half-close in both directions, graceful
// close flushing, abort dropping, idle timeout, the write-buffer limit, and the high
// watermark pausing reads from a peer that does not read.

import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

@Suite("Connection lifecycle", .timeLimit(.minutes(1)))
struct ConnectionLifecycleTests {
    // MARK: Half-close

    @Test("a client that shuts down its write side still gets every echo, then end of file")
    func clientHalfClose() throws {
        try withProbedServer(echo: true, keepReceivedBytes: false) { server, logs in
            let data = pattern(count: 1024 * 1024)
            let client = try TestClient(connectingTo: server.address)
            let early = try client.sendWhileReading(data)
            client.shutdownWrite()  // most echoes are still on their way
            let (rest, end) = client.receiveUntilEnd(timeout: .seconds(20))
            expectPattern((early + rest, end), count: data.count)
            #expect(try logs.closeReason() == .endOfFile)
            #expect(logs.all[0].inputClosed == 0, "without allowRemoteHalfClosure, inputClosed is not called")
        }
    }

    @Test("with allowRemoteHalfClosure, inputClosed fires and the server can still write")
    func remoteHalfClosure() throws {
        var options = ConnectionOptions()
        options.allowRemoteHalfClosure = true
        try withProbedServer(options, configure: { handler, reactor in
            let record = handler.record
            handler.onInputClosed = { connection in
                let count = record.value.receivedCount
                let inputClosed = connection.isInputClosed
                record.update { $0.notes.append("isInputClosed: \(inputClosed)") }
                connection.write("got \(count) bytes\n")
                // Still open for writing later, not just inside the hook.
                reactor.schedule(after: .milliseconds(20)) { _ in
                    connection.write("still here\n")
                    connection.close()
                }
            }
        }) { server, logs in
            let client = try TestClient(connectingTo: server.address)
            try client.send("abc")
            client.shutdownWrite()
            expectText(client.receiveUntilEnd(), "got 3 bytes\nstill here\n")
            #expect(try logs.closeReason() == .closed)
            let record = logs.all[0]
            #expect(record.inputClosed == 1)
            #expect(record.received == Array("abc".utf8))
            #expect(record.notes == ["isInputClosed: true"])
        }
    }

    @Test("shutdownOutput gives the client end of file while the server still reads")
    func serverShutdownOutput() throws {
        try withProbedServer(configure: { handler, _ in
            let record = handler.record
            handler.onOpened = { connection in
                connection.write("hello\n")
                connection.shutdownOutput()
                let refused = !connection.write("too late")
                let shut = connection.isOutputShutdown
                record.update { $0.notes.append("write refused: \(refused), isOutputShutdown: \(shut)") }
            }
        }) { server, logs in
            let client = try TestClient(connectingTo: server.address)
            expectText(client.receiveUntilEnd(), "hello\n")
            // The server's read side is still open.
            try client.send("ping")
            let record = try logs.record()
            #expect(record.wait(until: { $0.received == Array("ping".utf8) }) != nil, "the server stopped reading after shutdownOutput")
            #expect(record.value.closed.isEmpty)
            #expect(record.value.notes == ["write refused: true, isOutputShutdown: true"])
            client.close()
            #expect(try logs.closeReason() == .endOfFile)
        }
    }

    // MARK: Close and abort

    @Test("close() flushes everything queued before the end of file")
    func gracefulCloseFlushes() throws {
        let size = 8 * 1024 * 1024
        try Self.withWritingServer(size: size, then: { $0.close() }) { server, logs in
            let client = try TestClient(connectingTo: server.address, receiveBuffer: 64 * 1024)
            let record = try logs.record()
            expectPattern(client.receiveUntilEnd(timeout: .seconds(30)), count: size)
            client.close()
            #expect(try logs.closeReason() == .closed)
            let notes = record.value.notes
            #expect(notes.count == 2)
            #expect(Self.queuedAtEnd(notes) > 0, "the test needs close() to find output still queued: \(notes)")
            #expect(notes.last == "phase: closing")
        }
    }

    @Test("abort() drops queued output and resets the connection")
    func abortDrops() throws {
        let size = 8 * 1024 * 1024
        try Self.withWritingServer(size: size, then: { $0.abort() }) { server, logs in
            let client = try TestClient(connectingTo: server.address, receiveBuffer: 64 * 1024)
            #expect(try logs.closeReason() == .aborted)
            let (bytes, end) = client.receiveUntilEnd(timeout: .seconds(10))
            #expect(end == .reset, "the client should see a reset, not a clean end of file")
            #expect(bytes.count < size, "abort must drop what was queued")
            #expect(firstPatternMismatch(bytes) == nil, "what did arrive is a prefix of what was written")
            #expect(Self.queuedAtEnd(logs.all[0].notes) > 0, "the test needs abort() to find output still queued")
        }
    }

    @Test("shutdownOutput after a large write sends everything first, then end of file")
    func shutdownOutputFlushesFirst() throws {
        let size = 4 * 1024 * 1024
        try Self.withWritingServer(size: size, then: { $0.shutdownOutput() }) { server, logs in
            let client = try TestClient(connectingTo: server.address, receiveBuffer: 64 * 1024)
            expectPattern(client.receiveUntilEnd(timeout: .seconds(20)), count: size)
            try client.send("still listening?")
            #expect(try logs.record().wait(until: { $0.received == Array("still listening?".utf8) }) != nil)
            client.close()
            #expect(try logs.closeReason() == .endOfFile)
        }
    }

    @Test("a graceful close the peer does not let finish times out with .timedOut and a reset")
    func closeTimeout() throws {
        var options = ConnectionOptions()
        options.closeTimeout = .milliseconds(200)
        try Self.withWritingServer(size: 8 * 1024 * 1024, options, then: { $0.close() }) { server, logs in
            // Never reads, never closes: the flush cannot finish.
            let client = try TestClient(connectingTo: server.address, receiveBuffer: 16 * 1024)
            #expect(try logs.closeReason() == .timedOut)
            #expect(client.receiveUntilEnd(timeout: .seconds(10)).end == .reset)
        }
    }

    @Test("a graceful close waits for the peer's FIN, at most lingerTimeout, then closes cleanly")
    func closeLingersForPeerFIN() throws {
        var options = ConnectionOptions()
        options.lingerTimeout = .milliseconds(300)
        try withProbedServer(options, configure: { handler, _ in
            handler.onOpened = { connection in
                connection.write("bye\n")
                connection.close()
            }
        }) { server, logs in
            let client = try TestClient(connectingTo: server.address)
            expectText(client.receiveUntilEnd(), "bye\n")
            // Bytes sent to a lingering connection are discarded, not delivered.
            try client.send("ignored")
            // Everything owed was sent before the wait, so giving up on the FIN is still a clean close.
            #expect(try logs.closeReason() == .closed)
            #expect(logs.all[0].received.isEmpty)
        }
    }

    @Test("a peer reset closes the connection with .reset")
    func peerReset() throws {
        try withProbedServer(echo: true) { server, logs in
            let client = try TestClient(connectingTo: server.address)
            try client.send("x")
            _ = try client.receive(count: 1)
            client.reset()
            #expect(try logs.closeReason() == .reset)
        }
    }

    @Test("writing to a peer that has gone closes with .reset, not a crash (no SIGPIPE)")
    func writeToVanishedPeer() throws {
        try withProbedServer(configure: { handler, reactor in
            handler.onReceived = { _, connection in
                // Keep writing every millisecond until the connection dies.
                reactor.schedule(after: .milliseconds(1), repeating: .milliseconds(1)) { timer in
                    if !connection.write(pattern(count: 1024)) { timer.cancel() }
                }
            }
        }) { server, logs in
            let client = try TestClient(connectingTo: server.address)
            try client.send("start")
            _ = try client.receive(count: 1024)
            client.reset()
            #expect(try logs.closeReason() == .reset)
        }
    }

    @Test("pauseReading stops delivery and resumeReading brings the waiting bytes")
    func pauseAndResumeReading() throws {
        try withProbedServer(configure: { handler, _ in
            handler.onOpened = { connection in connection.pauseReading() }
        }) { server, logs in
            let client = try TestClient(connectingTo: server.address)
            try client.send("held back")
            let record = try logs.record()
            usleep(100_000)
            #expect(record.value.receivedCount == 0, "bytes were delivered while reading was paused")
            let slot = logs.connection()
            let paused = try server.sync { _ in
                let paused = slot.value?.isReadingPaused
                slot.value?.resumeReading()
                return paused
            }
            #expect(paused == true)
            #expect(record.wait(until: { $0.received == Array("held back".utf8) }) != nil, "resumeReading did not deliver the waiting bytes")
        }
    }

    @Test("with allowRemoteHalfClosure, the default inputClosed closes after flushing")
    func remoteHalfClosureDefault() throws {
        var options = ConnectionOptions()
        options.allowRemoteHalfClosure = true
        try withProbedServer(options, echo: true) { server, logs in
            let client = try TestClient(connectingTo: server.address)
            try client.send("last words")
            client.shutdownWrite()
            expectText(client.receiveUntilEnd(), "last words")
            client.close()
            #expect(try logs.closeReason() == .closed)
            #expect(logs.all[0].inputClosed == 1)
        }
    }

    // MARK: Limits

    @Test("an idle connection is closed with .timedOut")
    func idleTimeout() throws {
        var options = ConnectionOptions()
        options.idleTimeout = .milliseconds(100)
        try withProbedServer(options, echo: true) { server, logs in
            let started = ContinuousClock.now
            let client = try TestClient(connectingTo: server.address)
            let (bytes, end) = client.receiveUntilEnd(timeout: .seconds(5))
            let elapsed = ContinuousClock.now - started
            #expect(bytes.isEmpty)
            #expect(end == .endOfFile)
            #expect(elapsed >= .milliseconds(90), "closed before the idle timeout: \(elapsed)")
            #expect(try logs.closeReason() == .timedOut)
        }
    }

    @Test("keepalive options reach the accepted socket; without them keepalive stays off")
    func keepAliveOptions() throws {
        /// SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT of the server's socket.
        func serverSocketOptions(_ keepAlive: TCPKeepAlive?) throws -> [Int32] {
            var options = ConnectionOptions()
            options.keepAlive = keepAlive
            let seen = Locked<[Int32]?>(nil)
            return try withProbedServer(options, configure: { handler, _ in
                handler.onOpened = { connection in
                    let fd = connection.fileDescriptor
                    let asked = [(SOL_SOCKET, SO_KEEPALIVE), (Int32(IPPROTO_TCP), TCP_KEEPIDLE),
                                 (Int32(IPPROTO_TCP), TCP_KEEPINTVL), (Int32(IPPROTO_TCP), TCP_KEEPCNT)]
                    seen.set(asked.map { level, name in
                        var value: Int32 = -1
                        var length = socklen_t(MemoryLayout<Int32>.size)
                        return getsockopt(fd, level, name, &value, &length) == 0 ? value : -1
                    })
                }
            }) { server, _ in
                let client = try TestClient(connectingTo: server.address)
                defer { client.close() }
                return try #require(seen.wait(timeout: .seconds(10)) { $0 != nil } ?? nil)
            }
        }
        let on = try serverSocketOptions(TCPKeepAlive(idle: .seconds(7), interval: .milliseconds(1500), count: 4))
        #expect(on == [1, 7, 2, 4], "interval 1.5 s is rounded up to 2 s, never down to 1")
        #expect(try serverSocketOptions(nil).first == 0)
    }

    @Test("traffic keeps a connection with an idle timeout open")
    func activityDefersIdleTimeout() throws {
        var options = ConnectionOptions()
        options.idleTimeout = .seconds(1)
        try withProbedServer(options, echo: true) { server, logs in
            let client = try TestClient(connectingTo: server.address)
            // 2 s of traffic, a byte every 40 ms: well over the timeout in total, never idle for
            // it, with room for a loaded machine to stall the test thread now and then.
            for _ in 0..<50 {
                try client.send([42])
                #expect(try client.receive(count: 1) == [42])
                usleep(40_000)
            }
            #expect(logs.all[0].closed.isEmpty, "closed while traffic was flowing")
            #expect(client.receiveUntilEnd(timeout: .seconds(5)).end == .endOfFile)
            #expect(try logs.closeReason() == .timedOut)
        }
    }

    @Test("counting idle input by progress: bytes that make no progress do not keep a connection open; progress does")
    func idleInputByProgress() throws {
        var options = ConnectionOptions()
        options.idleTimeout = .milliseconds(500)
        // A handler that assembles "!"-terminated messages: only a finished one is progress.
        try withProbedServer(options, configure: { handler, _ in
            handler.onOpened = { $0.countIdleInputByProgress() }
            handler.onReceived = { bytes, connection in
                if bytes.contains(UInt8(ascii: "!")) { connection.inputMadeProgress() }
            }
        }) { server, logs in
            let trickler = try TestClient(connectingTo: server.address)
            let started = ContinuousClock.now
            var closedEarly = false
            // Far longer than the timeout, a byte every 50 ms, never finishing a message.
            while ContinuousClock.now - started < .seconds(5) {
                guard (try? trickler.send("a")) != nil else { break }
                let end = trickler.receiveSome(timeout: .milliseconds(50)).end
                if end != nil, end != .timedOut {
                    closedEarly = true
                    break
                }
            }
            #expect(closedEarly, "a peer sending bytes that make no progress was kept open")
            #expect(try logs.closeReason(0) == .timedOut)

            let finisher = try TestClient(connectingTo: server.address)
            for _ in 0..<20 {  // 1.6 s of whole messages, 80 ms apart
                try finisher.send("a!")
                usleep(80_000)
            }
            let record = try logs.record(1)
            #expect(record.value.closed.isEmpty, "closed while messages were finishing")
            #expect(finisher.receiveUntilEnd(timeout: .seconds(5)).end == .endOfFile)
            #expect(try logs.closeReason(1) == .timedOut)
        }
    }

    @Test("queuing past writeBufferLimit aborts the connection with that reason")
    func writeBufferLimitExceeded() throws {
        var options = ConnectionOptions()
        options.writeBufferHighWatermark = 64 * 1024
        options.writeBufferLowWatermark = 32 * 1024
        options.writeBufferLimit = 256 * 1024
        try withProbedServer(options, configure: { handler, _ in
            let record = handler.record
            handler.onOpened = { connection in
                // A handler that ignores writability: write until a write is refused.
                let chunk = pattern(count: 64 * 1024)
                var accepted = 0
                while accepted < 1024, connection.write(chunk) { accepted += 1 }
                let maxQueued = connection.queuedOutputBytes
                record.update { $0.notes = ["accepted \(accepted)", "queued after \(maxQueued)"] }
            }
        }) { server, logs in
            // The server aborts as soon as it opens the connection: the reset can reach the
            // client before its non-blocking connect is checked, and the connect reports it.
            var client: TestClient?
            do {
                client = try TestClient(connectingTo: server.address, receiveBuffer: 16 * 1024)
            } catch where "\(error)".contains("reset by peer") {
                client = nil
            }
            #expect(try logs.closeReason() == .writeBufferLimitExceeded)
            let notes = logs.all[0].notes
            #expect(notes.first != "accepted 1024", "writes were never refused: \(notes)")
            #expect(notes.last == "queued after 0", "an aborted connection holds no output: \(notes)")
            #expect(logs.all[0].maxQueued <= options.writeBufferLimit)
            if let client { #expect(client.receiveUntilEnd(timeout: .seconds(10)).end == .reset) }
        }
    }

    @Test("a peer that does not read hits the high watermark; echo pauses reading, then delivers everything")
    func nonReadingPeerPausesReading() throws {
        let connectionOptions = ConnectionOptions()
        try withProbedServer(echo: true, keepReceivedBytes: false) { server, logs in
            let client = try TestClient(connectingTo: server.address, receiveBuffer: 128 * 1024, sendBuffer: 128 * 1024)
            let record = try logs.record()

            // Write, never read, until nothing more is taken for 300 ms and the server has
            // said it is not writable: every buffer on the way is full and it stopped reading.
            let chunkSize = 64 * 1024
            let cap = 64 * 1024 * 1024
            var sent = 0
            var chunk = pattern(count: chunkSize)
            let writing = Deadline(.seconds(30))
            while sent < cap, !writing.hasPassed {
                let taken = try chunk.withUnsafeBytes { try client.sendAvailable($0) }
                if taken > 0 {
                    sent += taken
                    chunk = pattern(count: chunkSize, offset: sent)
                    continue
                }
                if client.waitWritable(timeout: .milliseconds(300)) { continue }
                // Stalled. A server that is merely slow (a loaded machine) may not have caught
                // up yet; give it time to report before deciding.
                if record.wait(timeout: .seconds(2), until: { !$0.writabilityChanges.isEmpty }) != nil { break }
            }
            try #require(sent < cap, "the server kept taking bytes from a peer that never reads (\(sent) bytes)")
            try #require(!writing.hasPassed, "the client could neither stall the server nor finish writing")

            let bound = connectionOptions.writeBufferHighWatermark + Reactor.defaultReadBufferSize
            let paused = try #require(record.value.writabilityChanges.first, "the server never became not writable")
            #expect(paused.writable == false)
            #expect(paused.readingPaused == true, "echo must pause reading when not writable")
            let (writable, readingPaused, queued) = try serverState(server, logs: logs)
            #expect(writable == false)
            #expect(readingPaused == true)
            #expect(queued > connectionOptions.writeBufferLowWatermark, "not writable means more than the low watermark queued")
            #expect(queued <= bound, "the output queue grew past the high watermark plus one read")
            #expect(record.value.maxQueued <= bound, "the output queue peaked at \(record.value.maxQueued)")

            // Now read: everything sent comes back, in order, and the server recovers.
            var received = 0
            var mismatch: Int?
            let deadline = Deadline(.seconds(30))
            while received < sent, !deadline.hasPassed {
                let (bytes, end) = client.receiveSome(max: 256 * 1024, timeout: deadline.remaining)
                if let end {
                    Issue.record("the stream ended (\(end)) after \(received) of \(sent) bytes")
                    break
                }
                if mismatch == nil, let at = firstPatternMismatch(bytes, offset: received) { mismatch = received + at }
                received += bytes.count
            }
            #expect(received == sent)
            #expect(mismatch == nil, "the echo differs from what was sent at byte \(mismatch ?? -1)")
            let resumed = try #require(record.wait(until: { $0.writabilityChanges.count >= 2 }))
            #expect(resumed.writabilityChanges.last?.writable == true)
            #expect(resumed.writabilityChanges.last?.readingPaused == false, "echo must resume reading when writable again")
            #expect(resumed.maxQueued <= bound)
            let (writableAfter, pausedAfter, _) = try serverState(server, logs: logs)
            #expect(writableAfter == true)
            #expect(pausedAfter == false)
        }
    }

    // MARK: Helpers

    /// Runs `body` with a probed server (``withProbedServer(host:_:echo:keepReceivedBytes:configure:sourceLocation:_:)``)
    /// whose connections, as soon as they open, write `size` bytes of the pattern and then
    /// `end` themselves (close, abort, shutdownOutput). The record's notes say what was
    /// still queued at that moment and the phase after it: `["queued: N", "phase: P"]`.
    private static func withWritingServer(
        size: Int, _ options: ConnectionOptions = .init(), then end: @escaping @Sendable (Connection) -> Void,
        _ body: (TestServer, ConnectionLogs) throws -> Void
    ) throws {
        try withProbedServer(options, configure: { handler, _ in
            let record = handler.record
            handler.onOpened = { connection in
                connection.write(pattern(count: size))
                let queued = connection.queuedOutputBytes
                // Noted before `end`, which may report the close at once.
                record.update { $0.notes = ["queued: \(queued)"] }
                end(connection)
                let phase = connection.phase
                record.update { $0.notes.append("phase: \(phase)") }
            }
        }, body)
    }

    /// The output a ``withWritingServer(size:_:then:_:)`` connection still had queued when it
    /// ended itself (0 when not noted).
    private static func queuedAtEnd(_ notes: [String]) -> Int {
        notes.first.flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
    }

    /// The server connection's (isWritable, isReadingPaused, queuedOutputBytes), read on
    /// the reactor thread.
    private func serverState(_ server: TestServer, logs: ConnectionLogs) throws -> (Bool, Bool, Int) {
        let slot = logs.connection(0)
        let state = try server.sync { _ in
            slot.value.map { ($0.isWritable, $0.isReadingPaused, $0.queuedOutputBytes) }
        }
        guard let state else { throw TestFailure("the server connection has closed") }
        return state
    }
}
