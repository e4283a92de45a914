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
    /// The reactor as a Swift concurrency executor: for actors whose state lives on the
    /// reactor thread, and tasks that prefer to run there.
    public let executor: ReactorExecutor
    var mailbox: Mailbox { executor.mailbox }

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
        /// Swift concurrency jobs (``ReactorExecutor``), a queue of their own: a closure
        /// around each would cost an allocation per job.
        var executorJobs: [ExecutorJobEntry] = []
        /// A drain is coming: the eventfd is being written, or the loop's own thread
        /// activated the mailbox event.
        var wakePending = false
        var closed = false
        /// Closed for executor jobs: later than for closures, at the end of teardown,
        /// so that tasks resumed by closing connections still run.
        var executorClosed = false
    }

    /// A Swift concurrency job, and whether it came as the task executor a task prefers
    /// (``ReactorExecutor/asUnownedTaskExecutor()``) rather than as an actor's executor.
    struct ExecutorJobEntry {
        let job: UnownedJob
        let preferred: Bool
    }

    /// What became of an executor job.
    enum Enqueued {
        case queued
        /// Queued on the loop's own thread as the first since a drain: the caller wakes
        /// the loop by activating its event, with no system call.
        case queuedWakeLoop
        /// The reactor has torn down: the caller runs the job elsewhere.
        case closed
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
        let (posted, wake) = state.withLock { state in
            guard !state.closed else { return (false, false) }
            state.jobs.append(job)
            if let onDrop { state.dropHandlers.append(onDrop) }
            return (true, Mailbox.claimWake(&state))
        }
        if wake { writeEventfd() }
        return posted
    }

    /// Adds a Swift concurrency job. On the loop's own thread no eventfd is written: the
    /// caller activates the loop's event instead.
    func enqueue(_ job: ExecutorJobEntry, onLoopThread: Bool) -> Enqueued {
        let (enqueued, wake) = state.withLock { state -> (Enqueued, Bool) in
            guard !state.executorClosed else { return (.closed, false) }
            state.executorJobs.append(job)
            guard Mailbox.claimWake(&state) else { return (.queued, false) }
            return onLoopThread ? (.queuedWakeLoop, false) : (.queued, true)
        }
        if wake { writeEventfd() }
        return enqueued
    }

    /// True for the first post since a drain, which wakes the loop.
    private static func claimWake(_ state: inout State) -> Bool {
        guard !state.wakePending else { return false }
        state.wakePending = true
        return true
    }

    /// Wakes the loop. Not under the lock: the loop the write wakes takes the lock at
    /// once, and found it held by the writer, still in its system call; it spun, then
    /// slept on it, and a hop from another thread cost 3.5 times the CPU it costs now
    /// (Benchmarks/async/executor-bench.sh, `hop`; docs/async.md, "Performance"). The
    /// descriptor stays open while anyone can call this: only `deinit` closes it.
    private func writeEventfd() {
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }

    /// Takes every queued closure, in order, and swaps the queued executor jobs into
    /// `jobs` (an empty array whose capacity the queue takes over); called on the reactor
    /// thread when the mailbox event fires, `eventfdReadable` when it fired for the
    /// eventfd (not only activated from the loop's own thread).
    func take(jobs: inout [ExecutorJobEntry], eventfdReadable: Bool) -> [Job] {
        // Read before the flag is cleared: a post in between either finds a wake pending
        // or writes again, and the eventfd stays readable for the next pass. A write
        // that lands after a drain which took its job only costs a pass with nothing to do.
        if eventfdReadable {
            var counter: UInt64 = 0
            _ = Glibc.read(fd, &counter, 8)
        }
        return state.withLock { state in
            state.wakePending = false
            swap(&state.executorJobs, &jobs)
            return Mailbox.takeJobs(&state)
        }
    }

    /// Swaps the queued executor jobs into `jobs`, for teardown.
    func takeExecutorJobs(_ jobs: inout [ExecutorJobEntry]) {
        state.withLock { swap(&$0.executorJobs, &jobs) }
    }

    /// True once ``closeExecutor(_:)`` has run.
    var isExecutorClosed: Bool { state.withLock { $0.executorClosed } }

    /// Refuses further executor jobs and swaps those still queued into `jobs`, to run now.
    func closeExecutor(_ jobs: inout [ExecutorJobEntry]) {
        state.withLock { state in
            state.executorClosed = true
            swap(&state.executorJobs, &jobs)
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
        let (handlers, executorJobs) = state.withLock { state in
            state.closed = true
            state.executorClosed = true
            state.jobs.removeAll()
            defer {
                state.dropHandlers.removeAll()
                state.executorJobs.removeAll()
            }
            return (state.dropHandlers, state.executorJobs)
        }
        for handler in handlers { handler() }
        // Tasks waiting for a reactor that never ran must not be lost.
        for entry in executorJobs { globalConcurrentExecutor.enqueue(ExecutorJob(entry.job)) }
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
