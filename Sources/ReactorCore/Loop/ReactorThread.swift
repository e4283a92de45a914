import Dispatch
import Glibc
import Logging
import Synchronization

/// A reactor running on a thread of its own: the way to embed a reactor in a program
/// whose main thread does something else, and the way tests run one.
///
/// ```swift
/// let (thread, port) = try ReactorThread.start { reactor in
///     try reactor.listen(host: "127.0.0.1", port: 0) { _ in EchoHandler() }.address.port
/// }
/// // ... use the server ...
/// thread.stop()   // stops the loop and waits for the thread to finish
/// ```
public final class ReactorThread: Sendable {
    /// The handle of the reactor running on the thread.
    public let handle: ReactorHandle
    private let thread: pthread_t
    private let finished: Finished

    private init(handle: ReactorHandle, thread: pthread_t, finished: Finished) {
        self.handle = handle
        self.thread = thread
        self.finished = finished
    }

    /// Starts a thread, creates a ``Reactor`` on it, runs `setup` there, then runs the
    /// loop. Returns once `setup` has returned, with its result; the calling thread blocks
    /// until then (in async code, use ``spawn(name:logger:outputBudget:preciseTimers:cpu:setup:)``).
    ///
    /// - Parameters:
    ///   - name: the thread's name, as `top -H` and debuggers show it.
    ///   - logger: the reactor's logger.
    ///   - outputBudget: the reactor's ``Reactor/outputBudget``.
    ///   - preciseTimers: see ``Reactor/init(logger:readBufferSize:outputBudget:preciseTimers:)``.
    ///   - cpu: pin the thread to this CPU (numbered as the kernel numbers them), or nil
    ///     to let the scheduler move it.
    ///   - setup: runs on the new thread with its reactor before the loop starts: listen,
    ///     connect, schedule there; its result is returned.
    /// - Throws: whatever creating the reactor or `setup` throws, or ``ReactorError`` with
    ///   operation ``ReactorError/Operation/pinThread`` when the CPU cannot be had; the
    ///   thread has then ended.
    public static func start<T: Sendable>(
        name: String = "reactor", logger: Logger = Logger(label: "reactor"),
        outputBudget: Int = Reactor.defaultOutputBudget, preciseTimers: Bool = false, cpu: Int? = nil,
        setup: @escaping @Sendable (Reactor) throws -> T
    ) throws -> (ReactorThread, T) {
        let ready = DispatchSemaphore(value: 0)
        let box = StartupBox<T>()
        let thread = try launch(
            name: name, logger: logger, outputBudget: outputBudget, preciseTimers: preciseTimers, cpu: cpu, setup: setup
        ) {
            box.set($0)
            ready.signal()
        }
        ready.wait()
        return try thread.started(box.get()!)
    }

    /// The async form of ``start(name:logger:outputBudget:preciseTimers:cpu:setup:)``: suspends,
    /// without blocking a thread of the concurrency pool, until `setup` has run on the new
    /// reactor thread.
    ///
    /// - Throws: whatever creating the reactor or `setup` throws; the thread has then ended.
    public static func spawn<T: Sendable>(
        name: String = "reactor", logger: Logger = Logger(label: "reactor"),
        outputBudget: Int = Reactor.defaultOutputBudget, preciseTimers: Bool = false, cpu: Int? = nil,
        setup: @escaping @Sendable (Reactor) throws -> T
    ) async throws -> (ReactorThread, T) {
        let result = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<(Launched, Result<(ReactorHandle, T), any Error>), any Error>) in
            let launched = Launched()
            do {
                let thread = try launch(
            name: name, logger: logger, outputBudget: outputBudget, preciseTimers: preciseTimers, cpu: cpu, setup: setup
        ) {
                    continuation.resume(returning: (launched, $0))
                }
                launched.set(thread)
            } catch {
                continuation.resume(throwing: error)
            }
        }
        let (launched, outcome) = result
        let thread = launched.get()
        if case .failure = outcome { await thread.finished.wait() }
        return try thread.started(outcome)
    }

    /// Creates the thread, which makes a reactor, runs `setup`, calls `ready` with the
    /// outcome, and then (on success) runs the loop.
    private static func launch<T: Sendable>(
        name: String, logger: Logger, outputBudget: Int, preciseTimers: Bool, cpu: Int?,
        setup: @escaping @Sendable (Reactor) throws -> T,
        ready: @escaping @Sendable (Result<(ReactorHandle, T), any Error>) -> Void
    ) throws -> Pending {
        let finished = Finished()
        let body = Unmanaged.passRetained(ThreadBody {
            System.setThreadName(name)
            defer { finished.signal() }
            let reactor: Reactor
            do {
                if let cpu {
                    let status = System.pinThread(toCPU: cpu)
                    guard status == 0 else {
                        var error = ReactorError(errno: status, operation: .pinThread)
                        error.hint = "CPU \(cpu) is not one this process may use (\(System.availableCPUs) available, see taskset)"
                        throw error
                    }
                }
                reactor = try Reactor(logger: logger, outputBudget: outputBudget, preciseTimers: preciseTimers)
                let value = try setup(reactor)
                ready(.success((reactor.handle, value)))
            } catch {
                ready(.failure(error))
                return
            }
            do {
                try reactor.run()
            } catch {
                reactor.logger.error("\(error)")
            }
        })
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { context in
            let body = Unmanaged<ThreadBody>.fromOpaque(context!).takeRetainedValue()
            body.run()
            return nil
        }, body.toOpaque())
        guard status == 0 else {
            body.release()
            throw ReactorError(errno: status, operation: .createReactor)
        }
        return Pending(thread: thread, finished: finished)
    }

    /// A thread made by `launch` whose setup has not reported yet.
    private struct Pending: @unchecked Sendable {
        // pthread_t is a plain integer on Linux; the struct only carries it to the waiter.
        let thread: pthread_t
        let finished: Finished

        func started<T>(_ outcome: Result<(ReactorHandle, T), any Error>) throws -> (ReactorThread, T) {
            switch outcome {
            case .success(let (handle, value)):
                return (ReactorThread(handle: handle, thread: thread, finished: finished), value)
            case .failure(let error):
                pthread_join(thread, nil)
                throw error
            }
        }
    }

    /// Hands the launched thread from inside the continuation's closure to the code after it.
    private final class Launched: Sendable {
        private let pending = Mutex<Pending?>(nil)
        func set(_ thread: Pending) { pending.withLock { $0 = thread } }
        func get() -> Pending { pending.withLock { $0! } }
    }

    /// Stops the reactor and waits for its thread to end.
    public func stop() {
        handle.stop()
        join()
    }

    /// Waits for the reactor thread to end (after something stopped the reactor).
    public func join() {
        pthread_join(thread, nil)
    }

    /// Suspends until the reactor has stopped and torn down, without blocking a thread.
    public func stopped() async {
        await finished.wait()
    }
}

private final class ThreadBody: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

private final class StartupBox<T: Sendable>: @unchecked Sendable {
    // Written once by the reactor thread before the semaphore signals; read after the wait.
    private var result: Result<(ReactorHandle, T), any Error>?
    func set(_ value: Result<(ReactorHandle, T), any Error>) { result = value }
    func get() -> Result<(ReactorHandle, T), any Error>? { result }
}

/// Set once when the reactor thread's loop has returned; wakes async waiters.
private final class Finished: Sendable {
    private let state = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func signal() {
        let waiters = state.withLock { state in
            state.done = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state in
                if !state.done { state.waiters.append(continuation) }
                return state.done
            }
            if done { continuation.resume() }
        }
    }
}
