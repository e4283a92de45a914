import Logging

/// The reactor-wide output budget (see ``Reactor/outputBudget``): the per-connection
/// watermarks bound one peer that does not read; the budget bounds all of them together.
///
/// The reactor owns one. Connections add and subtract what they queue; one that queues
/// output while the total is over the limit is throttled here, and released, first
/// throttled first, once the total falls to half the limit or its own queue empties.
/// A value type stored in the reactor, so the add and compare on the queueing path cost
/// what a field of the reactor would.
package struct OutputBudget {
    /// The most output all connections together may hold queued.
    package let limit: Int
    /// Bytes queued in all connections' output queues.
    package private(set) var queued = 0
    /// Connections throttled now, in the order they were throttled.
    package private(set) var throttled: [Connection] = []
    private var releaseScheduled = false
    private var lastNotice: UInt64 = 0

    package init(limit: Int) {
        self.limit = limit
    }

    /// Output grew by `bytes`; returns true when the total is now over the limit.
    @inline(__always)
    package mutating func add(_ bytes: Int) -> Bool {
        queued &+= bytes
        return queued > limit
    }

    /// Output shrank by `bytes` (sent, or dropped with a closing connection).
    @inline(__always)
    package mutating func subtract(_ bytes: Int) {
        queued &-= bytes
    }

    /// Some connection is throttled: the drain path has work to do.
    @inline(__always)
    package var isThrottling: Bool { !throttled.isEmpty }

    /// `connection` queued output while the total was over the limit: it stops reading
    /// until released.
    package mutating func throttle(_ connection: Connection, logger: Logger) {
        // Logged when throttling starts, at most once a minute: under a sustained flood it
        // starts and stops with every drain.
        if throttled.isEmpty, lastNotice == 0 || Reactor.now &- lastNotice > 60_000_000_000 {
            lastNotice = Reactor.now
            logger.notice(
                "output budget: \(queued) bytes queued, over the budget of \(limit); connections adding output stop reading until it drains")
        }
        throttled.append(connection)
    }

    /// A throttled connection was released on its own (its queue emptied) or closed.
    package mutating func unthrottle(_ connection: Connection) {
        if let index = throttled.firstIndex(where: { $0 === connection }) {
            throttled.remove(at: index)
        }
    }

    /// Output drained somewhere: returns true when a release of every throttled connection
    /// should be scheduled now (the total is at half the limit and none is pending).
    package mutating func shouldScheduleRelease() -> Bool {
        guard !releaseScheduled, !throttled.isEmpty, queued <= limit / 2 else { return false }
        releaseScheduled = true
        return true
    }

    /// The scheduled release runs: returns the connections to let go, first throttled
    /// first, or none if the total grew back over half the limit in the meantime.
    package mutating func takeReleased() -> [Connection] {
        releaseScheduled = false
        guard queued <= limit / 2 else { return [] }
        let released = throttled
        throttled.removeAll(keepingCapacity: true)
        return released
    }
}

extension Reactor {
    /// Connections the output budget holds now (see ``Connection/isThrottled``).
    public var throttledConnectionCount: Int { budget.throttled.count }

    /// Output drained somewhere: once the total is at half the budget, every throttled
    /// connection reads again, after the current callback (never inside another
    /// connection's flush).
    func outputDrained() {
        guard budget.shouldScheduleRelease() else { return }
        runSoon { [unowned self] in
            for connection in budget.takeReleased() { connection.budgetReleased() }
        }
    }
}
