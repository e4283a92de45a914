import CoreMetrics
import ReactorCore

/// Reports a reactor's counters (`ReactorCounters`) to swift-metrics: opt in
/// per reactor by making one.
///
/// The reactor counts in plain integers whether or not this exists; this reads them on a
/// repeating timer of the reactor (every ``interval``) and hands swift-metrics what changed,
/// so a read or a datagram never calls into a metrics backend. It also turns on the
/// reactor's timer-lateness sample and records it as the loop-latency timer. Names and
/// dimensions are in docs/operations.md ("Metrics"); they follow the OpenTelemetry
/// semantic conventions where one exists (`network.transport`, `network.io.direction`,
/// `error.type`).
///
/// ```swift
/// let reactor = try Reactor()
/// let metrics = ReactorMetrics(reactor: reactor)  // MetricsSystem.factory, every second
/// ```
///
/// Create, flush and stop it on the reactor's thread (or before the reactor runs). For
/// several reactors reporting to one backend (a group of reactors), give each its own
/// `dimensions`, such as `[("reactor.index", "2")]`: gauges would otherwise overwrite each
/// other, and swift-prometheus wants the same dimension names on every reactor.
public final class ReactorMetrics {
    /// How often the counters are flushed by default: 1 s.
    public static let defaultInterval: Duration = .seconds(1)

    /// The metric labels this reports, for dashboards and tests. A Prometheus backend
    /// shows each with `_` for `.`.
    public enum Label {
        /// Counter: TCP connections accepted (`network.transport`).
        public static let acceptedConnections = "reactor.connections.accepted"
        /// Gauge: TCP connections open now, accepted and outgoing (`network.transport`).
        public static let activeConnections = "reactor.connections.active"
        /// Counter: TCP connections closed (`network.transport`, `reactor.close.reason`).
        public static let closedConnections = "reactor.connections.closed"
        /// Counter: bytes received and sent (`network.transport`, `network.io.direction`).
        public static let networkIO = "reactor.network.io"
        /// Counter: frames received and sent by framed connections (`network.io.direction`).
        public static let frames = "reactor.frames"
        /// Counter: failed accepts (`network.transport`, `error.type`: the errno's name).
        public static let acceptErrors = "reactor.accept.errors"
        /// Counter: UDP datagrams received and sent (`network.transport`, `network.io.direction`).
        public static let datagrams = "reactor.udp.datagrams"
        /// Counter: UDP datagrams longer than the socket's maximum, dropped (`network.transport`).
        public static let truncatedDatagrams = "reactor.udp.datagrams.truncated"
        /// Counter: UDP datagrams the kernel refused to send (`network.transport`, `error.type`).
        public static let sendErrors = "reactor.udp.send.errors"
        /// Counter: failed UDP receives, an ICMP error queued on the socket (`network.transport`).
        public static let receiveErrors = "reactor.udp.receive.errors"
        /// Counter: PROXY protocol headers read in full (`network.transport`).
        public static let proxyHeadersAccepted = "reactor.proxy.headers.accepted"
        /// Counter: PROXY protocol headers refused, the connection aborted (`network.transport`,
        /// `error.type`: malformed, too_long, bad_checksum, truncated, timed_out, untrusted).
        public static let proxyHeadersRefused = "reactor.proxy.headers.refused"
        /// Timer: how late timers fire, deadline to callback.
        public static let loopLatency = "reactor.loop.latency"
    }

    /// The reactor whose counters this reports.
    public let reactor: Reactor
    /// The flush interval.
    public let interval: Duration
    /// Dimensions added to every metric (empty by default).
    public let dimensions: [(String, String)]

    private let factory: any MetricsFactory
    private var timer: ReactorTimer?
    private var last = ReactorCounters()
    private let accepted: Counter
    private let active: Gauge
    private let closed: [(ConnectionCloseKind, Counter)]
    private let tcpIn: Counter
    private let tcpOut: Counter
    private let udpBytesIn: Counter
    private let udpBytesOut: Counter
    private let framesIn: Counter
    private let framesOut: Counter
    private var acceptErrors: [Int32: Counter] = [:]
    private let datagramsIn: Counter
    private let datagramsOut: Counter
    private let truncated: Counter
    private let sendErrors: [(KeyPath<UDPCounters, Int>, Counter)]
    private let receiveErrors: Counter
    private let proxyAccepted: Counter
    private let proxyRefused: [(KeyPath<ProxyProtocolCounters, Int>, Counter)]
    private let loopLatency: CoreMetrics.Timer
    private var extraCounters: [(read: () -> Int, last: Int, counter: Counter)] = []

    /// Starts reporting `reactor`'s counters: every metric is made now (at zero), and a
    /// repeating timer on the reactor flushes them every `interval`.
    ///
    /// - Parameters:
    ///   - reactor: the reactor whose counters are reported; the flush timer runs on it.
    ///   - dimensions: added to every metric; see the type's discussion for groups.
    ///   - factory: the backend. The default, `MetricsSystem.factory`, is read here, on
    ///     the calling thread, so a factory bound with `withMetricsFactory` around this
    ///     call is the one used, even though flushes run later on the reactor's thread.
    ///   - interval: how often the counters are flushed to the backend.
    public init(
        reactor: Reactor, dimensions: [(String, String)] = [], interval: Duration = ReactorMetrics.defaultInterval,
        factory: any MetricsFactory = MetricsSystem.factory
    ) {
        precondition(interval > .zero, "interval must be positive")
        self.reactor = reactor
        self.interval = interval
        self.dimensions = dimensions
        self.factory = factory
        func counter(_ label: String, _ extra: [(String, String)]) -> Counter {
            Counter(label: label, dimensions: extra + dimensions, factory: factory)
        }
        let tcp = [("network.transport", "tcp")]
        let udp = [("network.transport", "udp")]
        let receive = ("network.io.direction", "receive")
        let transmit = ("network.io.direction", "transmit")
        accepted = counter(Label.acceptedConnections, tcp)
        active = Gauge(label: Label.activeConnections, dimensions: tcp + dimensions, factory: factory)
        closed = ConnectionCloseKind.allCases.map { ($0, counter(Label.closedConnections, tcp + [("reactor.close.reason", $0.rawValue)])) }
        tcpIn = counter(Label.networkIO, tcp + [receive])
        tcpOut = counter(Label.networkIO, tcp + [transmit])
        udpBytesIn = counter(Label.networkIO, udp + [receive])
        udpBytesOut = counter(Label.networkIO, udp + [transmit])
        framesIn = counter(Label.frames, tcp + [receive])
        framesOut = counter(Label.frames, tcp + [transmit])
        datagramsIn = counter(Label.datagrams, udp + [receive])
        datagramsOut = counter(Label.datagrams, udp + [transmit])
        truncated = counter(Label.truncatedDatagrams, udp)
        // OpenTelemetry's error.type: an errno's name where one errno is meant, `_OTHER`
        // for the rest; a full send buffer is EAGAIN or ENOBUFS, counted together.
        sendErrors = [
            (\.sendDropped, counter(Label.sendErrors, udp + [("error.type", "send_buffer_full")])),
            (\.sendTooLarge, counter(Label.sendErrors, udp + [("error.type", "EMSGSIZE")])),
            (\.sendRefused, counter(Label.sendErrors, udp + [("error.type", "ECONNREFUSED")])),
            (\.sendFailed, counter(Label.sendErrors, udp + [("error.type", "_OTHER")])),
        ]
        receiveErrors = counter(Label.receiveErrors, udp)
        proxyAccepted = counter(Label.proxyHeadersAccepted, tcp)
        proxyRefused = [
            (\.malformed, "malformed"), (\.tooLong, "too_long"), (\.badChecksum, "bad_checksum"),
            (\.truncated, "truncated"), (\.timedOut, "timed_out"), (\.untrusted, "untrusted"),
        ].map { path, kind in (path, counter(Label.proxyHeadersRefused, tcp + [("error.type", kind)])) }
        loopLatency = CoreMetrics.Timer(label: Label.loopLatency, dimensions: dimensions, factory: factory)
        active.record(0)
        reactor.startSamplingTimerLatency()
        // The timer holds the reporter until stop() or the reactor stops: dropping it does not end the flushes.
        timer = reactor.schedule(after: interval, repeating: interval) { [self] _ in flush() }
    }

    /// Adds a counter of your own to the flushes: `read` returns its running total (a
    /// count kept in plain integers elsewhere, such as a `ReplyGuard`'s), and each flush
    /// reports what it grew by. `dimensions` come before the reporter's own.
    public func addCounter(label: String, dimensions extra: [(String, String)] = [], _ read: @escaping () -> Int) {
        let counter = Counter(label: label, dimensions: extra + dimensions, factory: factory)
        let now = read()
        counter.increment(by: Int64(now))
        extraCounters.append((read, now, counter))
    }

    /// Reports what changed since the last flush now, besides the timer's flushes: a
    /// scrape endpoint calls it so that it serves the counts of this moment.
    public func flush() {
        let now = reactor.counters
        add(now.acceptedConnections - last.acceptedConnections, to: accepted)
        active.record(now.activeConnections)
        for (kind, counter) in closed {
            add(now.closedConnections[kind] - last.closedConnections[kind], to: counter)
        }
        add(now.bytesReceived - last.bytesReceived, to: tcpIn)
        add(now.bytesSent - last.bytesSent, to: tcpOut)
        add(now.framesReceived - last.framesReceived, to: framesIn)
        add(now.framesSent - last.framesSent, to: framesOut)
        for (code, count) in now.acceptErrors where count != last.acceptErrors[code] {
            let counter = acceptErrorCounter(code)
            add(count - (last.acceptErrors[code] ?? 0), to: counter)
        }
        add(now.udp.received - last.udp.received, to: datagramsIn)
        add(now.udp.sent - last.udp.sent, to: datagramsOut)
        add(now.udp.receivedBytes - last.udp.receivedBytes, to: udpBytesIn)
        add(now.udp.sentBytes - last.udp.sentBytes, to: udpBytesOut)
        add(now.udp.truncated - last.udp.truncated, to: truncated)
        for (path, counter) in sendErrors { add(now.udp[keyPath: path] - last.udp[keyPath: path], to: counter) }
        add(now.udp.receiveErrors - last.udp.receiveErrors, to: receiveErrors)
        add(now.proxyHeaders.accepted - last.proxyHeaders.accepted, to: proxyAccepted)
        for (path, counter) in proxyRefused {
            add(now.proxyHeaders[keyPath: path] - last.proxyHeaders[keyPath: path], to: counter)
        }
        last = now
        for index in extraCounters.indices {
            let value = extraCounters[index].read()
            add(value - extraCounters[index].last, to: extraCounters[index].counter)
            extraCounters[index].last = value
        }
        for lateness in reactor.takeTimerLatencySample().nanoseconds {
            loopLatency.recordNanoseconds(Int64(clamping: lateness))
        }
    }

    /// Stops the flush timer after one last flush. The metrics stay in the backend.
    public func stop() {
        guard let timer else { return }
        flush()
        timer.cancel()
        self.timer = nil
    }

    private func add(_ delta: Int, to counter: Counter) {
        if delta > 0 { counter.increment(by: Int64(delta)) }
    }

    private func acceptErrorCounter(_ code: Int32) -> Counter {
        if let counter = acceptErrors[code] { return counter }
        let counter = Counter(
            label: Label.acceptErrors,
            dimensions: [("network.transport", "tcp"), ("error.type", ReactorError.errnoName(code))] + dimensions,
            factory: factory)
        acceptErrors[code] = counter
        return counter
    }
}
