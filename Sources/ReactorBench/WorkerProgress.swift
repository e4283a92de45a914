import Synchronization

/// What a worker publishes for the progress line, written by its reactor thread a few
/// times a second and read by the thread that reports.
final class WorkerProgress: Sendable {
    /// Responses verified in the measured window so far.
    let requests = Atomic<Int>(0)
    /// Verified responses so far, warmup included.
    let responses = Atomic<Int>(0)
    /// Errors so far (warmup included).
    let errors = Atomic<Int>(0)
    /// Connections open now.
    let openConnections = Atomic<Int>(0)
    /// The corrected p99 so far, in nanoseconds.
    let p99 = Atomic<UInt64>(0)
}

/// One progress sample of the whole run, summed over the workers.
public struct ProgressSnapshot: Sendable {
    /// Seconds since the run started (warmup included).
    public var elapsed: Double
    /// True while still warming up.
    public var warmingUp: Bool
    /// Responses verified in the measured window so far.
    public var requests: Int
    /// Responses per second over the last interval (warmup included).
    public var rate: Double
    /// The largest p99 of the workers so far, in microseconds.
    public var p99: Double
    /// Errors so far.
    public var errors: Int
    /// Connections open now.
    public var openConnections: Int
}
