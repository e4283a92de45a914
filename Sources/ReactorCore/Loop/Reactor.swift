import Glibc
import Logging

/// A single-threaded event loop over libevent (epoll on Linux).
///
/// A reactor and everything created from it (listeners, connections, timers, signal
/// watchers) belong to the thread that runs it: create it there, call ``run()`` there,
/// and touch its objects only from its callbacks. Other threads reach it through
/// ``handle``, a `Sendable` ``ReactorHandle``. While it runs, a call from another thread
/// traps: always for the reactor's own methods, in debug builds for its objects' (see
/// docs/architecture.md, "Thread confinement").
///
/// ```swift
/// let reactor = try Reactor()
/// let listener = try reactor.listen(host: "127.0.0.1", port: 0) { _ in EchoHandler() }
/// print("listening on \(listener.address)")
/// try reactor.onSignal(SIGINT) { reactor.shutdownGracefully() }
/// try reactor.run()
/// ```
///
/// `run()` blocks until ``stop()``; when it returns, the reactor has closed every
/// connection, listener, timer and signal watcher. A stopped reactor cannot run again.
public final class Reactor {
    /// The size of the buffer every read lands in, shared by all connections.
    public static let defaultReadBufferSize = 64 * 1024
    /// The default ``outputBudget``: 64 MiB.
    public static let defaultOutputBudget = 64 * 1024 * 1024

    /// Where the reactor is in its life.
    public enum State: Sendable, Equatable {
        /// Created, not yet running: set up listeners and timers now.
        case ready
        /// Inside ``Reactor/run()``.
        case running
        /// ``Reactor/run()`` has returned; everything is closed.
        case stopped
    }

    /// The logger the reactor and its sockets write to.
    public let logger: Logger

    /// Where the reactor is in its life.
    public private(set) var state: State = .ready

    /// The most output all connections together may hold queued (bytes the kernel has not
    /// taken) before the ones adding to it are throttled: a connection that queues output
    /// while the total is over the budget stops reading and is not writable until the
    /// total falls to half the budget or its own queue empties. Peers that never read
    /// their replies cannot push memory past it by more than one read's output each.
    public var outputBudget: Int { budget.limit }
    /// Bytes queued in all connections' output queues: with ``throttledConnectionCount``,
    /// the output budget's gauge for operators (docs/operations.md).
    public var queuedOutputBytes: Int { budget.queued }
    /// The output budget's state and rules.
    @exclusivity(unchecked) package var budget: OutputBudget

    let base: EventBase
    let readBuffer: UnsafeMutableRawBufferPointer
    /// Storage for every connection's byte queues, shared so they need not call malloc.
    package let bufferPool = BufferPool()
    /// The libevent events lent to connections while they wait to write.
    let spareEvents = SpareEvents()
    /// The idle timeouts of connections, one wheel per timeout value (``IdleWheel``).
    var idleWheels: [IdleWheel] = []
    /// The counts behind ``counters``, added to on the I/O paths.
    @exclusivity(unchecked) package var tally = ReactorTally()

    /// Everything open on this reactor.
    var registry = Registry()
    /// The number of open TCP connections, accepted and outgoing.
    public var connectionCount: Int { registry.connectionCount }
    var datagramReceiveArea: DatagramArea?

    let timers = TimerQueue()
    /// The reactor's own events: the earliest timer, the `runSoon` queue, the mailbox.
    private var events = LoopEvents(count: 3)
    private static let timerEvent = 0
    private static let soonEvent = 1
    private static let mailboxEvent = 2
    private var soonQueue: [() -> Void] = []
    let mailbox: Mailbox
    /// The reactor as a Swift concurrency executor (``ReactorExecutor``): for actors whose
    /// state lives on this reactor's thread, and tasks that prefer to run there.
    public let executor: ReactorExecutor
    /// Executor jobs being run; the mailbox's queue and this one swap, so neither allocates.
    private var executorJobs: [Mailbox.ExecutorJobEntry] = []
    /// True while executor jobs run: connections may hold their writes until they end.
    package private(set) var isRunningJobs = false
    /// Counts the runs of executor jobs (starting at 1): a writer can tell whether it
    /// wrote before in the run going on.
    package private(set) var executorJobRuns: UInt64 = 0
    /// The connections holding writes until the jobs end (`Connection.holdWritesUntilJobsEnd`).
    private var heldConnections: [Connection] = []
    private var releasingConnections: [Connection] = []
    private var shutdownDeadline: ReactorTimer?
    private var stopRequested = false
    /// True from ``shutdownGracefully(timeout:)`` on.
    package private(set) var isShuttingDown = false
    /// The thread inside ``run()``, recorded when it starts.
    private var loopThread: pthread_t = 0

    /// Creates a reactor on an epoll-backed libevent base.
    ///
    /// - Parameters:
    ///   - logger: where the reactor logs (accept pauses, dropped connections, ...).
    ///   - readBufferSize: the size of the shared read buffer; each read takes at most this much.
    ///   - outputBudget: see ``outputBudget`` (default 64 MiB).
    ///   - preciseTimers: timers to the microsecond rather than the millisecond: epoll
    ///     waits in whole milliseconds, rounded up, so a timer otherwise fires up to 1 ms
    ///     late; precise timers go through a timerfd instead, at one more syscall per
    ///     loop iteration that waits for a timer. Off by default; a load generator's
    ///     open-loop schedule wants them.
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/eventBackend`` when libevent
    ///   cannot give an epoll base.
    public init(
        logger: Logger = Logger(label: "reactor"), readBufferSize: Int = Reactor.defaultReadBufferSize,
        outputBudget: Int = Reactor.defaultOutputBudget, preciseTimers: Bool = false
    ) throws(ReactorError) {
        precondition(readBufferSize > 0, "readBufferSize must be positive")
        precondition(outputBudget > 0, "outputBudget must be positive")
        // A write to a socket whose peer has gone raises SIGPIPE, which kills the
        // process by default. Sends use MSG_NOSIGNAL; this covers every other path.
        signal(SIGPIPE, SIG_IGN)

        let base = try EventBase(preciseTimers: preciseTimers)
        self.base = base
        self.logger = logger
        self.budget = OutputBudget(limit: outputBudget)
        self.readBuffer = .allocate(byteCount: readBufferSize, alignment: 16)
        do {
            self.mailbox = try Mailbox()
        } catch {
            readBuffer.deallocate()
            base.free()
            throw error
        }
        self.executor = ReactorExecutor(mailbox: mailbox)
        executor.attach(self)

        events.assign(Reactor.timerEvent, on: base, .timer, owner: self) { _, _, context in
            LoopEvents.withOwner(context, Reactor.self) { $0.fireTimers() }
        }
        events.assign(Reactor.soonEvent, on: base, .timer, owner: self) { _, _, context in
            LoopEvents.withOwner(context, Reactor.self) { $0.runSoonQueue() }
        }
        events.assign(Reactor.mailboxEvent, on: base, .readable(mailbox.fd), owner: self) { _, what, context in
            LoopEvents.withOwner(context, Reactor.self) { $0.drainMailbox(eventfdReadable: LoopEvents.readable(what)) }
        }
        events.arm(Reactor.mailboxEvent)
    }

    deinit {
        mailbox.closeDropping()
        tearDown()
        events.disarmAll()
        base.free()
        readBuffer.deallocate()
    }

    /// The libevent backend in use: always `epoll`.
    package var backendMethod: String { base.method }

    /// A `Sendable` handle through which other threads can run work on this reactor or stop it.
    public var handle: ReactorHandle { ReactorHandle(executor: executor) }

    /// Runs the loop on the calling thread until ``stop()``, then closes everything the reactor owns.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/reactorStopped`` when the
    ///   reactor already ran and stopped (make a new one), or ``ReactorError/Code/invalidState``
    ///   when called from inside `run()`.
    public func run() throws(ReactorError) {
        switch state {
        case .running:
            throw ReactorError(.invalidState, operation: .run, hint: "run() is already running on this reactor")
        case .stopped:
            throw ReactorError(.reactorStopped, operation: .run, hint: "a reactor runs once: create a new Reactor")
        case .ready:
            break
        }
        loopThread = pthread_self()
        executor.runs(on: loopThread)
        state = .running
        armTimerEvent()
        // event_base_loop clears libevent's own break flag on entry, so a stop() that
        // came before run() is remembered here.
        let succeeded = stopRequested || base.loop()
        tearDown()
        if !succeeded {
            throw ReactorError(.eventBackend, operation: .run, hint: "event_base_loop failed")
        }
    }

    /// Makes ``run()`` return after the callback that is running now.
    ///
    /// Connections still open are aborted when `run()` returns; use
    /// ``shutdownGracefully(timeout:)`` to let them flush first. Calling `stop()` before
    /// `run()` makes `run()` return at once.
    public func stop() {
        preconditionInLoop()
        stopRequested = true
        base.breakLoop()
    }

    /// Stops accepting, closes every connection gracefully, and stops the reactor when all
    /// are closed, or after `timeout`, aborting any still open.
    ///
    /// Listeners first accept every connection already waiting in their backlog, so none
    /// is reset by the close; each of those, and each open connection that has received
    /// nothing yet, is served until its first input is answered (or for 1 s when none
    /// comes). Every other connection gets its input that has arrived already read and
    /// answered, then closes (flush, then close).
    public func shutdownGracefully(timeout: Duration = .seconds(10)) {
        preconditionInLoop()
        guard shutdownDeadline == nil, state != .stopped else { return }
        isShuttingDown = true
        let open = registry.connections
        for entry in registry.entries(where: \.opensConnections) {
            if case .listener(let listener) = entry { listener.drainAndClose() } else { entry.close() }
        }
        for connection in open { connection?.closeForShutdown() }
        shutdownDeadline = schedule(after: timeout) { [unowned self] _ in
            if connectionCount > 0 {
                logger.warning("shutdown: \(connectionCount) connection(s) did not close within \(timeout); aborting them")
            }
            stop()
        }
        stopIfShutDown()
    }

    /// Runs `body` on this reactor after the current callback returns, in the same loop turn.
    ///
    /// Work queued from inside such a closure runs on the next pass, so a closure that
    /// requeues itself cannot starve I/O.
    public func runSoon(_ body: @escaping () -> Void) {
        preconditionInLoop()
        soonQueue.append(body)
        if soonQueue.count == 1 { events.activate(Reactor.soonEvent) }
    }

    // MARK: - Thread confinement

    /// True on the thread inside ``run()``, and on any thread while the reactor is not
    /// running (set up before `run()`, inspect after it returns).
    var isInLoop: Bool {
        state != .running || pthread_equal(loopThread, pthread_self()) != 0
    }

    /// Debug builds: traps when called from another thread while the reactor runs. For
    /// the hot paths of the objects a reactor owns, where a release-build check would cost.
    @inline(__always)
    func assertInLoop(_ function: StaticString = #function) {
        assert(isInLoop, "\(function) called off the reactor's thread while it runs: use reactor.handle")
    }

    /// Traps, in release builds too, when called from another thread while the reactor
    /// runs: for calls that would corrupt the reactor's state and are not on a hot path.
    @inline(__always)
    func preconditionInLoop(_ function: StaticString = #function) {
        precondition(isInLoop, "\(function) called off the reactor's thread while it runs: use reactor.handle")
    }

    // MARK: - Registry

    func register(_ connection: Connection) {
        registry.insert(connection)
    }

    func unregister(_ connection: Connection) {
        guard registry.remove(connection) else { return }
        if shutdownDeadline != nil { stopIfShutDown() }
    }

    func registerProxyHeader(_ reader: ProxyHeaderReader) {
        registry.insert(.proxyHeader(reader))
        registry.proxyHeaderCount += 1
    }

    func unregisterProxyHeader(_ reader: ProxyHeaderReader) {
        registry.remove(reader)
        registry.proxyHeaderCount -= 1
        if shutdownDeadline != nil { stopIfShutDown() }
    }

    /// Closes every listener and UDP socket, and cancels every connect in progress.
    private func stopOpeningConnections() {
        for entry in registry.entries(where: \.opensConnections) { entry.close() }
    }

    private func stopIfShutDown() {
        if connectionCount == 0, registry.proxyHeaderCount == 0 {
            shutdownDeadline?.cancel()
            stop()
        }
    }

    // MARK: - Timers

    /// Schedules `body` to run once after `delay`, or every `interval` if given.
    ///
    /// Timers fire in deadline order; timers with the same deadline fire in the order they
    /// were scheduled. Scheduling and cancelling from inside any callback, including the
    /// timer's own, is safe. A repeating timer keeps its cadence: if the loop falls behind,
    /// missed ticks are skipped rather than run in a burst.
    @discardableResult
    public func schedule(
        after delay: Duration, repeating interval: Duration? = nil, _ body: @escaping (ReactorTimer) -> Void
    ) -> ReactorTimer {
        preconditionInLoop()
        let timer = ReactorTimer(
            reactor: self, deadline: Reactor.now &+ delay.nanoseconds,
            interval: interval.map { Swift.max($0.nanoseconds, 1) }, body: body)
        if state != .stopped {
            timers.insert(timer)
            armTimerEvent()
        }
        return timer
    }

    func cancel(_ timer: ReactorTimer) {
        guard timer.heapIndex >= 0 else { return }
        timers.remove(timer)
        armTimerEvent()
    }

    /// Monotonic time in nanoseconds (CLOCK_MONOTONIC, a vDSO call: no system call): the
    /// clock the reactor's timers run on, for timestamps to compare with them or each other.
    public static var now: UInt64 { System.monotonicNanoseconds }
    static var coarseNow: UInt64 { System.coarseMonotonicNanoseconds }

    private func armTimerEvent() {
        guard !timers.isFiring, let next = timers.first else {
            if timers.isEmpty { events.disarm(Reactor.timerEvent) }
            return
        }
        let now = Reactor.now
        // Rounded up to the next microsecond, so the timer never fires a hair early and spins.
        events.arm(Reactor.timerEvent, timeout: next.deadline > now ? next.deadline - now : 0)
    }

    private func fireTimers() {
        timers.fireDue(now: Reactor.now)
        armTimerEvent()
    }

    /// Runs the work queued with ``runSoon(_:)`` and the timers that are due, here and now,
    /// without the loop: for tests that drive connections in memory on their own thread
    /// (`EmbeddedConnection` in ReactorTestSupport). Returns whether anything ran.
    package func runPendingWork() -> Bool {
        var ran = false
        if !soonQueue.isEmpty {
            runSoonQueue()
            ran = true
        }
        if !timers.isFiring, let next = timers.first, next.deadline <= Reactor.now {
            fireTimers()
            ran = true
        }
        return ran
    }

    // MARK: - Deferred work and the mailbox

    private func runSoonQueue() {
        let batch = soonQueue
        soonQueue.removeAll(keepingCapacity: true)
        for body in batch { body() }
        if !soonQueue.isEmpty { events.activate(Reactor.soonEvent) }
    }

    private func drainMailbox(eventfdReadable: Bool) {
        for job in mailbox.take(jobs: &executorJobs, eventfdReadable: eventfdReadable) { job(self) }
        runExecutorJobs()
    }

    /// Runs the executor jobs taken from the mailbox, then sends what they held back.
    private func runExecutorJobs() {
        executorJobRuns &+= 1
        isRunningJobs = true
        executor.run(&executorJobs)
        isRunningJobs = false
        guard !heldConnections.isEmpty else { return }
        // Swapped out: a flush reaches handlers, which may write (not held: no jobs run).
        swap(&heldConnections, &releasingConnections)
        for connection in releasingConnections { connection.releaseHeldWrites() }
        releasingConnections.removeAll(keepingCapacity: true)
    }

    func holdUntilJobsEnd(_ connection: Connection) {
        heldConnections.append(connection)
    }

    /// An executor job was enqueued on this thread while none were pending: drain the
    /// mailbox on this loop pass, with no eventfd write.
    func wakeForJobs() {
        events.activate(Reactor.mailboxEvent)
    }

    // MARK: - Teardown

    private func tearDown() {
        guard state != .stopped else { return }
        state = .stopped
        // Work other threads queued before this point was promised to run; later posts
        // are refused.
        for job in mailbox.close() { job(self) }
        stopOpeningConnections()
        for connection in registry.connections { connection?.abortForTeardown() }
        for entry in registry.entries(where: { !$0.opensConnections }) { entry.close() }
        // Kept, not dropped: connections over memory (tests) are not in the registry and may
        // still be filed in one. Their sweepers hold this reactor.
        for wheel in idleWheels { wheel.stop() }
        timers.removeAll()
        // The deadline's timer holds this reactor strongly: kept, it would be a cycle that
        // outlives every user's reference (LeakSanitizer found it).
        shutdownDeadline = nil
        events.disarm(Reactor.timerEvent)
        runSoonQueue()
        // Tasks resumed by the closes above (a connection's reader, say) run now, with the
        // deferred work they queue; then the executor closes. Without executor jobs this
        // is the one pass of deferred work above, as before.
        mailbox.takeExecutorJobs(&executorJobs)
        while !executorJobs.isEmpty {
            runExecutorJobs()
            runSoonQueue()
            mailbox.takeExecutorJobs(&executorJobs)
        }
        mailbox.closeExecutor(&executorJobs)
        runExecutorJobs()
        soonQueue.removeAll()
        bufferPool.drain()
    }
}

extension Duration {
    /// The duration in whole nanoseconds (negative durations give 0).
    package var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        return UInt64(seconds) &* 1_000_000_000 &+ UInt64(attoseconds / 1_000_000_000)
    }
}
