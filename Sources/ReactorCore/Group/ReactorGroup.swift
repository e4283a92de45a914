import Dispatch
import Logging
import Synchronization

/// Several reactors, each on a thread of its own: the way to use every core. Each
/// reactor stays single-threaded; a connection lives on one of them for its whole life,
/// and its handler is made on that reactor's thread, so per-reactor state needs no locks.
///
/// ```swift
/// let group = try ReactorGroup(count: ReactorGroup.availableCPUs)
/// let listener = try group.listen(host: "0.0.0.0", port: 7007) { _ in { _ in EchoHandler() } }
/// print("listening on \(listener.address)")
/// // ... later, from any thread:
/// group.shutdownGracefully()
/// group.join()
/// ```
///
/// A handler reaches state on another reactor only through that reactor's
/// ``ReactorHandle`` (``handles``, ``next()``): it posts a closure, which runs on the
/// other thread; the answer, if any, comes back the same way, posted to the asker's own
/// handle. Nothing is shared but `Sendable` values.
public final class ReactorGroup: Sendable {
    /// The CPUs this process may run on (its affinity mask, so `taskset` and cgroup
    /// cpusets count): what `--threads auto` uses.
    public static var availableCPUs: Int { System.availableCPUs }

    /// The handles of the group's reactors, in order; reactor `i`'s thread is named
    /// `name-i`.
    public let handles: [ReactorHandle]
    private let threads: [ReactorThread]
    private let cursor = Atomic<Int>(0)
    /// Held while joining, true once joined: a thread may be joined only once.
    private let joinLock = Mutex(false)

    /// Starts `count` reactors, each on a thread of its own, and returns once all run.
    ///
    /// - Parameters:
    ///   - count: how many reactors (at least 1).
    ///   - name: the threads are named `name-0`, `name-1`, ... (15 bytes are kept).
    ///   - cpus: pin reactor `i` to `cpus[i % cpus.count]`; nil or empty leaves the
    ///     scheduler free to move them.
    ///   - logger: every reactor's logger.
    ///   - outputBudget: each reactor's ``Reactor/outputBudget``.
    /// - Throws: ``ReactorError`` when a reactor or thread cannot be made or a CPU pinned
    ///   (``ReactorError/Operation/pinThread``), with the reactors already started stopped.
    public init(
        count: Int, name: String = "reactor", cpus: [Int]? = nil, logger: Logger = Logger(label: "reactor"),
        outputBudget: Int = Reactor.defaultOutputBudget
    ) throws {
        guard count >= 1 else { throw ReactorError.invalidOption("count", value: count, hint: "a group needs at least one reactor") }
        var threads: [ReactorThread] = []
        do {
            for index in 0..<count {
                let cpu = cpus.flatMap { $0.isEmpty ? nil : $0[index % $0.count] }
                let (thread, _) = try ReactorThread.start(
                    name: "\(name)-\(index)", logger: logger, outputBudget: outputBudget, cpu: cpu) { _ in }
                threads.append(thread)
            }
        } catch {
            for thread in threads { thread.stop() }
            throw error
        }
        self.threads = threads
        self.handles = threads.map(\.handle)
    }

    /// The number of reactors.
    public var count: Int { handles.count }

    /// The next reactor's handle, round robin, from any thread.
    public func next() -> ReactorHandle {
        handles[cursor.wrappingAdd(1, ordering: .relaxed).oldValue % handles.count]
    }

    /// Queues `work` on reactor `index`; false when it has stopped.
    @discardableResult
    public func execute(on index: Int, _ work: @escaping @Sendable (Reactor) -> Void) -> Bool {
        handles[index].execute(work)
    }

    /// Queues `work` on every reactor; false when any of them has stopped.
    @discardableResult
    public func executeOnAll(_ work: @escaping @Sendable (Reactor) -> Void) -> Bool {
        handles.reduce(true) { $1.execute(work) && $0 }
    }

    /// Runs `work` on reactor `index` and blocks the calling thread until it returned: for
    /// setting up from a thread that is not one of the group's (called from one of them,
    /// it would wait for itself; post with ``execute(on:_:)`` there instead).
    ///
    /// - Throws: what `work` throws, or ``ReactorError/Code/reactorStopped``.
    public func perform<T: Sendable>(on index: Int, _ work: @escaping @Sendable (Reactor) throws -> T) throws -> T {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let posted = handles[index].execute { reactor in
            result.withLock { $0 = Result { try work(reactor) } }
            done.signal()
        }
        guard posted else { throw ReactorError(.reactorStopped, operation: .execute) }
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// Runs `work` on every reactor in turn (see ``perform(on:_:)``); returns the results
    /// in reactor order, discardable for work run for its effect.
    @discardableResult
    public func performOnAll<T: Sendable>(_ work: @escaping @Sendable (Reactor) throws -> T) throws -> [T] {
        try handles.indices.map { try perform(on: $0, work) }
    }

    /// Stops every reactor at once (open connections are aborted) and waits for the threads.
    public func stop() {
        for handle in handles { handle.stop() }
        join()
    }

    /// Shuts every reactor down gracefully (see ``Reactor/shutdownGracefully(timeout:)``),
    /// from any thread. Acceptors drain first: each hands what waited in its backlog to
    /// the reactors, and only then are the reactors told to shut down, so a connection in
    /// flight from an acceptor is never refused by a reactor that has already stopped
    /// (each reactor's mailbox runs in order).
    public func shutdownGracefully(timeout: Duration = .seconds(10)) {
        let handles = self.handles
        let remaining = Countdown(handles.count)
        for handle in handles {
            handle.execute { reactor in
                reactor.drainAcceptors()
                guard remaining.countDown() else { return }
                for handle in handles { handle.shutdownGracefully(timeout: timeout) }
            }
        }
    }

    /// Waits for every reactor thread to end (after something stopped them). Calling it
    /// again, or after ``stop()``, returns at once.
    public func join() {
        joinLock.withLock { joined in
            guard !joined else { return }
            for thread in threads { thread.join() }
            joined = true
        }
    }

    /// Suspends until every reactor has stopped and torn down, without blocking a thread.
    public func stopped() async {
        for thread in threads { await thread.stopped() }
    }
}

/// Counts down from threads; true for the call that reaches zero.
private final class Countdown: Sendable {
    private let remaining: Atomic<Int>

    init(_ count: Int) { remaining = Atomic(count) }

    func countDown() -> Bool {
        remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0
    }
}
