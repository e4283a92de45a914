import Dispatch
import Foundation
import Logging
import ReactorCore
import ReactorLifecycle
import ReactorServices
import ReactorTestSupport
import ServiceLifecycle
import Synchronization
import Testing

/// Where a service's setup closure, on the reactor thread, publishes its listening port.
final class PortBox: Sendable {
    private let value = Mutex<Int?>(nil)
    func set(_ port: Int?) { value.withLock { $0 = port } }
    var port: Int? { value.withLock { $0 } }
}

@Suite(.timeLimit(.minutes(1))) struct ReactorServiceTests {
    /// Waits up to 5 s for the service's setup to publish its port.
    static func port(from box: PortBox) async throws -> Int {
        for _ in 0..<500 {
            if let port = box.port { return port }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw POSIXError(.ETIMEDOUT)
    }

    @Test func gracefulShutdownOfTheGroupFlushesAndEndsTheService() async throws {
        let port = PortBox()
        let service = ReactorService(name: "echo-test") { reactor in
            port.set(try reactor.listen(host: "127.0.0.1", port: 0) { _ in EchoHandler() }.address.port)
        }
        let group = ServiceGroup(services: [service], logger: Logger(label: "test"))
        let running = Task { try await group.run() }

        let fd = try blockingLoopbackSocket(port: try await Self.port(from: port), receiveTimeout: .seconds(5))
        defer { close(fd) }
        #expect(write(fd, "ping", 4) == 4)
        var reply = [UInt8](repeating: 0, count: 4)
        #expect(read(fd, &reply, 4) == 4)
        #expect(reply == Array("ping".utf8))

        await group.triggerGracefulShutdown()
        try await running.value
        // The service closed the connection on its way out: the client reads end of file.
        var byte: UInt8 = 0
        #expect(read(fd, &byte, 1) == 0)
    }

    @Test func anErrorInSetupEndsRunWithThatError() async throws {
        let taken = try RawSocket(listenBacklog: 1)  // a port held by a plain listening socket
        defer { withExtendedLifetime(taken) {} }
        let port = taken.port
        let service = ReactorService { reactor in
            try reactor.listen(host: "127.0.0.1", port: port) { _ in EchoHandler() }
        }
        await #expect(throws: ReactorError.self) { try await service.run() }
    }

    @Test func cancellingTheTaskStopsTheReactor() async throws {
        let port = PortBox()
        let service = ReactorService { reactor in
            port.set(try reactor.listen(host: "127.0.0.1", port: 0) { _ in EchoHandler() }.address.port)
        }
        let running = Task { try await service.run() }
        let bound = try await Self.port(from: port)
        running.cancel()
        try await running.value
        #expect(throws: POSIXError.self) { try blockingLoopbackSocket(port: bound, receiveTimeout: .seconds(5)) }
    }

    @Test func aGroupOfReactorsServesAndShutsDownGracefullyAsOneService() async throws {
        let port = PortBox()
        let service = ReactorService(name: "echo-group", threads: 2) { group in
            port.set(try group.listen(host: "127.0.0.1", port: 0) { _ in { _ in EchoHandler() } }.address.port)
        }
        #expect(service.threads == 2)
        let serviceGroup = ServiceGroup(services: [service], logger: Logger(label: "test"))
        let running = Task { try await serviceGroup.run() }
        let bound = try await Self.port(from: port)
        let clients = try (0..<8).map { _ in try blockingLoopbackSocket(port: bound, receiveTimeout: .seconds(5)) }
        defer { clients.forEach { close($0) } }
        for fd in clients {
            #expect(write(fd, "ping", 4) == 4)
            #expect(readBlocking(fd, count: 4) == Array("ping".utf8))
        }
        await serviceGroup.triggerGracefulShutdown()
        try await running.value
        for fd in clients {
            var byte: UInt8 = 0
            #expect(read(fd, &byte, 1) == 0)
        }
        #expect(throws: POSIXError.self) { try blockingLoopbackSocket(port: bound, receiveTimeout: .seconds(5)) }
    }

    @Test func startedGivesTheHandleAndWhatSetupReturned() async throws {
        let service = ReactorService(name: "started-test", returning: Int.self) { reactor in
            try reactor.listen(host: "127.0.0.1", port: 0) { _ in EchoHandler() }.address.port
        }
        let running = Task { try await service.run() }
        let started = try await service.started()
        let fd = try blockingLoopbackSocket(port: started.value, receiveTimeout: .seconds(5))
        defer { close(fd) }
        #expect(write(fd, "ping", 4) == 4)
        var reply = [UInt8](repeating: 0, count: 4)
        #expect(read(fd, &reply, 4) == 4)
        let open = try await started.handle.submit { reactor in reactor.connectionCount }
        #expect(open == 1)
        running.cancel()
        try await running.value
        // A second waiter after the fact gets the same answer, and a second run is refused.
        #expect(try await service.started().value == started.value)
        await #expect(throws: ReactorError.self) { try await service.run() }
    }

    @Test func startedThrowsWhatSetupThrew() async throws {
        let taken = try RawSocket(listenBacklog: 1)
        defer { withExtendedLifetime(taken) {} }
        let port = taken.port
        let service = ReactorService(returning: Int.self) { reactor in
            try reactor.listen(host: "127.0.0.1", port: port) { _ in EchoHandler() }.address.port
        }
        let waiting = Task { try await service.started() }
        await #expect(throws: ReactorError.self) { try await service.run() }
        await #expect(throws: ReactorError.self) { try await waiting.value }
    }

    @Test func runDoesNotBlockItsThreadWhileSetupRuns() async throws {
        // run() on an executor with one thread, and setup waiting for a second task on
        // that same thread to let it go: a run() that blocked its thread during setup would
        // leave none for that task, and setup would wait out its timeout.
        let executor = OneThreadExecutor()
        defer { executor.shutdown() }
        let release = DispatchSemaphore(value: 0)
        let entered = Locked(false)
        let timedOut = Locked(false)
        let service = ReactorService(name: "setup-waits") { _ in
            entered.set(true)
            if release.wait(timeout: .now() + .seconds(40)) == .timedOut { timedOut.set(true) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask(executorPreference: executor) { try await service.run() }
            group.addTask(executorPreference: executor) {
                while !entered.value { try await Task.sleep(for: .milliseconds(1)) }
                release.signal()
            }
            _ = try await service.started()
            group.cancelAll()
            try await group.waitForAll()
        }
        #expect(!timedOut.value, "setup waited for a task that had no thread to run on")
    }
}

/// A task executor with exactly one thread, so a test can tell whether a task blocks it.
final class OneThreadExecutor: TaskExecutor, @unchecked Sendable {
    // The queue is guarded by the condition's lock; the thread is the only consumer.
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopping = false

    init() {
        // The thread holds the executor until shutdown() lets it end: with an unowned
        // capture the executor could be freed while the thread still waits in next()
        // (AddressSanitizer's run caught that read of a destroyed object).
        let thread = Thread { [self] in
            while let job = next() { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
        thread.name = "one-thread-executor"
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    func shutdown() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func next() -> UnownedJob? {
        condition.lock()
        defer { condition.unlock() }
        while jobs.isEmpty, !stopping { condition.wait() }
        return jobs.isEmpty ? nil : jobs.removeFirst()
    }
}
