import Logging
import ReactorCore
import ServiceLifecycle
import Synchronization

/// A reactor on a thread of its own, run as a swift-service-lifecycle `Service`, so it
/// starts and stops with the rest of a `ServiceGroup`:
///
/// ```swift
/// let echo = ReactorService(name: "echo", returning: Int.self) { reactor in
///     try reactor.listen(host: "0.0.0.0", port: 7007) { _ in EchoHandler() }.address.port
/// }
/// let group = ServiceGroup(services: [echo], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// async let running: Void = group.run()
/// let started = try await echo.started()   // the handle, and the port setup returned
/// print("echo on port \(started.value)")
/// try await running
/// ```
///
/// `setup` runs on the reactor thread before the loop starts; what it returns (bound
/// ports, say, or nothing) and the reactor's `ReactorHandle` are what
/// ``started()`` gives back. An error it throws ends `run()` with that error, and
/// ``started()`` too. Graceful shutdown of the group becomes
/// `Reactor/shutdownGracefully(timeout:)` (stop accepting, let connections
/// flush); cancelling the task stops the reactor at once. `run()` returns once the reactor
/// has stopped and released everything. No thread of the concurrency pool blocks while
/// the reactor starts (`ReactorThread/spawn(name:logger:outputBudget:preciseTimers:cpu:setup:)`).
///
/// With `threads` above 1 it runs a `ReactorGroup` instead: the other
/// initializer's `setup` gets the group, to listen on every reactor
/// (`ReactorGroup/listen(host:port:mode:options:connectionOptions:makeHandler:)`),
/// and graceful shutdown drains every reactor.
///
/// A service runs once: a second `run()` throws `ReactorError.Code.invalidState`.
public struct ReactorService<Value: Sendable>: Service, CustomStringConvertible {
    /// What ``started()`` returns once setup has run.
    public struct Started: Sendable {
        /// The way into the running reactor (the first of a group's) from other threads
        /// and tasks.
        public var handle: ReactorHandle { handles[0] }
        /// Every reactor's handle: one, or a group's, in order.
        public let handles: [ReactorHandle]
        /// What `setup` returned.
        public let value: Value
    }

    /// The reactor thread's name, also the service's description; a group's threads are
    /// named `name-0`, `name-1`, ...
    public let name: String
    /// How many reactors: 1 for one reactor thread, more for a group.
    public let threads: Int
    /// How long connections may take to flush on graceful shutdown.
    public let shutdownTimeout: Duration
    /// Each reactor's `Reactor/outputBudget`.
    public let outputBudget: Int
    private let logger: Logger
    private let setup: Setup
    private let startup = Startup<Started>()

    private enum Setup {
        case reactor(@Sendable (Reactor) throws -> Value)
        case group(@Sendable (ReactorGroup) throws -> Value)
    }

    /// A service that runs `setup` on a new reactor, then the reactor's loop; what `setup`
    /// returns, of type `returning`, comes back from ``started()``.
    ///
    /// The type is named so that a setup written for the other initializer, whose last
    /// expression happens to be a value (`try reactor.listen(...)`), still means "returns
    /// nothing".
    public init(
        name: String = "reactor", logger: Logger = Logger(label: "reactor"),
        shutdownTimeout: Duration = .seconds(10), outputBudget: Int = Reactor.defaultOutputBudget,
        returning: Value.Type, setup: @escaping @Sendable (Reactor) throws -> Value
    ) {
        self.init(
            name: name, threads: 1, logger: logger, shutdownTimeout: shutdownTimeout, outputBudget: outputBudget,
            setup: .reactor(setup))
    }

    private init(name: String, threads: Int, logger: Logger, shutdownTimeout: Duration, outputBudget: Int, setup: Setup) {
        self.name = name
        self.threads = threads
        self.logger = logger
        self.shutdownTimeout = shutdownTimeout
        self.outputBudget = outputBudget
        self.setup = setup
    }

    public var description: String { name }

    /// Suspends until ``run()`` has set the reactor up (waiting for `run()` to be called if
    /// need be), then returns its handle and what `setup` returned.
    ///
    /// - Throws: the error `setup` (or creating the reactor) threw; `CancellationError`
    ///   when the waiting task is cancelled first.
    public func started() async throws -> Started {
        try await startup.wait()
    }

    public func run() async throws {
        guard startup.claim() else {
            throw ReactorError(.invalidState, operation: .run, hint: "a ReactorService runs once; make a new one")
        }
        guard case .reactor(let setup) = self.setup else { return try await runGroup() }
        let thread: ReactorThread
        do {
            let (started, value) = try await ReactorThread.spawn(
                name: name, logger: logger, outputBudget: outputBudget, setup: setup)
            thread = started
            startup.finish(.success(Started(handles: [started.handle], value: value)))
        } catch {
            startup.finish(.failure(error))
            throw error
        }
        let handle = thread.handle
        let timeout = shutdownTimeout
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await thread.stopped()
            } onGracefulShutdown: {
                handle.shutdownGracefully(timeout: timeout)
            }
        } onCancel: {
            handle.stop()
        }
        thread.join()
    }

    private func runGroup() async throws {
        guard case .group(let setup) = self.setup else { return }
        let group: ReactorGroup
        do {
            group = try ReactorGroup(count: threads, name: name, logger: logger, outputBudget: outputBudget)
            do {
                startup.finish(.success(Started(handles: group.handles, value: try setup(group))))
            } catch {
                group.stop()
                throw error
            }
        } catch {
            startup.finish(.failure(error))
            throw error
        }
        let timeout = shutdownTimeout
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await group.stopped()
            } onGracefulShutdown: {
                group.shutdownGracefully(timeout: timeout)
            }
        } onCancel: {
            for handle in group.handles { handle.stop() }
        }
        group.join()
    }
}

extension ReactorService where Value == Void {
    /// A service that runs `setup` on a new reactor, then the reactor's loop; ``started()``
    /// gives the reactor's handle.
    public init(
        name: String = "reactor", logger: Logger = Logger(label: "reactor"),
        shutdownTimeout: Duration = .seconds(10), outputBudget: Int = Reactor.defaultOutputBudget,
        setup: @escaping @Sendable (Reactor) throws -> Void
    ) {
        self.init(
            name: name, threads: 1, logger: logger, shutdownTimeout: shutdownTimeout, outputBudget: outputBudget,
            setup: .reactor(setup))
    }

    /// A service that starts a `ReactorGroup` of `threads` reactors, runs
    /// `setup` with it (on the task's thread, which it blocks while the group's sockets
    /// open), then waits for the group to stop; ``started()`` gives every reactor's handle.
    ///
    /// ```swift
    /// let echo = ReactorService(name: "echo", threads: ReactorGroup.availableCPUs) { group in
    ///     try group.listen(host: "0.0.0.0", port: 7007) { _ in { _ in EchoHandler() } }
    /// }
    /// ```
    public init(
        name: String = "reactor", threads: Int, logger: Logger = Logger(label: "reactor"),
        shutdownTimeout: Duration = .seconds(10), outputBudget: Int = Reactor.defaultOutputBudget,
        setup: @escaping @Sendable (ReactorGroup) throws -> Void
    ) {
        self.init(
            name: name, threads: threads, logger: logger, shutdownTimeout: shutdownTimeout, outputBudget: outputBudget,
            setup: .group(setup))
    }
}

/// The outcome of a service's setup, shared by its copies (a `Service` is a value), and
/// the tasks waiting for it.
private final class Startup<Started: Sendable>: Sendable {
    private struct State {
        var claimed = false
        var outcome: Result<Started, any Error>?
        var waiters: [Int: CheckedContinuation<Started, any Error>] = [:]
        var nextWaiter = 0
    }
    private let state = Mutex(State())

    /// True for the first `run()` only.
    func claim() -> Bool {
        state.withLock { state in
            defer { state.claimed = true }
            return !state.claimed
        }
    }

    func finish(_ outcome: Result<Started, any Error>) {
        let waiters = state.withLock { state in
            state.outcome = outcome
            defer { state.waiters.removeAll() }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(with: outcome) }
    }

    func wait() async throws -> Started {
        let id = state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let outcome = state.withLock { state -> Result<Started, any Error>? in
                    if let outcome = state.outcome { return outcome }
                    if Task.isCancelled { return .failure(CancellationError()) }
                    state.waiters[id] = continuation
                    return nil
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(throwing: CancellationError())
        }
    }
}
