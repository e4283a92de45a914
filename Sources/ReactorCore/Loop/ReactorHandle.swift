import Glibc
import Synchronization

/// The one way into a ``Reactor`` from other threads. It is `Sendable`: copy it anywhere.
///
/// ```swift
/// let handle = reactor.handle
/// Thread { handle.execute { reactor in reactor.logger.info("hello from the loop") } }
/// ```
///
/// Work runs on the reactor thread in submission order, and wakes the loop at once.
/// Work accepted (`execute` returned true) always runs: if the reactor stops first, it
/// runs as the reactor shuts down, with ``Reactor/state`` already `.stopped`. After
/// that, `execute` returns false and the work is not run.
public struct ReactorHandle: Sendable {
    let mailbox: Mailbox

    /// Queues `work` to run on the reactor thread, after work submitted before it.
    ///
    /// - Returns: false when the reactor has stopped, in which case `work` never runs.
    @discardableResult
    public func execute(_ work: @escaping @Sendable (Reactor) -> Void) -> Bool {
        mailbox.post(work)
    }

    /// Runs `work` on the reactor thread and returns its result.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/reactorStopped`` when the
    ///   reactor stopped before running it, or whatever `work` throws.
    public func submit<T: Sendable>(_ work: @escaping @Sendable (Reactor) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let once = Mailbox.Once(continuation)
            let posted = mailbox.post(
                { reactor in once.resume(with: Result { try work(reactor) }) },
                onDrop: { once.resume(with: .failure(ReactorError(.reactorStopped, operation: .execute))) })
            if !posted {
                once.resume(with: .failure(ReactorError(.reactorStopped, operation: .execute)))
            }
        }
    }

    /// Stops the reactor from any thread: ``Reactor/run()`` returns after the callback
    /// running now, aborting open connections.
    public func stop() {
        execute { $0.stop() }
    }

    /// Starts a graceful shutdown from any thread; see ``Reactor/shutdownGracefully(timeout:)``.
    public func shutdownGracefully(timeout: Duration = .seconds(10)) {
        execute { $0.shutdownGracefully(timeout: timeout) }
    }
}

/// A queue of closures guarded by a mutex, with an eventfd that wakes the loop on the
/// first post after each drain. Only one wake-up is written per drain, however many
/// threads post.
final class Mailbox: Sendable {
    typealias Job = @Sendable (Reactor) -> Void

    private struct State {
        var jobs: [Job] = []
        var dropHandlers: [@Sendable () -> Void] = []
        var wakePending = false
        var closed = false
    }

    let fd: Int32
    private let state = Mutex(State())

    init() throws(ReactorError) {
        let fd = System.eventfd()
        guard fd >= 0 else { throw ReactorError(errno: errno, operation: .createReactor) }
        self.fd = fd
    }

    deinit {
        Glibc.close(fd)
    }

    /// Adds a job; `onDrop` runs instead if the reactor stops before the job does.
    func post(_ job: @escaping Job, onDrop: (@Sendable () -> Void)? = nil) -> Bool {
        state.withLock { state in
            guard !state.closed else { return false }
            state.jobs.append(job)
            if let onDrop { state.dropHandlers.append(onDrop) }
            if !state.wakePending {
                state.wakePending = true
                // Written under the lock so close() cannot race it onto a reused descriptor.
                var one: UInt64 = 1
                _ = Glibc.write(fd, &one, 8)
            }
            return true
        }
    }

    /// Takes every queued job, in order; called on the reactor thread when the eventfd fires.
    func take() -> [Job] {
        var counter: UInt64 = 0
        _ = Glibc.read(fd, &counter, 8)
        return state.withLock { state in
            state.wakePending = false
            return Mailbox.takeJobs(&state)
        }
    }

    /// Refuses further posts and returns the jobs still queued, to run now.
    func close() -> [Job] {
        state.withLock { state in
            state.closed = true
            return Mailbox.takeJobs(&state)
        }
    }

    /// Empties the queue; the jobs taken will run, so nobody needs telling of a drop.
    private static func takeJobs(_ state: inout State) -> [Job] {
        state.dropHandlers.removeAll()
        defer { state.jobs.removeAll() }
        return state.jobs
    }

    /// Refuses further posts and drops the queued jobs, telling their submitters; for a
    /// reactor freed without running, which cannot lend itself to the jobs.
    func closeDropping() {
        let handlers = state.withLock { state in
            state.closed = true
            state.jobs.removeAll()
            defer { state.dropHandlers.removeAll() }
            return state.dropHandlers
        }
        for handler in handlers { handler() }
    }

    /// Resumes a continuation exactly once, from whichever side gets there first.
    final class Once<T: Sendable>: Sendable {
        private let continuation: Mutex<CheckedContinuation<T, any Error>?>

        init(_ continuation: CheckedContinuation<T, any Error>) {
            self.continuation = Mutex(continuation)
        }

        func resume(with result: Result<T, any Error>) {
            let taken = continuation.withLock { value in
                defer { value = nil }
                return value
            }
            taken?.resume(with: result)
        }
    }
}
