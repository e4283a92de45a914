// Thread confinement: a reactor's objects called from another thread while it runs trap
// (the reactor's own methods in every build, its objects' in debug builds), and the
// handle, the one way in from other threads, still works.

import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// Carries a reactor's object to a thread that must not use it, for the tests that prove
/// such a use traps.
private final class Smuggled<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

private final class Silent: ConnectionHandler {
    func received(_ bytes: RawSpan, on connection: Connection) {}
}

@Suite("Thread confinement")
struct ThreadConfinementTests {
    @Test("scheduling a timer from another thread while the reactor runs traps")
    func scheduleOffTheLoopThreadTraps() async {
        await #expect(processExitsWith: .failure) {
            let (thread, reactor) = try ReactorThread.start { Smuggled($0) }
            // Work submitted through the handle runs inside run(): the loop is running now.
            try await thread.handle.submit { _ in }
            reactor.value.schedule(after: .seconds(1)) { _ in }
        }
    }

    @Test("stopping the reactor directly from another thread traps (the handle's stop() is the way)")
    func stopOffTheLoopThreadTraps() async {
        await #expect(processExitsWith: .failure) {
            let (thread, reactor) = try ReactorThread.start { Smuggled($0) }
            try await thread.handle.submit { _ in }
            reactor.value.stop()
        }
    }

    #if DEBUG
    @Test("closing a listener from another thread while the reactor runs traps (debug builds)")
    func listenerCloseOffTheLoopThreadTraps() async {
        await #expect(processExitsWith: .failure) {
            let (thread, listener) = try ReactorThread.start { reactor in
                Smuggled(try reactor.listen(host: "127.0.0.1", port: 0) { _ in Silent() })
            }
            try await thread.handle.submit { _ in }
            listener.value.close()
        }
    }
    #endif

    @Test("the same calls made through the handle, from several threads at once, run on the loop thread")
    func handleWorksFromOtherThreads() async throws {
        try await withReactor(setup: { _ in UInt(pthread_self()) }) { thread, loopThread in
            let ran = try await withThrowingTaskGroup(of: (UInt, Bool).self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await thread.handle.submit { reactor in
                            let timer = reactor.schedule(after: .seconds(60)) { _ in }
                            timer.cancel()
                            let listener = try reactor.listen(host: "127.0.0.1", port: 0) { _ in Silent() }
                            listener.close()
                            return (UInt(pthread_self()), !timer.isScheduled && !listener.isListening)
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(ran.count == 8)
            #expect(ran.allSatisfy { $0.0 == loopThread && $0.1 })
            #expect(loopThread != UInt(pthread_self()))
        }
    }

    @Test("before run() and after it returns, another thread may set up and inspect the reactor")
    func setupBeforeRunOnAnotherThread() throws {
        let reactor = try Reactor()
        let listener = try reactor.listen(host: "127.0.0.1", port: 0) { _ in Silent() }
        reactor.schedule(after: .zero) { _ in reactor.stop() }
        let box = Smuggled(reactor)
        let returned = DispatchSemaphore(value: 0)
        Thread {
            try? box.value.run()
            returned.signal()
        }.start()
        try #require(returned.wait(timeout: .now() + 10) == .success)
        #expect(reactor.state == .stopped)
        #expect(!listener.isListening)
        listener.close()
    }
}
