import Histogram
import ReactorCore

/// The load one reactor generates: its share of the clients, the counts and histograms
/// of their requests, and the timers that pace, police and end the run. Confined to its
/// reactor's thread.
final class BenchWorker {
    let reactor: Reactor
    let options: BenchOptions
    let address: SocketAddress
    let schedule: RunSchedule
    let progress: WorkerProgress
    /// Nanoseconds between a connection's requests in open loop; nil in closed loop.
    let interval: UInt64?
    let requestTimeout: UInt64

    /// Cached from the options: read per request.
    let isOpenLoop: Bool
    private let measureStart: UInt64
    private let end: UInt64

    // Confined to the reactor thread and touched per request: no dynamic exclusivity checks.

    /// The time of the event being handled: taken once per read or timer tick and shared
    /// by every response in it.
    @exclusivity(unchecked) var now: UInt64 = 0
    private(set) var isFinished = false

    @exclusivity(unchecked) private(set) var latency: LatencyRecorder
    @exclusivity(unchecked) private(set) var requests = 0
    @exclusivity(unchecked) private(set) var sent = 0
    @exclusivity(unchecked) private(set) var responseBytes = 0
    /// Every verified response, warmup included: the progress line's rate.
    @exclusivity(unchecked) private var responses = 0
    /// Responses to measured requests that arrived after the end of the window but
    /// before the clients stopped: neither counted nor lost.
    private(set) var answeredAfterEnd = 0
    private(set) var errors = ErrorCounts()
    private(set) var warmupErrors = ErrorCounts()

    private var clients: [any BenchClient] = []
    private var timers: [ReactorTimer] = []
    private let finished: @Sendable (WorkerResult) -> Void

    /// A worker on `reactor`; `finished` receives its figures, on the reactor's thread,
    /// when the measured window ends.
    init(
        reactor: Reactor, options: BenchOptions, address: SocketAddress, schedule: RunSchedule,
        progress: WorkerProgress, finished: @escaping @Sendable (WorkerResult) -> Void
    ) {
        self.reactor = reactor
        self.options = options
        self.address = address
        self.schedule = schedule
        self.progress = progress
        self.finished = finished
        interval = options.rate.map { UInt64((Double(options.connections) / $0 * 1e9).rounded()) }
        requestTimeout = options.requestTimeout.nanoseconds
        isOpenLoop = options.rate != nil
        measureStart = schedule.measureStart
        end = schedule.end
        latency = LatencyRecorder(highestTrackable: (options.hardDeadline + .seconds(60)).nanoseconds)
    }

    /// Creates the clients numbered `clientIndices` (of `options.connections` in all) and
    /// the timers; the clients connect at the scheduled start.
    func start(clientIndices: Range<Int>) {
        for index in clientIndices {
            let seed = options.seed &* 0x1000_0001 &+ UInt64(index)
            let client: any BenchClient =
                options.protocol.isStream
                ? TCPBenchClient(
                    worker: self, depth: options.depth,
                    requests: RequestSet(protocol: options.protocol, size: options.size, count: 2 * options.depth + 1, seed: seed))
                : UDPBenchClient(worker: self, depth: options.depth, seed: seed)
            if let interval {
                // Spread the connections' schedules evenly over one interval.
                client.nextIntended = schedule.start + interval / UInt64(options.connections) * UInt64(index)
            }
            clients.append(client)
        }
        let startDelay = Duration.nanoseconds(Int64(schedule.start &- Swift.min(schedule.start, Reactor.now)))
        timers.append(reactor.schedule(after: startDelay) { [self] _ in
            now = Reactor.now
            for client in clients { client.connect() }
        })
        timers.append(reactor.schedule(after: .nanoseconds(Int64(schedule.end - Swift.min(schedule.end, Reactor.now)))) {
            [self] _ in finish()
        })
        timers.append(reactor.schedule(after: .milliseconds(100), repeating: .milliseconds(100)) { [self] _ in housekeeping() })
        timers.append(reactor.schedule(after: .seconds(1), repeating: .seconds(1)) { [self] _ in
            progress.p99.store(latency.corrected.totalCount > 0 ? latency.corrected.valueAtPercentile(99) : 0, ordering: .relaxed)
        })
        if let interval {
            // Requests leave on each connection's schedule; the tick only decides how
            // often the schedule is looked at (at most 1 ms late).
            let tick = Duration.nanoseconds(Int64(Swift.max(Swift.min(interval, 1_000_000), 50_000)))
            timers.append(reactor.schedule(after: startDelay, repeating: tick) { [self] _ in
                now = Reactor.now
                for client in clients { client.pump() }
            })
        }
    }

    // MARK: - Counting, called by the clients

    /// A request's response arrived and matched.
    @inline(__always)
    func completed(intended: UInt64, sent sentAt: UInt64, bytes: Int) {
        responses &+= 1
        guard intended >= measureStart else { return }
        guard now <= end else {
            answeredAfterEnd &+= 1
            return
        }
        requests &+= 1
        responseBytes &+= bytes
        if isOpenLoop {
            latency.record(corrected: now &- intended, uncorrected: now &- sentAt)
        } else {
            latency.record(now &- sentAt)
        }
    }

    /// False once the measured window is over: clients send nothing more.
    @inline(__always)
    var isSending: Bool { now <= end }

    /// A request left.
    @inline(__always)
    func countSent(intended: UInt64) {
        if intended >= measureStart { sent &+= 1 }
    }

    /// Counts an error, in the warmup's counts before the measured window.
    func count(_ kind: WritableKeyPath<ErrorCounts, Int>) {
        guard !isFinished else { return }
        if Reactor.now >= schedule.measureStart {
            errors[keyPath: kind] += 1
        } else {
            warmupErrors[keyPath: kind] += 1
        }
    }

    /// Counts a failed connect by its cause.
    func countConnectFailure(_ error: ReactorError) {
        switch error.code {
        case .connectionRefused: count(\.refused)
        case .timedOut: count(\.connectTimeout)
        default: count(\.connectFailed)
        }
    }

    func connectionOpened() { progress.openConnections.add(1, ordering: .relaxed) }
    func connectionClosed() { progress.openConnections.subtract(1, ordering: .relaxed) }

    // MARK: - Timers

    /// Publishes the counts and drops requests that waited past the request timeout.
    private func housekeeping() {
        now = Reactor.now
        for client in clients { client.expire(olderThan: now &- Swift.min(now, requestTimeout)) }
        progress.requests.store(requests, ordering: .relaxed)
        progress.responses.store(responses, ordering: .relaxed)
        progress.errors.store(errors.total + warmupErrors.total, ordering: .relaxed)
    }

    /// Ends the run: stops every client, hands over the figures, stops the reactor.
    private func finish() {
        guard !isFinished else { return }
        now = Reactor.now
        var inFlight = 0
        for client in clients { inFlight += client.inFlight }
        let result = WorkerResult(
            requests: requests, sent: sent, inFlightAtEnd: inFlight, answeredAfterEnd: answeredAfterEnd, responseBytes: responseBytes,
            errors: errors, warmupErrors: warmupErrors, latency: latency,
            openConnections: progress.openConnections.load(ordering: .relaxed))
        isFinished = true
        for timer in timers { timer.cancel() }
        timers.removeAll()
        // The clients stay until the worker goes: their connections' last callbacks
        // (during the reactor's teardown) still reach them.
        for client in clients { client.stop() }
        finished(result)
        reactor.stop()
    }
}

/// What one worker measured.
struct WorkerResult: Sendable {
    var requests: Int
    var sent: Int
    var inFlightAtEnd: Int
    var answeredAfterEnd: Int
    var responseBytes: Int
    var errors: ErrorCounts
    var warmupErrors: ErrorCounts
    var latency: LatencyRecorder
    var openConnections: Int
}

/// One connection (or UDP socket) of load, as its worker drives it.
protocol BenchClient: AnyObject {
    /// Open loop: when the next request is due.
    var nextIntended: UInt64 { get set }
    /// Requests sent and not yet answered.
    var inFlight: Int { get }
    /// Opens the connection (again, after a failure).
    func connect()
    /// Open loop: sends the requests that are due, as far as the depth allows.
    func pump()
    /// Counts and drops requests sent before `deadline` that are still unanswered.
    func expire(olderThan deadline: UInt64)
    /// Closes for good at the end of the run.
    func stop()
}
