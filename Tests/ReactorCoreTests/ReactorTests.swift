// The reactor loop: run and stop, its states, the backend, the cross-thread handle,
// signals and graceful shutdown.

import Dispatch
import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Synchronization
import Testing

@Suite("Reactor", .timeLimit(.minutes(1)))
struct ReactorTests {
    @Test("the backend is epoll")
    func backendIsEpoll() throws {
        let method = try onNewThread { try Reactor().backendMethod }
        #expect(method == "epoll")
    }

    @Test("run() returns after stop() and leaves the reactor stopped")
    func runReturnsAfterStop() throws {
        let states = try onNewThread { () -> [Reactor.State] in
            let reactor = try Reactor()
            var seen = [reactor.state]
            reactor.schedule(after: .milliseconds(10)) { _ in
                seen.append(reactor.state)
                reactor.stop()
            }
            try reactor.run()
            seen.append(reactor.state)
            return seen
        }
        #expect(states == [.ready, .running, .stopped])
    }

    @Test("run() on a stopped reactor throws reactorStopped")
    func runAgainThrows() throws {
        let error = try reactorError(prepare: { reactor in
            reactor.schedule(after: .milliseconds(1)) { _ in reactor.stop() }
            try reactor.run()
        }) { reactor in
            try reactor.run()
        }
        let thrown = try #require(error, "a second run() must throw")
        #expect(thrown.code == .reactorStopped)
        #expect(thrown.operation == .run)
        #expect(thrown.description.contains("create a new Reactor"), "\(thrown)")
    }

    @Test("run() from inside run() throws invalidState, and the outer loop goes on")
    func nestedRunThrows() throws {
        let (error, laterTimerFired) = try onNewThread { () -> (ReactorError?, Bool) in
            let reactor = try Reactor()
            var nestedError: ReactorError?
            var later = false
            reactor.schedule(after: .milliseconds(1)) { _ in
                do throws(ReactorError) {
                    try reactor.run()
                } catch {
                    nestedError = error
                }
                reactor.schedule(after: .milliseconds(1)) { _ in
                    later = true
                    reactor.stop()
                }
            }
            try reactor.run()
            return (nestedError, later)
        }
        let thrown = try #require(error, "a nested run() must throw")
        #expect(thrown.code == .invalidState)
        #expect(laterTimerFired)
    }

    @Test("stop() before run() makes run() return at once")
    func stopBeforeRun() throws {
        let state = try onNewThread(timeout: .seconds(5)) { () -> Reactor.State in
            let reactor = try Reactor()
            // A watchdog, so a reactor that ignores the early stop still ends (and fails below).
            var watchdogFired = false
            reactor.schedule(after: .seconds(2)) { _ in
                watchdogFired = true
                reactor.stop()
            }
            reactor.stop()
            try reactor.run()
            return watchdogFired ? .running : reactor.state
        }
        #expect(state == .stopped, "run() ignored a stop() made before it started")
    }

    @Test("SIGPIPE is ignored once a reactor exists")
    func sigpipeIgnored() throws {
        _ = try onNewThread { try Reactor().state }
        var current = sigaction()
        sigaction(SIGPIPE, nil, &current)
        let handler = unsafeBitCast(current.__sigaction_handler.sa_handler, to: Int.self)
        #expect(handler == unsafeBitCast(SIG_IGN, to: Int.self), "SIGPIPE would kill the process")
    }

    @Test("signals are handled on the reactor thread")
    func signalHandledOnReactorThread() throws {
        let handled = Locked(0)
        try withReactor(setup: { reactor in
            _ = try reactor.onSignal(SIGUSR2) { handled.update { $0 += 1 } }
        }) { thread, _ in
            // The reactor thread was started from a test thread that blocks most signals; a
            // watcher must unblock its signal there, or a process whose threads all block it
            // (a child spawned by Foundation's Process, for one) would never see it.
            let blocked = try thread.sync { _ in
                var mask = sigset_t()
                pthread_sigmask(SIG_BLOCK, nil, &mask)
                return sigismember(&mask, SIGUSR2) == 1
            }
            #expect(blocked == false, "SIGUSR2 is still blocked on the reactor thread")
            kill(getpid(), SIGUSR2)
            #expect(handled.wait(until: { $0 == 1 }) != nil, "the SIGUSR2 watcher did not run")
        }
    }
}

extension ReactorTests {
    @Test("stopping the reactor aborts open connections and tells each handler once")
    func stopAbortsConnections() throws {
        try withProbedServer(echo: true) { server, logs in
            let clients = try (0..<3).map { _ in try TestClient(connectingTo: server.address) }
            for client in clients {
                try client.send("x")
                _ = try client.receive(count: 1)
            }
            server.reactor.stop()
            #expect(logs.all.map(\.closed) == Array(repeating: [.aborted], count: 3))
            for client in clients {
                #expect(client.receiveUntilEnd().end != .timedOut, "the socket was left open")
            }
        }
    }

    @Test("ReactorThread.start passes on an error thrown by setup")
    func reactorThreadSetupThrows() {
        #expect(throws: TestFailure.self) {
            _ = try ReactorThread.start { _ in throw TestFailure("setup failed") }
        }
    }
}

/// The scoped helpers every test target uses (ReactorTestSupport) tear down what they start.
@Suite("Scoped test reactors", .timeLimit(.minutes(1)))
struct ScopedReactorTests {
    @Test("withServer stops its reactor and closes its listener when the body throws")
    func withServerTearsDownOnThrow() throws {
        let seen = Locked<(handle: ReactorHandle, address: SocketAddress)?>(nil)
        #expect(throws: TestFailure.self) {
            try withEchoServer { server in
                seen.set((server.handle, server.address))
                throw TestFailure("the body failed")
            }
        }
        let (handle, address) = try #require(seen.value)
        #expect(handle.execute { _ in } == false, "the reactor still runs after the block threw")
        #expect((try? TestClient(connectingTo: address, timeout: .seconds(1))) == nil, "the listener still accepts")
    }

    @Test("withReactor tears down once, even when the body stopped the reactor itself")
    func withReactorStopsOnce() async throws {
        let handle = try await withReactor { reactor in
            reactor.stop()
            return reactor.handle
        }
        #expect(handle.execute { _ in } == false)
    }
}

@Suite("Reactor handle", .timeLimit(.minutes(1)))
struct ReactorHandleTests {
    @Test("execute from 4 threads x 10_000 jobs (1_000 under TSan): none lost, each thread's order kept")
    func executeOrderingUnderLoad() throws {
        let threads = 4
        // TSan serialises the contended mailbox lock through its own bookkeeping: 40_000
        // posts took over 20 s there, while 4_000 still race the producers and the drain.
        let jobsPerThread = isThreadSanitizerBuild ? 1_000 : 10_000
        let seen = ReactorBound<[[Int]]>(Array(repeating: [], count: threads))
        try withReactor { thread in
            let handle = thread.handle
            let refused = Locked(0)
            let start = DispatchSemaphore(value: 0)
            let finished = DispatchGroup()
            for producer in 0..<threads {
                finished.enter()
                Thread {
                    start.wait()
                    for job in 0..<jobsPerThread {
                        let posted = handle.execute { _ in seen.value[producer].append(job) }
                        if !posted { refused.update { $0 += 1 } }
                    }
                    finished.leave()
                }.start()
            }
            for _ in 0..<threads { start.signal() }
            #expect(finished.wait(timeout: .now() + .seconds(20)) == .success, "producers did not finish")
            #expect(refused.value == 0)
            // Every job posted before this one has run once it runs (same mailbox, FIFO).
            let counts = try thread.sync(timeout: .seconds(20)) { _ in seen.value.map(\.count) }
            #expect(counts == Array(repeating: jobsPerThread, count: threads))
            let ordered = try thread.sync { _ in seen.value.map { $0 == Array(0..<jobsPerThread) } }
            #expect(ordered == Array(repeating: true, count: threads), "a producer's jobs ran out of order")
        }
    }

    @Test("execute runs on the reactor thread")
    func executeRunsOnReactorThread() throws {
        try withReactor(setup: { _ in pthread_self() }) { thread, reactorThreadID in
            let ranOn = try thread.sync { _ in pthread_self() }
            #expect(pthread_equal(ranOn, reactorThreadID) != 0)
        }
    }

    @Test("submit returns the value computed on the reactor")
    func submitReturnsValue() async throws {
        try await withReactor(setup: { reactor in
            try reactor.listen(host: "127.0.0.1", port: 0) { _ in ByteEcho() }.address
        }) { thread, _ in
            let method = try await thread.handle.submit { reactor in reactor.backendMethod }
            #expect(method == "epoll")
            let sum = try await thread.handle.submit { _ in (1...100).reduce(0, +) }
            #expect(sum == 5050)
        }
    }

    @Test("submit passes on what the work throws")
    func submitRethrows() async throws {
        try await withReactor { thread in
            await #expect(throws: TestFailure.self) {
                try await thread.handle.submit { _ in throw TestFailure("from the reactor") }
            }
        }
    }

    @Test("after stop, execute returns false and submit throws reactorStopped")
    func executeAfterStop() async throws {
        try await withReactor { thread in
            let handle = thread.handle
            thread.stop()
            let ran = Locked(false)
            #expect(handle.execute { _ in ran.set(true) } == false)
            do {
                _ = try await handle.submit { _ in 1 }
                Issue.record("submit after stop returned a value")
            } catch let error as ReactorError {
                #expect(error.code == .reactorStopped)
            }
            usleep(10_000)
            #expect(ran.value == false)
        }
    }

    @Test("stop() from another thread ends run()")
    func stopFromAnotherThread() throws {
        try withReactor { thread in
            thread.handle.stop()
            #expect(thread.waitUntilStopped(), "the reactor did not stop")
        }
    }
}

@Suite("Graceful shutdown", .timeLimit(.minutes(1)))
struct ShutdownTests {
    @Test("shutdownGracefully closes listeners, flushes connections, and run() returns")
    func gracefulShutdownFlushes() throws {
        let owed = 4 * 1024 * 1024
        try withProbedServer(keepReceivedBytes: false, configure: { handler, _ in
            // Answer any request with a reply much larger than the socket buffers.
            handler.onReceived = { _, connection in connection.write(pattern(count: owed)) }
        }) { server, logs in
            let client = try TestClient(connectingTo: server.address, receiveBuffer: 64 * 1024)
            try client.send("go")
            let record = try logs.record()
            #expect(record.wait(until: { $0.maxQueued > 0 }) != nil, "the reply should be queued, not all taken by the kernel")

            server.handle.shutdownGracefully(timeout: .seconds(20))
            // The listener closes at once: new connections are refused.
            #expect(
                waitUntil { (try? TestClient(connectingTo: server.address, timeout: .seconds(1))) == nil },
                "the listener still accepts after shutdownGracefully")

            // The open connection gets everything it was owed, then end of file.
            expectPattern(client.receiveUntilEnd(timeout: .seconds(20)), count: owed)
            client.close()

            #expect(try logs.closeReason() == .closed)
            #expect(server.reactor.waitUntilStopped(), "run() did not return after the last connection closed")
        }
    }

    @Test("a connection that has sent nothing when the shutdown begins is served its first request; a silent one closes after the grace")
    func gracefulShutdownServesAFirstRequest() throws {
        try withProbedServer(echo: true) { server, logs in
            let late = try TestClient(connectingTo: server.address)
            let silent = try TestClient(connectingTo: server.address)
            for index in 0..<2 {
                #expect(try logs.record(index).wait(until: { $0.opened == 1 }) != nil, "connection #\(index) was not opened")
            }
            server.handle.shutdownGracefully(timeout: .seconds(20))
            #expect(
                waitUntil { (try? TestClient(connectingTo: server.address, timeout: .seconds(1))) == nil },
                "the listener still accepts after shutdownGracefully")
            // The shutdown has begun: this client's request comes after it, as a client's
            // does that connected a moment before.
            try late.send("first request")
            let answer = late.receiveUntilEnd(timeout: .seconds(10))
            #expect(answer.bytes == Array("first request".utf8), "the first request was not answered: \(answer)")
            #expect(answer.end == .endOfFile)
            let started = ContinuousClock.now
            #expect(silent.receiveUntilEnd(timeout: .seconds(10)).end == .endOfFile)
            #expect(ContinuousClock.now - started < .seconds(5), "the silent connection waited longer than its grace")
            #expect(server.reactor.waitUntilStopped(timeout: .seconds(10)), "run() did not return after both closed")
        }
    }

    @Test("a reactor shut down gracefully is freed once run() returns and its user lets go")
    func shutDownReactorIsFreed() throws {
        weak var released: Reactor?
        try {
            let reactor = try Reactor()
            released = reactor
            _ = try reactor.listen(host: "127.0.0.1", port: 0) { _ in ByteEcho() }
            reactor.runSoon { reactor.shutdownGracefully(timeout: .seconds(20)) }
            try reactor.run()
        }()
        #expect(released == nil, "the shutdown deadline's timer kept the reactor alive")
    }

    @Test("shutdownGracefully aborts connections still open after its timeout")
    func gracefulShutdownTimeout() throws {
        try withProbedServer(keepReceivedBytes: false, configure: { handler, _ in
            handler.onOpened = { connection in connection.write(pattern(count: 8 * 1024 * 1024)) }
        }) { server, logs in
            // A client that neither reads nor closes.
            let client = try TestClient(connectingTo: server.address, receiveBuffer: 16 * 1024)
            _ = try logs.record()
            server.handle.shutdownGracefully(timeout: .milliseconds(200))
            #expect(server.reactor.waitUntilStopped(timeout: .seconds(5)), "run() did not return after the shutdown timeout")
            #expect(try logs.closeReason() == .aborted)
            let (_, end) = client.receiveUntilEnd(timeout: .seconds(10))
            #expect(end == .reset)
        }
    }

    @Test("shutdownGracefully with nothing open stops at once")
    func gracefulShutdownIdle() throws {
        try withEchoServer { server in
            server.handle.shutdownGracefully()
            #expect(server.reactor.waitUntilStopped(timeout: .seconds(2)))
        }
    }
}
