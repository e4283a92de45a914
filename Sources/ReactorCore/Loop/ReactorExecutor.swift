import Glibc
import Synchronization

/// A ``Reactor`` as a Swift concurrency executor: jobs enqueued on it run on the reactor
/// thread, between I/O callbacks, in the order they were enqueued.
///
/// It is a `SerialExecutor`, so an actor can keep its state on the reactor thread, next
/// to the connections it uses, with no locks:
///
/// ```swift
/// actor Counter {
///     let reactorExecutor: ReactorExecutor
///     nonisolated var unownedExecutor: UnownedSerialExecutor { reactorExecutor.asUnownedSerialExecutor() }
///     var hits = 0
///     init(on executor: ReactorExecutor) { reactorExecutor = executor }
///     func hit() -> Int { hits += 1; return hits }
/// }
/// ```
///
/// It is a `TaskExecutor` too: a task started with `Task(executorPreference: executor)`
/// (or code inside `withTaskExecutorPreference(executor)`) runs its nonisolated code on
/// the reactor thread, so it can await the reactor's callbacks without a thread hop.
///
/// Enqueueing from another thread costs a lock and, when the loop is asleep, one
/// `eventfd` write, shared by everything enqueued until the loop wakes; from the reactor
/// thread itself it costs the lock only. Neither allocates beyond the job: the queue
/// keeps its capacity between drains.
///
/// Jobs enqueued before ``Reactor/run()`` wait for it. Jobs still queued when the reactor
/// stops run while it tears down (their tasks see a stopped reactor and closed
/// connections); jobs enqueued after that go to Swift's global concurrent executor, so a
/// task is never lost, but an actor whose reactor has stopped is no longer serialized
/// and should not be used.
public final class ReactorExecutor: SerialExecutor, TaskExecutor, Sendable {
    let mailbox: Mailbox
    private let queue: JobQueue
    /// The serial side, which actors are handed (``asUnownedSerialExecutor()``): their jobs
    /// come in apart from those of tasks that prefer this executor, which come here.
    private let actors: ActorExecutor

    init(mailbox: Mailbox) {
        self.mailbox = mailbox
        queue = JobQueue(mailbox: mailbox)
        actors = ActorExecutor(queue: queue)
    }

    func attach(_ reactor: Reactor) {
        queue.reactor = reactor
    }

    func runs(on thread: pthread_t) {
        queue.thread.store(UInt(thread), ordering: .relaxed)
    }

    /// True on the reactor's thread (the thread that created it, and once it runs, the
    /// thread inside ``Reactor/run()``).
    public var isCurrentThread: Bool { queue.isCurrentThread }

    /// True once the reactor has torn down: jobs enqueued now run on the global concurrent
    /// executor, so code that hopped here to reach the reactor runs on another thread.
    package var hasStopped: Bool { mailbox.isExecutorClosed }

    /// Queues `job` to run on the reactor's thread, in order; from that thread itself the
    /// loop is not woken by a system call. Once the reactor has stopped, jobs go to the
    /// global concurrent executor so that no task is left suspended forever.
    public func enqueue(_ job: consuming ExecutorJob) {
        queue.enqueue(UnownedJob(job), preferred: true)
    }

    /// This executor as an actor's `unownedExecutor`.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: actors)
    }

    /// This executor as a task executor preference (`withTaskExecutorPreference`,
    /// `Task(executorPreference:)`).
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Traps, in release builds too, unless called on the reactor thread: what
    /// `actor.assumeIsolated` and `preconditionIsolated` rely on for an actor on this executor.
    public func checkIsolated() {
        queue.checkIsolated()
    }

    /// Whether the calling code runs on the reactor thread: the runtime's non-trapping form
    /// of ``checkIsolated()``.
    public func isIsolatingCurrentContext() -> Bool? {
        isCurrentThread
    }

    /// Runs `jobs` on the reactor thread and empties the array, keeping its capacity.
    ///
    /// A job of a task that prefers this executor runs with it as the task executor and
    /// no actor: code with no isolation (`isolation: nil`, a nonisolated async function)
    /// then runs in place, where with the reactor as its serial executor too every such
    /// call had switched through the mailbox (eleven jobs per async echo request). An
    /// actor's job runs with no task executor, as one on Swift's own executors does, so an
    /// actor calling another on the reactor runs it in place (docs/async.md, "The reactor
    /// as an executor").
    func run(_ jobs: inout [Mailbox.ExecutorJobEntry]) {
        let serial = asUnownedSerialExecutor()
        let task = asUnownedTaskExecutor()
        for entry in jobs {
            if entry.preferred {
                entry.job.runSynchronously(on: task)
            } else {
                entry.job.runSynchronously(on: serial)
            }
        }
        jobs.removeAll(keepingCapacity: true)
    }
}

/// What enqueueing takes, shared by the executor's two sides.
private final class JobQueue: Sendable {
    let mailbox: Mailbox
    /// The thread that owns the reactor: the one that created it, then the one inside `run()`.
    let thread = Atomic<UInt>(0)
    /// The reactor, to wake its loop without a system call when a job is enqueued from
    /// its own thread. Touched only on that thread, while the reactor is alive (the
    /// executor closes in teardown, before the reactor can be freed).
    nonisolated(unsafe) unowned(unsafe) var reactor: Reactor?

    init(mailbox: Mailbox) {
        self.mailbox = mailbox
        thread.store(UInt(pthread_self()), ordering: .relaxed)
    }

    var isCurrentThread: Bool {
        pthread_equal(pthread_t(thread.load(ordering: .relaxed)), pthread_self()) != 0
    }

    func checkIsolated() {
        precondition(isCurrentThread, "not on the reactor's thread: this code must run on the reactor (await the actor, or use reactor.handle)")
    }

    func enqueue(_ job: UnownedJob, preferred: Bool) {
        let onThread = isCurrentThread
        switch mailbox.enqueue(Mailbox.ExecutorJobEntry(job: job, preferred: preferred), onLoopThread: onThread) {
        case .queued:
            break
        case .queuedWakeLoop:
            reactor?.wakeForJobs()
        case .closed:
            globalConcurrentExecutor.enqueue(ExecutorJob(job))
        }
    }
}

/// The serial executor of actors on a ``ReactorExecutor``: the same mailbox, its jobs
/// marked as actors'. An object of its own because the runtime hands a task executor and
/// a serial executor their jobs through the one `enqueue` both protocols share. (Not the
/// other way round: a task that prefers an executor holds it, and releases the object
/// `asUnownedTaskExecutor()` names; serial executors are never retained.)
private final class ActorExecutor: SerialExecutor {
    let queue: JobQueue

    init(queue: JobQueue) {
        self.queue = queue
    }

    func enqueue(_ job: consuming ExecutorJob) {
        queue.enqueue(UnownedJob(job), preferred: false)
    }

    func checkIsolated() {
        queue.checkIsolated()
    }

    func isIsolatingCurrentContext() -> Bool? {
        queue.isCurrentThread
    }
}
