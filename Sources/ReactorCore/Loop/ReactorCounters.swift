/// What a ``Reactor`` has done since it was made, in plain integers: the numbers behind
/// its metrics (module ReactorMetrics flushes them to swift-metrics on a timer), read
/// with ``Reactor/counters``.
///
/// The reactor keeps them whether or not anything reads them: each is one add on a path
/// that already does far more (a read, a send, an accept, a close, a batch of frames), and
/// a test of "metrics on" would cost as much as the add. UDP figures are the sockets' own
/// ``UDPCounters``, summed when read, so a datagram pays nothing extra.
public struct ReactorCounters: Sendable, Equatable {
    /// TCP connections accepted by the reactor's listeners.
    public var acceptedConnections = 0
    /// TCP connections open now, accepted and outgoing (filled in when read).
    public var activeConnections = 0
    /// TCP connections closed, by why.
    public var closedConnections = ConnectionCloseCounts()
    /// Bytes read from TCP sockets.
    public var bytesReceived = 0
    /// Bytes the kernel took for sending on TCP sockets.
    public var bytesSent = 0
    /// Frames a `FramedConnection` delivered to its handler.
    public var framesReceived = 0
    /// Frames a `FramedConnection` wrote.
    public var framesSent = 0
    /// Failed `accept` calls by errno (EMFILE, ENFILE, ECONNABORTED, ...): a listener that
    /// ran out of descriptors counts each retry that failed again.
    public var acceptErrors: [Int32: Int] = [:]
    /// Every UDP socket's ``UDPCounters`` added up, those already closed included.
    public var udp = UDPCounters()
    /// PROXY protocol headers read and refused by the reactor's listeners
    /// (``ListenerOptions/proxyProtocol``), those already closed included.
    public var proxyHeaders = ProxyProtocolCounters()

    /// All zero.
    public init() {}
}

/// Why TCP connections closed, one count per kind (``ConnectionCloseKind``).
public struct ConnectionCloseCounts: Sendable, Equatable {
    private var counts = [Int](repeating: 0, count: ConnectionCloseKind.allCases.count)

    /// All zero.
    public init() {}

    /// The count for one kind.
    public subscript(kind: ConnectionCloseKind) -> Int {
        get { counts[kind.index] }
        set { counts[kind.index] = newValue }
    }

    /// The counts of every kind together.
    public var total: Int { counts.reduce(0, +) }
}

/// A ``CloseReason`` as operators count it: the reasons, with a timeout told apart by
/// what ran out, and two causes the reason alone does not show (a framing error, the
/// output budget). The raw value is the metric's label value.
public enum ConnectionCloseKind: String, Sendable, CaseIterable {
    /// The peer's FIN or this side's ``Connection/close()``, everything owed sent.
    case normal
    /// The peer reset the connection (``CloseReason/reset``).
    case reset
    /// ``ConnectionOptions/idleTimeout`` passed with nothing moving.
    case idleTimeout = "idle_timeout"
    /// A graceful close could not flush within ``ConnectionOptions/closeTimeout``.
    case closeTimeout = "close_timeout"
    /// Queued output passed ``ConnectionOptions/writeBufferLimit``.
    case limit
    /// Its framer refused the peer's input (a `FramedConnection`'s framing error).
    case framingError = "framing_error"
    /// Closed by a timeout or an abort while the reactor's output budget throttled it: a
    /// peer that stopped reading while all of them together were over the budget.
    case outputBudget = "output_budget"
    /// This side's ``Connection/abort()``, or the reactor stopping.
    case aborted
    /// Any other socket error (``CloseReason/failed(_:)``).
    case error

    fileprivate var index: Int {
        switch self {
        case .normal: 0
        case .reset: 1
        case .idleTimeout: 2
        case .closeTimeout: 3
        case .limit: 4
        case .framingError: 5
        case .outputBudget: 6
        case .aborted: 7
        case .error: 8
        }
    }
}

/// The counts a reactor adds to on its paths, one plain add each. UDP and the open
/// connections are read from the sockets and the registry instead (``Reactor/counters``).
package struct ReactorTally {
    package var acceptedConnections = 0
    package var closedConnections = ConnectionCloseCounts()
    package var bytesReceived = 0
    package var bytesSent = 0
    package var framesReceived = 0
    package var framesSent = 0
    package var acceptErrors: [Int32: Int] = [:]
    /// The counters of UDP sockets already closed.
    package var closedUDP = UDPCounters()
    package var proxyHeaders = ProxyProtocolCounters()
}

extension UDPCounters {
    /// Adds another socket's counters to these.
    package static func += (total: inout UDPCounters, other: UDPCounters) {
        total.received &+= other.received
        total.receivedBytes &+= other.receivedBytes
        total.truncated &+= other.truncated
        total.coalesced &+= other.coalesced
        total.receiveErrors &+= other.receiveErrors
        total.sent &+= other.sent
        total.sentBytes &+= other.sentBytes
        total.sendDropped &+= other.sendDropped
        total.sendTooLarge &+= other.sendTooLarge
        total.sendRefused &+= other.sendRefused
        total.sendFailed &+= other.sendFailed
    }
}

/// A sample of how late timers fire (from the deadline to the start of the callback):
/// the reactor's loop latency. Keeps at most `capacity` values between two
/// ``take()`` calls, a uniform sample of all it saw (reservoir sampling), so a busy
/// interval costs no more memory than a quiet one.
final class TimerLatencySampler {
    private let capacity: Int
    private var samples: [UInt64] = []
    private var seen = 0
    private var random: UInt64 = 0x9E37_79B9_7F4A_7C15

    init(capacity: Int) {
        self.capacity = capacity
        samples.reserveCapacity(capacity)
    }

    func record(_ nanoseconds: UInt64) {
        seen &+= 1
        if samples.count < capacity {
            samples.append(nanoseconds)
            return
        }
        // xorshift64: a reservoir slot needs no cryptographic randomness.
        random ^= random << 13
        random ^= random >> 7
        random ^= random << 17
        let slot = Int(random % UInt64(seen))
        if slot < capacity { samples[slot] = nanoseconds }
    }

    func take() -> TimerLatencySample {
        defer {
            samples.removeAll(keepingCapacity: true)
            seen = 0
        }
        return TimerLatencySample(nanoseconds: samples, observed: seen)
    }
}

/// Timer lateness since the last ``Reactor/takeTimerLatencySample()``.
public struct TimerLatencySample: Sendable, Equatable {
    /// Lateness of timers that fired, in nanoseconds: all of them, or a uniform sample of
    /// ``Reactor/startSamplingTimerLatency(capacity:)``'s capacity when more fired.
    public var nanoseconds: [UInt64]
    /// How many timers fired in the interval.
    public var observed: Int
}

extension Reactor {
    /// What the reactor has counted since it was made, with the UDP sockets' counters
    /// summed and the open connections counted now. See ``ReactorCounters``. Read it on
    /// the reactor's thread (or while the reactor is not running).
    public var counters: ReactorCounters {
        preconditionInLoop()
        var counters = ReactorCounters()
        counters.acceptedConnections = tally.acceptedConnections
        counters.activeConnections = connectionCount
        counters.closedConnections = tally.closedConnections
        counters.bytesReceived = tally.bytesReceived
        counters.bytesSent = tally.bytesSent
        counters.framesReceived = tally.framesReceived
        counters.framesSent = tally.framesSent
        counters.acceptErrors = tally.acceptErrors
        counters.udp = tally.closedUDP
        counters.proxyHeaders = tally.proxyHeaders
        for case .udpSocket(let socket) in registry.entries(where: { if case .udpSocket = $0 { true } else { false } }) {
            counters.udp += socket.counters
        }
        return counters
    }

    /// Starts measuring how late each timer fires (deadline to callback): the loop's
    /// latency. A timer firing costs one more clock read while it is on. Read the sample
    /// with ``takeTimerLatencySample()``; module ReactorMetrics does, on its flush timer.
    ///
    /// - Parameter capacity: the most values kept between two takes (a uniform sample of
    ///   all timers that fired).
    public func startSamplingTimerLatency(capacity: Int = 1024) {
        precondition(capacity > 0, "capacity must be positive")
        preconditionInLoop()
        if timers.latencySampler == nil { timers.latencySampler = TimerLatencySampler(capacity: capacity) }
    }

    /// The timer lateness seen since the last call (empty unless
    /// ``startSamplingTimerLatency(capacity:)`` was called), and starts a new interval.
    public func takeTimerLatencySample() -> TimerLatencySample {
        preconditionInLoop()
        return timers.latencySampler?.take() ?? TimerLatencySample(nanoseconds: [], observed: 0)
    }
}

extension ReactorError {
    /// An errno's name ("EMFILE"), or "errno N" for one without a name here: the
    /// `error.type` of a metric.
    package static func errnoName(_ code: Int32) -> String {
        System.errnoName(code) ?? "errno \(code)"
    }
}
