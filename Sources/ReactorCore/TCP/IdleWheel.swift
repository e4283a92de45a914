/// The idle timeouts of a reactor's connections that share one timeout value, with no
/// timer per connection: a timing wheel whose slots are each a tick wide (a 128th of the
/// timeout, at least 1 ms), swept by one repeating reactor timer, the sweeper, while the
/// wheel holds any connection.
///
/// A connection only stamps its last activity on reads and writes (``Connection``'s
/// `lastActivity`); the wheel files it under the tick in which it would time out if
/// nothing moved, in a list threaded through the connection itself (`idlePrev`,
/// `idleNext`, `idleSlot`: no allocation per connection). When the sweep reaches that
/// tick it looks again: a connection that moved since is filed under its new deadline,
/// one that did not is closed, one that is closing already leaves the wheel. So a
/// connection is closed after its deadline and at most two ticks (a 64th of the timeout)
/// plus the coarse clock's few milliseconds later; docs/architecture.md, "Timers".
///
/// The wheel holds its connections unretained: a connection leaves it when it finishes
/// (or, never started by a reactor, when it goes).
final class IdleWheel {
    /// The timeout, in nanoseconds of the coarse monotonic clock.
    let timeout: UInt64
    /// The width of a slot, in nanoseconds.
    let tick: UInt64
    /// The first connection filed in each slot; the others hang from its `idleNext`.
    private var slots: [Unmanaged<Connection>?]
    /// Connections in the wheel.
    private(set) var count = 0
    /// The next tick to sweep, counted from the clock's zero.
    private var cursor: UInt64 = 0
    private var sweeper: ReactorTimer?

    /// Ticks per timeout: the sweep is at most two ticks late, a 64th of the timeout.
    static let ticksPerTimeout: UInt64 = 128
    /// The narrowest tick, 1 ms: epoll waits in whole milliseconds anyway.
    static let minimumTick: UInt64 = 1_000_000
    /// `idleSlot` of a connection in no wheel.
    static let notFiled = UInt8.max

    init(timeout: UInt64) {
        self.timeout = timeout
        tick = Swift.max(timeout / IdleWheel.ticksPerTimeout, IdleWheel.minimumTick)
        // A deadline is at most a timeout and a tick past the cursor: it never wraps
        // onto a slot the sweep reaches before it.
        slots = Array(repeating: nil, count: Int(timeout / tick) + 2)
    }

    /// Files a connection that starts counting idle time, stamped at `now`.
    func insert(_ connection: Connection, now: UInt64, reactor: Reactor) {
        if sweeper == nil {
            cursor = now / tick
            sweeper = reactor.schedule(after: .nanoseconds(Int64(tick)), repeating: .nanoseconds(Int64(tick))) { [self] _ in
                sweep(now: Reactor.coarseNow)
            }
        }
        count += 1
        file(connection, deadline: connection.lastActivity &+ timeout)
    }

    /// Takes a connection out (it closed); does nothing when it is not in the wheel.
    func remove(_ connection: Connection) {
        guard connection.idleSlot != IdleWheel.notFiled else { return }
        unlink(connection)
        count -= 1
        // A running reactor keeps the sweeper of an empty wheel until its next tick, so
        // connections that come and go one at a time do not make a timer each. One that
        // is not running (being set up, or driven by a test) stops it now: its timer holds
        // the reactor, which holds this wheel.
        if count == 0, let sweeper, sweeper.reactor.state != .running { stop() }
    }

    /// The sweeper is scheduled.
    var isSweeping: Bool { sweeper != nil }

    /// Stops the sweeper: the wheel is empty, or its reactor has stopped.
    func stop() {
        sweeper?.cancel()
        sweeper = nil
    }

    private func file(_ connection: Connection, deadline: UInt64) {
        let due = Swift.max(deadline / tick, cursor)
        let slot = Int(due % UInt64(slots.count))
        connection.idleSlot = UInt8(slot)
        connection.idlePrev = nil
        connection.idleNext = slots[slot]
        if let head = slots[slot] { head.takeUnretainedValue().idlePrev = .passUnretained(connection) }
        slots[slot] = .passUnretained(connection)
    }

    private func unlink(_ connection: Connection) {
        let previous = connection.idlePrev
        let next = connection.idleNext
        if let previous {
            previous.takeUnretainedValue().idleNext = next
        } else {
            slots[Int(connection.idleSlot)] = next
        }
        if let next { next.takeUnretainedValue().idlePrev = previous }
        connection.idlePrev = nil
        connection.idleNext = nil
        connection.idleSlot = IdleWheel.notFiled
    }

    /// The sweeper's tick: every slot whose tick has passed by `now` (the coarse clock the
    /// connections stamp with), at most one round of the wheel after a stall.
    func sweep(now: UInt64) {
        let current = now / tick
        var swept = 0
        while cursor < current, swept < slots.count {
            let slot = Int(cursor % UInt64(slots.count))
            var entry = slots[slot]
            slots[slot] = nil
            cursor += 1
            swept += 1
            while let unmanaged = entry {
                let connection = unmanaged.takeUnretainedValue()
                entry = connection.idleNext
                connection.idlePrev = nil
                connection.idleNext = nil
                connection.idleSlot = IdleWheel.notFiled
                count -= 1
                guard connection.countsIdleTime else { continue }
                let deadline = connection.lastActivity &+ timeout
                if deadline <= now {
                    connection.idleTimedOut(quiet: now &- connection.lastActivity)
                } else {
                    count += 1
                    file(connection, deadline: deadline)
                }
            }
        }
        // Every slot was looked at, and whatever is still filed is due after now.
        if cursor < current { cursor = current }
        if count == 0 { stop() }
    }
}

extension Reactor {
    /// The wheel for connections with `timeout`, made on first use. Empty wheels are
    /// dropped once there are more than a few, so connections with ever new timeouts
    /// cannot pile wheels up.
    func idleWheel(timeout: UInt64) -> IdleWheel {
        if let wheel = idleWheels.first(where: { $0.timeout == timeout }) { return wheel }
        if idleWheels.count >= 8 {
            for wheel in idleWheels where wheel.count == 0 { wheel.stop() }
            idleWheels.removeAll { $0.count == 0 }
        }
        let wheel = IdleWheel(timeout: timeout)
        idleWheels.append(wheel)
        return wheel
    }
}

extension Reactor {
    /// Connections whose idle timeout a wheel watches (for tests).
    package var idleWatchedConnectionCount: Int { idleWheels.reduce(0) { $0 + $1.count } }

    /// Wheels whose sweeper is scheduled (for tests: none once their connections are gone).
    package var idleSweeperCount: Int { idleWheels.count(where: \.isSweeping) }
}
