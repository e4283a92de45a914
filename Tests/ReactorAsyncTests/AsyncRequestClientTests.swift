import Glibc
import ReactorAsync
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

/// Answers nothing: requests to it wait for their timeout.
final class SilentHandler: FrameHandler {
    func received(frame: RawSpan, on connection: FramedConnection) {}
}

@Suite("AsyncRequestClient", .serialized)
struct AsyncRequestClientTests {
    @Test("200 requests from concurrent tasks, pipelined on one connection, each get their own reply")
    func pipelinedRequests() async throws {
        try await withAsyncEchoServer { reactor, listener in
            let client = try await AsyncRequestClient.connect(
                reactor.handle, host: "127.0.0.1", port: listener.address.port, framing: .line)
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<200 {
                    group.addTask { try await client.request("request \(index)").string == "request \(index)" }
                }
                for try await matched in group { #expect(matched) }
            }
            await client.close()
        }
    }

    @Test("a request with no reply times out, and the connection closes")
    func requestTimesOut() async throws {
        try await withReactor { reactor in
            let port = try await reactor.run { reactor in
                try reactor.listen(host: "127.0.0.1", port: 0) { _ in
                    FramedConnection(framer: DelimiterFramer.line(), handler: SilentHandler())
                }.address.port
            }
            let client = try await AsyncRequestClient.connect(reactor.handle, host: "127.0.0.1", port: port, framing: .line)
            let error = await #expect(throws: ReactorError.self) {
                _ = try await client.request("anyone?", timeout: .milliseconds(100))
            }
            #expect(error?.code == .timedOut)
            await #expect(throws: ReactorError.self) { _ = try await client.request("again") }
        }
    }

    @Test("cancelling a waiting request throws CancellationError and closes the connection")
    func cancelledRequest() async throws {
        try await withReactor { reactor in
            let server = try RawSocket(listenBacklog: 4)
            let client = try await AsyncRequestClient.connect(reactor.handle, host: "127.0.0.1", port: server.port, framing: .line)
            let peer = accept(server.fd, nil, nil)
            #expect(peer >= 0)
            defer { close(peer) }
            var timeout = timeval(tv_sec: 30, tv_usec: 0)
            setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            // On the reactor, not the cooperative pool: other suites running beside this one
            // have held the pool's two threads for more than 5 s (a CI run timed out here).
            let request = Task(executorPreference: client.executor) { try await client.request("slow") }
            // Cancelled by the thread that read the request, at once: a busy cooperative pool
            // can hold this test's own task back for longer than the request's 10 s timeout.
            #expect(try await blocking {
                let bytes = readBlocking(peer, count: 5)
                request.cancel()
                return bytes
            } == Array("slow\n".utf8))
            await #expect(throws: CancellationError.self) { _ = try await request.value }
            // Closed cleanly: end of file, not a reset.
            let end = try await blocking {
                var byte: UInt8 = 0
                return read(peer, &byte, 1)
            }
            #expect(end == 0)
        }
    }

    @Test(
        "a request whose task was cancelled before the call throws CancellationError, sends nothing and closes the connection",
        arguments: [false, true])
    func requestCancelledBeforeItIsSent(fromTheReactor: Bool) async throws {
        try await withReactor { reactor in
            let server = try RawSocket(listenBacklog: 4)
            // A failure times out in 5 s rather than the default 10.
            let client = try await AsyncRequestClient.connect(
                reactor.handle, host: "127.0.0.1", port: server.port, framing: .line, requestTimeout: .seconds(5))
            let peer = accept(server.fd, nil, nil)
            #expect(peer >= 0)
            defer { close(peer) }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let body: @Sendable () async throws -> Frame = {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await client.request("never sent")
            }
            let request = fromTheReactor ? Task(executorPreference: client.executor, operation: body) : Task(operation: body)
            await #expect(throws: CancellationError.self) { _ = try await request.value }
            // Nothing was sent, and the close is clean: end of file, not a reset.
            let end = try await blocking {
                var byte: UInt8 = 0
                return read(peer, &byte, 1)
            }
            #expect(end == 0)
        }
    }

    @Test("a request waiting for writability throws CancellationError when cancelled, and the connection closes")
    func requestCancelledWhileWaitingToBeSent() async throws {
        try await withReactor { reactor in
            let server = try RawSocket(listenBacklog: 4)
            // No request timeout: only the cancellation may end the waiting request.
            let client = try await AsyncRequestClient.connect(
                reactor.handle, host: "127.0.0.1", port: server.port, framing: .raw, requestTimeout: nil)
            let peer = accept(server.fd, nil, nil)
            #expect(peer >= 0)
            defer { close(peer) }
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(peer, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            // More than the kernel takes from a peer that does not read: the rest stays
            // queued, above the high watermark, and the connection is not writable.
            let large = Task { try await client.request([UInt8](repeating: 0x61, count: 8 << 20)) }
            #expect(try await blocking { readBlocking(peer, count: 1) } == [0x61])
            let ended = Locked(false)
            let waiting = Task {
                defer { ended.set(true) }
                return try await client.request("behind it")
            }
            // Long enough for it to reach the wait; a cancel that comes sooner ends the same way.
            try await Task.sleep(for: .milliseconds(200))
            waiting.cancel()
            try await eventually("the cancelled request to end", timeout: .seconds(5)) { ended.value }
            await #expect(throws: CancellationError.self) { _ = try await waiting.value }
            // The connection closed: the request before it, whose reply would have answered
            // nothing now, fails.
            await #expect(throws: ReactorError.self) { _ = try await large.value }
        }
    }
}
