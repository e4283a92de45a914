import Histogram
import ReactorCore
import ReactorFraming

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

    // Confined to the reactor thread and touched per request: no dynamic exclusivity
    // checks. They pay: with them (here and in the clients) callgrind counts 940
    // instructions per response of line 50 x 64 in TCPBenchClient.received(frame:on:),
    // without them 568; swift_beginAccess scans every access in flight.

    /// The time of the event being handled: taken once per read or timer tick and shared
    /// by every response in it.
    @exclusivity(unchecked) var now: UInt64 = 0
    private(set) var isFinished = false

    /// The latencies, up to the last ``flushLatencies()``.
    private(set) var latency: LatencyRecorder
    /// The latencies since then, per request: `uncorrected` in open loop only.
    @exclusivity(unchecked) private var correctedCounts: LatencyCounts
    @exclusivity(unchecked) private var uncorrectedCounts: LatencyCounts?
    /// Longer latencies count as this.
    private let highestLatency: UInt64
    @exclusivity(unchecked) private(set) var requests = 0
    @exclusivity(unchecked) private(set) var sent = 0
    @exclusivity(unchecked) private(set) var responseBytes = 0
    /// Every passed response, warmup included: the progress line's rate.
    @exclusivity(unchecked) private var responses = 0
    /// Responses to measured requests that arrived after the end of the window but
    /// before the clients stopped: neither counted nor lost.
    @exclusivity(unchecked) private(set) var answeredAfterEnd = 0
    private(set) var errors = ErrorCounts()
    private(set) var warmupErrors = ErrorCounts()
    @exclusivity(unchecked) private var hits = 0
    @exclusivity(unchecked) private var misses = 0
    private var reconnects = 0
    /// Responses by HTTP status code, in the measured window.
    @exclusivity(unchecked) private var statusCodes = [Int](repeating: 0, count: 600)
    private let spec: CodecSpec
    /// With `recordsIntervals`: the corrected histogram at each second of the window.
    var intervalSnapshots: [Histogram<UInt64>] = []

    /// The next of `options.sourceAddresses` a connect binds to.
    private var nextSource = 0

    private var clients: [any BenchClient] = []
    private var timers: [ReactorTimer] = []
    private let finished: @Sendable (WorkerResult) -> Void

    /// Whether the p99 is published each second for the progress line.
    private let publishesP99: Bool

    /// A worker on `reactor`; `finished` receives its figures, on the reactor's thread,
    /// when the measured window ends.
    init(
        reactor: Reactor, options: BenchOptions, spec: CodecSpec, address: SocketAddress, schedule: RunSchedule,
        progress: WorkerProgress, publishesP99: Bool, finished: @escaping @Sendable (WorkerResult) -> Void
    ) {
        self.publishesP99 = publishesP99
        self.reactor = reactor
        self.spec = spec
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
        highestLatency = latency.highestTrackable
        correctedCounts = LatencyCounts(highestTrackable: highestLatency)
        uncorrectedCounts = isOpenLoop ? LatencyCounts(highestTrackable: highestLatency) : nil
    }

    deinit {
        correctedCounts.deallocate()
        uncorrectedCounts?.deallocate()
    }

    /// Adds the latencies counted since the last flush to ``latency``; called before it is read.
    func flushLatencies() {
        latency.add(corrected: &correctedCounts, uncorrected: &uncorrectedCounts)
    }

    /// The local address the next connect binds to, nil when the kernel picks it: the
    /// source addresses in turn, so that consecutive connects come from different ones.
    func nextSourceAddress() -> SocketAddress? {
        let sources = options.sourceAddresses
        guard !sources.isEmpty else { return nil }
        let source = sources[nextSource]
        nextSource = nextSource + 1 == sources.count ? 0 : nextSource + 1
        return source
    }

    /// Creates the clients numbered `clientIndices` (of `options.connections` in all) and
    /// the timers; the clients connect at the scheduled start.
    func start(clientIndices: Range<Int>) {
        if !options.sourceAddresses.isEmpty { nextSource = clientIndices.lowerBound % options.sourceAddresses.count }
        for index in clientIndices {
            let seed = options.seed &* 0x1000_0001 &+ UInt64(index)
            let client: any BenchClient
            switch spec {
            case .echo(let framing):
                client = makeClient(index: index, EchoCodec(protocol: framing, size: options.size, depth: options.depth, seed: seed))
            case .redis(let mix):
                client = makeClient(index: index, RedisCodec(spec: mix, options: options, connection: index, seed: seed))
            case .memcached(let mix):
                client = makeClient(index: index, MemcachedCodec(spec: mix, options: options, connection: index, seed: seed))
            case .http(let http):
                client = makeClient(index: index, HTTPCodec(spec: http, options: options, connection: index, seed: seed))
            case .custom(let custom):
                client = makeClient(index: index, CustomCodec(spec: custom, options: options, connection: index, seed: seed))
            case .user(let factory):
                client = makeClient(index: index, factory.make(BenchConnectionInfo(index: index, seed: seed, options: options)), builtIn: false)
            }
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
        if options.recordsIntervals { timers.append(scheduleIntervalSnapshots()) }
        if publishesP99 {
            // Only for a progress line: the walk costs millions of instructions when
            // latencies spread far (under valgrind, say), which a run without one is spared.
            timers.append(reactor.schedule(after: .seconds(1), repeating: .seconds(1)) { [self] _ in
                flushLatencies()
                progress.p99.store(latency.corrected.totalCount > 0 ? latency.corrected.valueAtPercentile(99) : 0, ordering: .relaxed)
            })
        }
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

    /// A client for `codec`, over TCP or UDP. Over TCP each built-in codec, with each
    /// built-in framer, gets its own specialization of the client; a codec of the user's
    /// (`builtIn` false), whose framer's type may change from one call to the next, frames
    /// through `any Framer`.
    private func makeClient<Codec: BenchCodec>(index: Int, _ codec: Codec, builtIn: Bool = true) -> any BenchClient {
        guard options.isStream else { return UDPBenchClient(worker: self, index: index, depth: options.depth, codec: codec) }
        func client<Responses: Framer>(_ makeResponses: @escaping (Codec) -> Responses) -> any BenchClient {
            TCPBenchClient(worker: self, index: index, depth: options.depth, codec: codec, makeResponses: makeResponses)
        }
        func typed<Responses: Framer>(_: Responses.Type) -> any BenchClient {
            client { $0.makeResponseFramer() as! Responses }  // a built-in codec's framer is always of one type
        }
        guard builtIn else { return client { AnyFramer(base: $0.makeResponseFramer()) } }
        // The framer by its type: the client's framing loop is compiled for it.
        switch codec.makeResponseFramer() {
        case is RESPFramer: return typed(RESPFramer.self)
        case is MemcachedFramer: return typed(MemcachedFramer.self)
        case is HTTPResponseFramer: return typed(HTTPResponseFramer.self)
        case is DelimiterFramer: return typed(DelimiterFramer.self)
        case is LengthPrefixFramer: return typed(LengthPrefixFramer.self)
        case is NetstringFramer: return typed(NetstringFramer.self)
        case is FixedLengthFramer: return typed(FixedLengthFramer.self)
        default: return client { AnyFramer(base: $0.makeResponseFramer()) }
        }
    }

    /// Lets the clients go, once the reactor thread has ended (they and the worker refer
    /// to each other).
    func releaseClients() {
        clients.removeAll()
    }

    // MARK: - Counting, called by the clients

    /// A request's response arrived, with the codec's verdict on it.
    @inline(__always)
    func completed(_ outcome: BenchOutcome, intended: UInt64, sent sentAt: UInt64) {
        if outcome.passed { responses &+= 1 }
        guard intended >= measureStart else {
            if !outcome.passed { countFailed(outcome) }
            return
        }
        guard now <= end else {
            answeredAfterEnd &+= 1
            return
        }
        guard outcome.passed else {
            if outcome.statusCode != 0 { statusCodes[Int(Swift.min(outcome.statusCode, 599))] += 1 }
            countFailed(outcome)
            return
        }
        requests &+= 1
        if outcome.statusCode != 0 { statusCodes[Int(Swift.min(outcome.statusCode, 599))] += 1 }
        switch outcome.lookup {
        case .none: break
        case .hit: hits &+= 1
        case .miss: misses &+= 1
        }
        if isOpenLoop {
            correctedCounts.record(Swift.min(now &- intended, highestLatency))
            uncorrectedCounts!.record(Swift.min(now &- sentAt, highestLatency))
        } else {
            correctedCounts.record(Swift.min(now &- sentAt, highestLatency))
        }
    }

    private func countFailed(_ outcome: BenchOutcome) {
        switch outcome.verdict {
        case .serverError: count(\.serverError)
        case .httpStatus: count(\.httpStatus)
        default: count(\.wrongResponse)
        }
    }

    /// Bytes arrived (counted in the measured window).
    @inline(__always)
    func countReceived(bytes: Int) {
        if now >= measureStart, now <= end { responseBytes &+= bytes }
    }

    /// A request counted as sent that will never be answered: the server closed the
    /// connection before it (after a `Connection: close`).
    func uncountSent(intended: UInt64) {
        if intended >= measureStart { sent &-= 1 }
    }

    /// The server ended a connection with nothing in flight (keep-alive): reopened, not an error.
    func countReconnect() {
        if !isFinished, Reactor.now >= measureStart { reconnects += 1 }
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
        flushLatencies()
        let result = WorkerResult(
            requests: requests, sent: sent, inFlightAtEnd: inFlight, answeredAfterEnd: answeredAfterEnd, responseBytes: responseBytes,
            errors: errors, warmupErrors: warmupErrors, latency: latency,
            openConnections: progress.openConnections.load(ordering: .relaxed),
            hits: hits, misses: misses, reconnects: reconnects,
            statusCodes: Dictionary(uniqueKeysWithValues: statusCodes.indices.filter { statusCodes[$0] > 0 }.map { ($0, statusCodes[$0]) }),
            intervals: intervalSnapshots)
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
    var hits = 0
    var misses = 0
    var reconnects = 0
    var statusCodes: [Int: Int] = [:]
    var intervals: [Histogram<UInt64>] = []
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
