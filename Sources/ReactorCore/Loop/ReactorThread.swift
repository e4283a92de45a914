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
    /// loop. Returns once `setup` has returned, with its result.
    ///
    /// - Parameters:
    ///   - outputBudget: the reactor's ``Reactor/outputBudget``.
    ///   - preciseTimers: see ``Reactor/init(logger:readBufferSize:outputBudget:preciseTimers:)``.
    /// - Throws: whatever creating the reactor or `setup` throws; the thread has then ended.
    public static func start<T: Sendable>(
        name: String = "reactor", logger: Logger = Logger(label: "reactor"),
        outputBudget: Int = Reactor.defaultOutputBudget, preciseTimers: Bool = false,
        setup: @escaping @Sendable (Reactor) throws -> T
    ) throws -> (ReactorThread, T) {
        let ready = DispatchSemaphore(value: 0)
        let box = StartupBox<T>()
        let finished = Finished()
        let body = Unmanaged.passRetained(ThreadBody {
            System.setThreadName(name)
            defer { finished.signal() }
            let reactor: Reactor
            do {
                reactor = try Reactor(logger: logger, outputBudget: outputBudget, preciseTimers: preciseTimers)
                box.set(.success((reactor.handle, try setup(reactor))))
            } catch {
                box.set(.failure(error))
                ready.signal()
                return
            }
            ready.signal()
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
        ready.wait()
        switch box.get()! {
        case .success(let (handle, value)):
            return (ReactorThread(handle: handle, thread: thread, finished: finished), value)
        case .failure(let error):
            pthread_join(thread, nil)
            throw error
        }
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
