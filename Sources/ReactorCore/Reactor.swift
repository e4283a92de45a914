import CEvent
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// A single-threaded event loop over libevent (epoll on Linux).
///
/// A reactor and everything created from it (listeners, connections, timers, signal
/// watchers) belong to the thread that runs it: create it there, call ``run()`` there,
/// and touch its objects only from its callbacks. Other threads reach it through
/// ``handle``, a `Sendable` ``ReactorHandle``.
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
    public let outputBudget: Int
    /// Bytes queued in all connections' output queues.
    @exclusivity(unchecked) public internal(set) var queuedOutputBytes = 0
    /// Connections throttled by the output budget, in the order they were throttled.
    @exclusivity(unchecked) var throttledConnections: [Connection] = []
    var budgetReleaseScheduled = false
    var lastBudgetNotice: UInt64 = 0

    let base: OpaquePointer
    let readBuffer: UnsafeMutableRawBufferPointer
    /// Storage for every connection's byte queues, shared so they need not call malloc.
    package let bufferPool = BufferPool()
    let eventSize: Int

    private(set) var connections: [Connection?] = []
    /// The number of open TCP connections, accepted and outgoing.
    public private(set) var connectionCount = 0
    var listeners: [ObjectIdentifier: TCPListener] = [:]
    var signalWatchers: [ObjectIdentifier: SignalWatcher] = [:]
    var pendingConnects: [ObjectIdentifier: PendingConnect] = [:]
    var udpSockets: [ObjectIdentifier: UDPSocket] = [:]
    var datagramReceiveArea: DatagramArea?

    let timers = TimerQueue()
    private var timerEvent: OpaquePointer?
    private var soonEvent: OpaquePointer?
    private var soonQueue: [() -> Void] = []
    let mailbox: Mailbox
    private var mailboxEvent: OpaquePointer?
    private var shutdownDeadline: ReactorTimer?
    private var stopRequested = false

    /// Creates a reactor on an epoll-backed libevent base.
    ///
    /// - Parameters:
    ///   - logger: where the reactor logs (accept pauses, dropped connections, ...).
    ///   - readBufferSize: the size of the shared read buffer; each read takes at most this much.
    ///   - outputBudget: see ``outputBudget`` (default 64 MiB).
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/eventBackend`` when libevent
    ///   cannot give an epoll (Linux) or kqueue (BSD) base.
    public init(
        logger: Logger = Logger(label: "reactor"), readBufferSize: Int = Reactor.defaultReadBufferSize,
        outputBudget: Int = Reactor.defaultOutputBudget
    ) throws(ReactorError) {
        precondition(readBufferSize > 0, "readBufferSize must be positive")
        precondition(outputBudget > 0, "outputBudget must be positive")
        // A write to a socket whose peer has gone raises SIGPIPE, which kills the
        // process by default. Sends use MSG_NOSIGNAL; this covers every other path.
        signal(SIGPIPE, SIG_IGN)

        guard let config = event_config_new() else {
            throw ReactorError(.eventBackend, operation: .createReactor, hint: "event_config_new failed")
        }
        defer { event_config_free(config) }
        // One thread owns the base, so libevent's locks would be pure cost; IGNORE_ENV
        // keeps EVENT_NOEPOLL and friends from silently changing the backend.
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_NOLOCK.rawValue | EVENT_BASE_FLAG_IGNORE_ENV.rawValue))
        guard let base = event_base_new_with_config(config) else {
            throw ReactorError(.eventBackend, operation: .createReactor, hint: "event_base_new_with_config failed")
        }
        let method = String(cString: event_base_get_method(base))
        #if os(Linux)
        guard method == "epoll" else {
            event_base_free(base)
            throw ReactorError(.eventBackend, operation: .createReactor, hint: "libevent chose '\(method)', not epoll")
        }
        #endif
        self.base = base
        self.logger = logger
        self.eventSize = Int(event_get_struct_event_size())
        self.outputBudget = outputBudget
        self.readBuffer = .allocate(byteCount: readBufferSize, alignment: 16)
        do {
            self.mailbox = try Mailbox()
        } catch {
            readBuffer.deallocate()
            event_base_free(base)
            throw error
        }

        let context = Unmanaged.passUnretained(self).toOpaque()
        timerEvent = cevent_timer_new(base, { _, _, context in
            Unmanaged<Reactor>.fromOpaque(context!).takeUnretainedValue().fireTimers()
        }, context)
        soonEvent = cevent_timer_new(base, { _, _, context in
            Unmanaged<Reactor>.fromOpaque(context!).takeUnretainedValue().runSoonQueue()
        }, context)
        mailboxEvent = event_new(base, mailbox.fd, Int16(EV_READ | EV_PERSIST), { _, _, context in
            Unmanaged<Reactor>.fromOpaque(context!).takeUnretainedValue().drainMailbox()
        }, context)
        event_add(mailboxEvent, nil)
    }

    deinit {
        mailbox.closeDropping()
        tearDown()
        for event in [timerEvent, soonEvent, mailboxEvent] where event != nil { event_free(event) }
        event_base_free(base)
        readBuffer.deallocate()
    }

    /// The libevent backend in use: `epoll` on Linux.
    public var backendMethod: String { String(cString: event_base_get_method(base)) }

    /// A `Sendable` handle through which other threads can run work on this reactor or stop it.
    public var handle: ReactorHandle { ReactorHandle(mailbox: mailbox) }

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
        state = .running
        armTimerEvent()
        // event_base_loop clears libevent's own break flag on entry, so a stop() that
        // came before run() is remembered here.
        let status = stopRequested ? 0 : event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY)
        tearDown()
        if status < 0 {
            throw ReactorError(.eventBackend, operation: .run, hint: "event_base_loop failed")
        }
    }

    /// Makes ``run()`` return after the callback that is running now.
    ///
    /// Connections still open are aborted when `run()` returns; use
    /// ``shutdownGracefully(timeout:)`` to let them flush first. Calling `stop()` before
    /// `run()` makes `run()` return at once.
    public func stop() {
        stopRequested = true
        event_base_loopbreak(base)
    }

    /// Stops accepting, closes every connection gracefully (flush, then close), and stops
    /// the reactor when all are closed, or after `timeout`, aborting any still open.
    public func shutdownGracefully(timeout: Duration = .seconds(10)) {
        guard shutdownDeadline == nil, state != .stopped else { return }
        stopOpeningConnections()
        for connection in connections { connection?.close() }
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
        soonQueue.append(body)
        if soonQueue.count == 1 { event_active(soonEvent, 0, 0) }
    }

    // MARK: - Connection registry

    func register(_ connection: Connection) {
        let fd = Int(connection.fileDescriptor)
        if fd >= connections.count {
            connections.append(contentsOf: repeatElement(nil, count: Swift.max(fd + 1 - connections.count, connections.count)))
        }
        connections[fd] = connection
        connectionCount += 1
    }

    func unregister(_ connection: Connection) {
        let fd = Int(connection.fileDescriptor)
        guard fd < connections.count, connections[fd] === connection else { return }
        connections[fd] = nil
        connectionCount -= 1
        if shutdownDeadline != nil { stopIfShutDown() }
    }

    /// Closes every listener and UDP socket, and cancels every connect in progress.
    private func stopOpeningConnections() {
        for listener in Array(listeners.values) { listener.close() }
        for socket in Array(udpSockets.values) { socket.close() }
        for pending in Array(pendingConnects.values) { pending.cancel() }
    }

    private func stopIfShutDown() {
        if connectionCount == 0 {
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
    public static var now: UInt64 { cevent_monotonic_ns() }
    static var coarseNow: UInt64 { cevent_coarse_monotonic_ns() }

    private func armTimerEvent() {
        guard !timers.isFiring, let next = timers.first else {
            if timers.isEmpty { event_del(timerEvent) }
            return
        }
        let now = Reactor.now
        // Round up to the next microsecond so the timer never fires a hair early and spins.
        let wait = next.deadline > now ? next.deadline - now + 999 : 0
        var delay = timeval(tv_sec: Int(wait / 1_000_000_000), tv_usec: Int(wait % 1_000_000_000 / 1000))
        event_add(timerEvent, &delay)
    }

    private func fireTimers() {
        timers.fireDue(now: Reactor.now)
        armTimerEvent()
    }

    // MARK: - Deferred work and the mailbox

    private func runSoonQueue() {
        let batch = soonQueue
        soonQueue.removeAll(keepingCapacity: true)
        for body in batch { body() }
        if !soonQueue.isEmpty { event_active(soonEvent, 0, 0) }
    }

    private func drainMailbox() {
        for job in mailbox.take() { job(self) }
    }

    // MARK: - Teardown

    private func tearDown() {
        guard state != .stopped else { return }
        state = .stopped
        // Work other threads queued before this point was promised to run; later posts
        // are refused.
        for job in mailbox.close() { job(self) }
        stopOpeningConnections()
        for connection in connections { connection?.abortForTeardown() }
        for (_, watcher) in signalWatchers { watcher.cancel() }
        timers.removeAll()
        event_del(timerEvent)
        runSoonQueue()
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
