import CEvent

// The only Swift file that sees libevent: the base a reactor runs, and the events its
// objects watch. Everything else asks these two types.

/// A libevent `event_base` on epoll, without locks (one thread owns it).
struct EventBase {
    let raw: OpaquePointer

    /// - Parameter preciseTimers: timeouts through a timerfd, to the microsecond, rather
    ///   than epoll's whole milliseconds (``Reactor/init(logger:readBufferSize:outputBudget:preciseTimers:)``).
    /// - Throws: ``ReactorError/Code/eventBackend`` when libevent cannot give an epoll base.
    init(preciseTimers: Bool = false) throws(ReactorError) {
        guard let config = event_config_new() else {
            throw ReactorError(.eventBackend, operation: .createReactor, hint: "event_config_new failed")
        }
        defer { event_config_free(config) }
        // One thread owns the base, so libevent's locks would be pure cost; IGNORE_ENV
        // keeps EVENT_NOEPOLL and friends from silently changing the backend.
        let precise = preciseTimers ? EVENT_BASE_FLAG_PRECISE_TIMER.rawValue : 0
        event_config_set_flag(config, Int32(EVENT_BASE_FLAG_NOLOCK.rawValue | EVENT_BASE_FLAG_IGNORE_ENV.rawValue | precise))
        guard let base = event_base_new_with_config(config) else {
            throw ReactorError(.eventBackend, operation: .createReactor, hint: "event_base_new_with_config failed")
        }
        let method = String(cString: event_base_get_method(base))
        guard method == "epoll" else {
            event_base_free(base)
            throw ReactorError(.eventBackend, operation: .createReactor, hint: "libevent chose '\(method)', not epoll")
        }
        raw = base
    }

    /// The backend libevent uses: always `epoll` (``init(preciseTimers:)`` refuses any other).
    var method: String { String(cString: event_base_get_method(raw)) }

    /// Dispatches events until ``breakLoop()``, also while nothing is watched. Returns
    /// false when libevent fails.
    func loop() -> Bool {
        event_base_loop(raw, EVLOOP_NO_EXIT_ON_EMPTY) >= 0
    }

    /// Makes ``loop()`` return after the callback running now.
    func breakLoop() {
        event_base_loopbreak(raw)
    }

    /// Frees the base; every event on it must be disarmed first.
    func free() {
        event_base_free(raw)
    }
}

/// The libevent events one object watches (a connection's read and write readiness, a
/// listener's accept, the reactor's timers ...) in one allocation the object owns: the
/// one place where an event is assigned, armed, disarmed and freed, and where a C
/// callback finds the Swift object it belongs to.
///
/// libevent gets the owner as its callback context without a retain: the owner holds its
/// `LoopEvents`, so it is alive while any of them can fire. Freeing disarms whatever is
/// still armed first.
struct LoopEvents: ~Copyable {
    /// A libevent callback: descriptor, what fired, the owner as context.
    typealias Callback = @convention(c) (Int32, Int16, UnsafeMutableRawPointer?) -> Void

    /// What an event waits for.
    enum Watch {
        /// The descriptor is readable; stays armed after firing.
        case readable(Int32)
        /// The descriptor is writable; stays armed after firing.
        case writable(Int32)
        /// The descriptor is writable, once (a connect completing), or the timeout passed.
        case writableOnce(Int32)
        /// Only a timeout or ``activate(_:)``.
        case timer
        /// The signal arrived (libevent's handler only writes to a socketpair, so the
        /// callback runs in the loop like any other); stays armed after firing.
        case signal(Int32)

        /// What libevent's `event_assign` takes for it.
        var descriptorAndFlags: (Int32, Int32) {
            switch self {
            case .readable(let fd): (fd, Int32(EV_READ | EV_PERSIST))
            case .writable(let fd): (fd, Int32(EV_WRITE | EV_PERSIST))
            case .writableOnce(let fd): (fd, Int32(EV_WRITE))
            case .timer: (-1, 0)
            case .signal(let number): (number, Int32(EV_SIGNAL | EV_PERSIST))
            }
        }
    }

    // Nineteen bytes in the owner (a connection has one of these): the allocation, the lent
    // event, how many events it holds, which are armed, whether libevent is behind them.
    private let storage: UnsafeMutableRawPointer
    /// The lent event's `struct event` while it is armed (``armLent(from:on:_:owner:callback:)``).
    private var lent: OpaquePointer?
    private let count: UInt8
    private var armed: UInt8 = 0
    /// False for events that only record being armed, with no libevent event behind them.
    private let backed: Bool

    /// The bit of ``armed`` that stands for the lent event.
    private static let lentBit: UInt8 = 1 << 7

    /// Where each event of an allocation starts: libevent's `struct event` size, rounded
    /// up to 16 bytes.
    fileprivate static let stride = (Int(event_get_struct_event_size()) + 15) & ~15

    /// Room for `count` events (at most 7: the eighth bit is the lent event's), none
    /// assigned yet. With `backed` false, arming only records the wish: for a connection
    /// over memory in tests, whose readiness the test decides (``Connection/readArmed``).
    init(count: Int, backed: Bool = true) {
        precondition(count > 0 && count <= 7, "LoopEvents holds 1 to 7 events")
        self.count = UInt8(count)
        self.backed = backed
        storage = .allocate(byteCount: count * LoopEvents.stride, alignment: 16)
    }

    deinit {
        if backed {
            for index in 0..<Int(count) where armed & (1 << index) != 0 { event_del(event(index)) }
        }
        if let lent {
            event_del(lent)
            SpareEvents.deallocate(lent)
        }
        storage.deallocate()
    }

    @inline(__always)
    private func event(_ index: Int) -> OpaquePointer {
        OpaquePointer(storage + index &* LoopEvents.stride)
    }

    /// Sets up event `index` on `base` to call `callback` with `owner` (unretained) as its context.
    mutating func assign(_ index: Int, on base: EventBase, _ watch: Watch, owner: AnyObject, callback: Callback) {
        let (fd, flags) = watch.descriptorAndFlags
        event_assign(event(index), base.raw, fd, Int16(flags), callback, Unmanaged.passUnretained(owner).toOpaque())
    }

    /// True between ``arm(_:)`` and ``disarm(_:)`` (a one-shot event that fired stays
    /// marked armed until disarmed; disarming it again is harmless).
    @inline(__always)
    func isArmed(_ index: Int) -> Bool {
        armed & (1 << index) != 0
    }

    /// Starts watching. Returns false when libevent refuses (a signal it cannot catch).
    @discardableResult
    mutating func arm(_ index: Int) -> Bool {
        armed |= 1 << index
        return !backed || event_add(event(index), nil) == 0
    }

    /// Starts watching, or restarts the timeout of an armed event: it fires after
    /// `nanoseconds` (rounded up to libevent's microseconds) if nothing else fires it first.
    mutating func arm(_ index: Int, timeout nanoseconds: UInt64) {
        armed |= 1 << index
        guard backed else { return }
        let micros = (nanoseconds &+ 999) / 1000
        var delay = timeval(tv_sec: Int(micros / 1_000_000), tv_usec: Int(micros % 1_000_000))
        event_add(event(index), &delay)
    }

    /// Stops watching; does nothing when not armed.
    mutating func disarm(_ index: Int) {
        guard armed & (1 << index) != 0 else { return }
        armed &= ~(1 << index)
        if backed { event_del(event(index)) }
    }

    /// Disarms every event, before the base goes; a lent one goes back to `spares`.
    mutating func disarmAll(lentTo spares: SpareEvents? = nil) {
        for index in 0..<Int(count) { disarm(index) }
        if let spares { disarmLent(to: spares) }
    }

    // MARK: The lent event

    /// True between ``armLent(from:on:_:owner:callback:)`` and ``disarmLent(to:)``.
    @inline(__always)
    var isLentArmed: Bool {
        armed & LoopEvents.lentBit != 0
    }

    /// Arms one more event, beyond the `count` this owns, on a `struct event` taken from
    /// `spares` for as long as it stays armed: for readiness an owner watches only now and
    /// then (a connection's writability, while output waits), so that an idle owner does
    /// not carry a 128-byte event for it. Assigned afresh each time, which costs no
    /// system call: arming costs the one `epoll_ctl` it would cost on an event of its own.
    mutating func armLent(
        from spares: SpareEvents, on base: EventBase, _ watch: Watch, owner: AnyObject, callback: Callback
    ) {
        guard armed & LoopEvents.lentBit == 0 else { return }
        armed |= LoopEvents.lentBit
        guard backed else { return }
        let event = spares.take()
        lent = event
        let (fd, flags) = watch.descriptorAndFlags
        event_assign(event, base.raw, fd, Int16(flags), callback, Unmanaged.passUnretained(owner).toOpaque())
        event_add(event, nil)
    }

    /// Stops the lent event and gives its `struct event` back; does nothing when not armed.
    mutating func disarmLent(to spares: SpareEvents) {
        guard armed & LoopEvents.lentBit != 0 else { return }
        armed &= ~LoopEvents.lentBit
        guard let event = lent else { return }
        lent = nil
        event_del(event)
        spares.give(event)
    }

    /// Makes the event fire on this loop pass, as if its condition had happened.
    func activate(_ index: Int) {
        event_active(event(index), 0, 0)
    }

    /// In a callback: true when the event fired because its timeout passed.
    static func timedOut(_ what: Int16) -> Bool {
        what & Int16(EV_TIMEOUT) != 0
    }

    /// In a callback: true when the event fired because its descriptor was readable (and
    /// not only because it was activated).
    static func readable(_ what: Int16) -> Bool {
        what & Int16(EV_READ) != 0
    }

    /// In a callback: runs `body` with the owner passed to
    /// ``assign(_:on:_:owner:callback:)``, retained for the call, so the callback may
    /// drop the last other reference to it (a listener closed from its own accept).
    @inline(__always)
    static func withOwner<Owner: AnyObject>(
        _ context: UnsafeMutableRawPointer?, _: Owner.Type, _ body: (Owner) -> Void
    ) {
        body(Unmanaged<Owner>.fromOpaque(context.unsafelyUnwrapped).takeUnretainedValue())
    }

    /// ``withOwner(_:_:_:)`` without the retain/release pair, for an owner that outlives
    /// every callback by its own rule (``Connection``: see `finish`), on the hot path
    /// (docs/performance.md, "Performance tricks").
    @inline(__always)
    static func withBorrowedOwner<Owner: AnyObject>(
        _ context: UnsafeMutableRawPointer?, _: Owner.Type, _ body: (Owner) -> Void
    ) {
        Unmanaged<Owner>.fromOpaque(context.unsafelyUnwrapped)._withUnsafeGuaranteedRef(body)
    }
}

/// The `struct event`s a reactor lends to ``LoopEvents/armLent(from:on:_:owner:callback:)``:
/// a free list, so that arming a connection's writability after a send that did not
/// finish does not call malloc. Bounded: beyond ``maxFree`` spares the memory goes back.
final class SpareEvents {
    static let maxFree = 256

    private var spares: [OpaquePointer] = []

    func take() -> OpaquePointer {
        spares.popLast() ?? OpaquePointer(UnsafeMutableRawPointer.allocate(byteCount: LoopEvents.stride, alignment: 16))
    }

    /// Takes back an event that is no longer armed.
    func give(_ event: OpaquePointer) {
        if spares.count < SpareEvents.maxFree { spares.append(event) } else { SpareEvents.deallocate(event) }
    }

    static func deallocate(_ event: OpaquePointer) {
        UnsafeMutableRawPointer(event).deallocate()
    }

    deinit {
        for event in spares { SpareEvents.deallocate(event) }
    }
}
