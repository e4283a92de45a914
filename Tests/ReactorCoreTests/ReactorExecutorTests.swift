import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// An actor whose state lives on a reactor's thread.
actor ReactorCounter {
    let executor: ReactorExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private(set) var count = 0
    private(set) var offThread = 0

    init(on executor: ReactorExecutor) {
        self.executor = executor
    }

    func increment() -> Int {
        if !executor.isCurrentThread { offThread += 1 }
        count += 1
        return count
    }
}

@Suite("ReactorExecutor")
struct ReactorExecutorTests {
    @Test("an actor on the reactor's executor runs every call on the reactor thread, one at a time")
    func actorOnReactor() async throws {
        try await withReactor { reactor in
            let counter = ReactorCounter(on: reactor.handle.executor)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<20 {
                    group.addTask { for _ in 0..<50 { _ = await counter.increment() } }
                }
                try await group.waitForAll()
            }
            #expect(await counter.count == 1000)
            #expect(await counter.offThread == 0)
            // A reactor callback is on the actor's executor: it may touch the actor synchronously.
            let seen = try await reactor.run { _ in counter.assumeIsolated { $0.count } }
            #expect(seen == 1000)
        }
    }

    @Test("a task that prefers the reactor's executor runs its nonisolated code on the reactor thread")
    func taskExecutorPreference() async throws {
        try await withReactor { reactor in
            let executor = reactor.handle.executor
            let onThread = await Task(executorPreference: executor) {
                var all = executor.isCurrentThread
                for _ in 0..<10 {
                    await Task.yield()
                    all = all && executor.isCurrentThread
                }
                return all
            }.value
            #expect(onThread)
            #expect(!executor.isCurrentThread)
        }
    }

    @Test("checkIsolated traps off the reactor thread")
    func checkIsolatedTraps() async throws {
        await #expect(processExitsWith: .failure) {
            let (thread, _) = try ReactorThread.start { _ in }
            thread.handle.executor.checkIsolated()
        }
    }

    @Test("a LoopBound value is reached from execute closures; off the reactor thread it traps")
    func loopBound() async throws {
        try await withReactor { reactor in
            let bound = try await reactor.run { reactor in LoopBoundBox([Int](), reactor: reactor) }
            for value in 0..<5 { reactor.handle.execute { _ in bound.value.append(value) } }
            #expect(try await reactor.run { _ in bound.value } == [0, 1, 2, 3, 4])
        }
        await #expect(processExitsWith: .failure) {
            let (thread, bound) = try ReactorThread.start { reactor in LoopBound(42, reactor: reactor) }
            _ = bound.value
            thread.stop()
        }
    }

    @Test("jobs enqueued before the reactor runs wait for it; after it stops a task still finishes")
    func jobsAroundTheLoopsLife() async throws {
        let reactor = try Reactor()
        let executor = reactor.executor
        let started = Task(executorPreference: executor) { executor.isCurrentThread }
        // Not run yet: the reactor runs on this thread, below.
        try await Task.sleep(for: .milliseconds(20))
        reactor.schedule(after: .milliseconds(50)) { _ in reactor.stop() }
        try reactor.run()
        #expect(await started.value)
        let after = await Task(executorPreference: executor) { 7 }.value
        #expect(after == 7)
    }
}
