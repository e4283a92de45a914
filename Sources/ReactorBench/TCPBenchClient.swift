import ReactorCore
import ReactorFraming

/// One TCP connection of load. It frames responses with the protocol's framer (through a
/// ``FramedConnection`` it forwards the connection's events to), checks each against the
/// oldest request in flight, and sends the next from preallocated buffers: nothing is
/// allocated per request.
final class TCPBenchClient: BenchClient, ConnectionHandler, FrameHandler {
    // Confined to the worker's reactor thread. On the per-request path the worker and the
    // connection are used through unmanaged references (a retain and release per use
    // otherwise), and Swift's dynamic exclusivity checks are off: both would cost more
    // than the bookkeeping itself.
    private let workerReference: Unmanaged<BenchWorker>
    private var worker: BenchWorker { workerReference.takeUnretainedValue() }
    private let requests: RequestSet
    private let behavior: ClientBehavior
    private let verify: Bool
    @exclusivity(unchecked) private var queue: InFlightQueue
    @exclusivity(unchecked) private var nextRequest = 0
    @exclusivity(unchecked) var nextIntended: UInt64 = 0

    private var framed: FramedConnection?
    private var connection: Connection? {
        didSet { borrowedConnection = connection.map { Unmanaged.passUnretained($0) } }
    }
    /// The same connection without a retain per use: `connection` owns it.
    @exclusivity(unchecked) private var borrowedConnection: Unmanaged<Connection>?
    private var pending: PendingConnect?
    /// This side is closing the connection (churn, an error already counted, the end):
    /// its close is not another error.
    @exclusivity(unchecked) private var closingOnPurpose = false
    private var answered = false
    private var stopped = false
    private var reconnectTimer: ReactorTimer?

    /// A client of `worker`, which outlives it.
    init(worker: BenchWorker, depth: Int, requests: RequestSet) {
        workerReference = Unmanaged.passUnretained(worker)
        self.requests = requests
        behavior = ClientBehavior(worker.options)
        verify = worker.options.verify
        queue = InFlightQueue(capacity: depth)
    }

    deinit {
        queue.deallocate()
    }

    var inFlight: Int { queue.count }

    // MARK: - Driving

    func connect() {
        guard !stopped, connection == nil, pending == nil else { return }
        let worker = self.worker
        framed = FramedConnection(framer: worker.options.protocol.responseFramer(size: worker.options.size)!, handler: self)
        pending = worker.reactor.connect(to: worker.address, timeout: worker.options.connectTimeout, handler: self)
        if behavior == .churn { nextIntended = Reactor.now }
    }

    func pump() {
        workerReference._withUnsafeGuaranteedRef { pump(worker: $0) }
    }

    func expire(olderThan deadline: UInt64) {
        guard queue.count > 0, queue.oldest.sent < deadline, connection != nil else { return }
        worker.count(\.timeout)
        drop()
    }

    func stop() {
        stopped = true
        reconnectTimer?.cancel()
        pending?.cancel()
        pending = nil
        closingOnPurpose = true
        connection?.abort()
        if connection == nil { framed = nil }  // it holds this client as its handler
    }

    /// Open loop: sends what is due, as far as the depth allows.
    private func pump(worker: BenchWorker) {
        guard let borrowedConnection, !closingOnPurpose, worker.isSending else { return }
        let now = worker.now
        guard nextIntended <= now, !queue.isFull else { return }
        let interval = worker.interval!
        borrowedConnection._withUnsafeGuaranteedRef { connection in
            connection.withBatchedWrites {
                while nextIntended <= now, !queue.isFull {
                    send(on: connection, worker: worker, intended: nextIntended, sent: now)
                    nextIntended &+= interval
                }
            }
        }
    }

    @inline(__always)
    private func send(on connection: Connection, worker: BenchWorker, intended: UInt64, sent: UInt64) {
        let index = nextRequest
        nextRequest += 1
        if nextRequest == requests.count { nextRequest = 0 }
        queue.append(request: index, intended: intended, sent: sent)
        worker.countSent(intended: intended)
        connection.write(requests.wire(index))
    }

    /// Fills the connection up to its depth (closed loop) or to what is due (open loop).
    private func sendInitial(on connection: Connection) {
        let worker = self.worker
        worker.now = Reactor.now
        let now = worker.now
        guard worker.isSending else { return }
        switch behavior {
        case .openLoop:
            pump(worker: worker)
        case .closedLoop:
            connection.withBatchedWrites {
                while !queue.isFull { send(on: connection, worker: worker, intended: now, sent: now) }
            }
        case .churn:
            send(on: connection, worker: worker, intended: nextIntended, sent: nextIntended)
        case .idle:
            if !answered { send(on: connection, worker: worker, intended: now, sent: now) }
        }
    }

    /// Aborts after an error that is already counted; the connection is reopened.
    private func drop() {
        closingOnPurpose = true
        connection?.abort()
    }

    // MARK: - ConnectionHandler (forwarded to the framing adapter)

    func opened(_ connection: Connection) {
        pending = nil
        self.connection = connection
        closingOnPurpose = false
        worker.connectionOpened()
        framed?.opened(connection)
        sendInitial(on: connection)
    }

    func received(_ bytes: RawSpan, on connection: Connection) {
        worker.now = Reactor.now
        framed?.received(bytes, on: connection)
    }

    func inputClosed(_ connection: Connection) {
        framed?.inputClosed(connection)
    }

    func closed(_ connection: Connection, reason: CloseReason) {
        framed?.closed(connection, reason: reason)
        framed = nil
        self.connection = nil
        let worker = self.worker
        worker.connectionClosed()
        if !closingOnPurpose, !stopped {
            if case .reset = reason { worker.count(\.reset) } else { worker.count(\.closed) }
        }
        queue.removeAll()
        closingOnPurpose = false
        guard !stopped else { return }
        if behavior == .idle, answered {
            return  // an idle connection the server dropped stays dropped: its memory is gone too
        }
        connect()
    }

    func connectFailed(_ error: ReactorError) {
        pending = nil
        framed = nil
        guard !stopped else { return }
        worker.countConnectFailure(error)
        // Back off a little: a server that refuses at once would otherwise spin the loop.
        reconnectTimer = worker.reactor.schedule(after: .milliseconds(50)) { [weak self] _ in self?.connect() }
    }

    // MARK: - FrameHandler

    func received(frame: RawSpan, on framed: FramedConnection) {
        workerReference._withUnsafeGuaranteedRef { respond(to: frame, worker: $0) }
    }

    @inline(__always)
    private func respond(to frame: RawSpan, worker: BenchWorker) {
        guard queue.count > 0, !closingOnPurpose else {
            if !closingOnPurpose {
                worker.count(\.wrongResponse)  // a response nobody asked for
                drop()
            }
            return
        }
        let (index, intended, sent) = queue.oldest
        if verify {
            guard frame.withUnsafeBytes({ requests.matches(index, $0) }) else {
                worker.count(\.wrongResponse)
                drop()
                return
            }
        }
        queue.removeOldest()
        worker.completed(intended: intended, sent: sent, bytes: requests.wireLength)
        guard let borrowedConnection, worker.isSending else { return }
        switch behavior {
        case .openLoop:
            pump(worker: worker)
        case .closedLoop:
            let now = worker.now
            borrowedConnection._withUnsafeGuaranteedRef { send(on: $0, worker: worker, intended: now, sent: now) }
        case .churn:
            closingOnPurpose = true
            borrowedConnection._withUnsafeGuaranteedRef { $0.close() }
        case .idle:
            answered = true
        }
    }

    func framingFailed(_ error: FramingError, on framed: FramedConnection) {
        worker.count(\.framing)
        drop()
    }
}

/// What a client does after each response, fixed for the run (read once, not through the
/// options on every response).
enum ClientBehavior: Equatable {
    case closedLoop, openLoop, churn, idle

    init(_ options: BenchOptions) {
        switch options.mode {
        case .requests: self = options.rate == nil ? .closedLoop : .openLoop
        case .churn: self = .churn
        case .idle: self = .idle
        }
    }
}
