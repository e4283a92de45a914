// The reactor-wide output budget (see `Reactor.outputBudget`): the per-connection
// watermarks bound one peer that does not read; the budget bounds all of them together.
// Connections add and subtract what they queue (`queuedOutputBytes`); one that queues
// output while the total is over the budget is throttled here.

extension Reactor {
    /// Connections the output budget holds now (see ``Connection/isThrottled``).
    public var throttledConnectionCount: Int { throttledConnections.count }

    /// A connection queued output while the total was over the budget: it stops reading
    /// until released.
    func throttle(_ connection: Connection) {
        // Logged when throttling starts, at most once a minute: under a sustained flood it
        // starts and stops with every drain.
        if throttledConnections.isEmpty, lastBudgetNotice == 0 || Reactor.now &- lastBudgetNotice > 60_000_000_000 {
            lastBudgetNotice = Reactor.now
            logger.notice(
                "output budget: \(queuedOutputBytes) bytes queued, over the budget of \(outputBudget); connections adding output stop reading until it drains")
        }
        throttledConnections.append(connection)
    }

    /// A throttled connection was released on its own (its queue emptied) or closed.
    func unthrottle(_ connection: Connection) {
        if let index = throttledConnections.firstIndex(where: { $0 === connection }) {
            throttledConnections.remove(at: index)
        }
    }

    /// Output drained somewhere: once the total is at half the budget, every throttled
    /// connection reads again, first throttled first, after the current callback (never
    /// inside another connection's flush).
    func outputDrained() {
        guard !budgetReleaseScheduled, !throttledConnections.isEmpty, queuedOutputBytes <= outputBudget / 2 else { return }
        budgetReleaseScheduled = true
        runSoon { [unowned self] in
            budgetReleaseScheduled = false
            guard queuedOutputBytes <= outputBudget / 2 else { return }
            let released = throttledConnections
            throttledConnections.removeAll(keepingCapacity: true)
            for connection in released { connection.budgetReleased() }
        }
    }
}
