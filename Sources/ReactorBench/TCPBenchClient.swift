import ReactorCore
import ReactorFraming

/// One TCP connection of load. It frames responses with its codec's framer (through a
/// ``FramedConnection`` it forwards the connection's events to), has the codec check each
/// against the oldest request in flight, and builds the next request into that request's
/// slot of a fixed ring: nothing is allocated per request.
final class TCPBenchClient<Codec: BenchCodec>: BenchClient, ConnectionHandler, FrameHandler {
    // Confined to the worker's reactor thread: the state touched per request has no
    // dynamic exclusivity checks (see BenchWorker). The worker is a plain strong
    // reference: callgrind shows one retain and release per response with it (40 of about
    // 450 instructions); unowned(unsafe) made that three, and Unmanaged is not worth its
    // unsafety for the rest.
    private let worker: BenchWorker
    @exclusivity(unchecked) private var codec: Codec
    private let index: Int
    private let behavior: ClientBehavior
    private let verify: Bool
    @exclusivity(unchecked) private var queue: InFlightQueue
    @exclusivity(unchecked) private var sequence = 0
    @exclusivity(unchecked) var nextIntended: UInt64 = 0

    private var framed: FramedConnection?
    @exclusivity(unchecked) private var connection: Connection?
    private var pending: PendingConnect?
    /// This side is closing the connection (churn, an error already counted, the server's
    /// `Connection: close`, the end): its close is not another error.
    @exclusivity(unchecked) private var closingOnPurpose = false
    private var answered = false
    private var stopped = false
    private var reconnectTimer: ReactorTimer?

    /// Client `index` of `worker`, speaking through `codec`.
    init(worker: BenchWorker, index: Int, depth: Int, codec: Codec) {
        self.worker = worker
        self.codec = codec
        self.index = index
        behavior = ClientBehavior(worker.options)
        verify = worker.options.verify
        queue = InFlightQueue(capacity: depth, requestRoom: codec.maxRequestLength)
    }

    deinit {
        queue.deallocate()
    }

    var inFlight: Int { queue.count }

    // MARK: - Driving

    func connect() {
        guard !stopped, connection == nil, pending == nil else { return }
        framed = FramedConnection(framer: codec.makeResponseFramer(), handler: self)
        pending = worker.reactor.connect(to: worker.address, timeout: worker.options.connectTimeout, handler: self)
        if behavior == .churn { nextIntended = Reactor.now }
    }

    /// Open loop: sends what is due, as far as the depth allows.
    @_specialize(exported: false, where Codec == EchoCodec)
    @_specialize(exported: false, where Codec == RedisCodec)
    @_specialize(exported: false, where Codec == MemcachedCodec)
    @_specialize(exported: false, where Codec == HTTPCodec)
    @_specialize(exported: false, where Codec == CustomCodec)
    func pump() {
        guard let connection, !closingOnPurpose, worker.isSending else { return }
        let now = worker.now
        guard nextIntended <= now, !queue.isFull else { return }
        let interval = worker.interval!
        connection.withBatchedWrites {
            while nextIntended <= now, !queue.isFull {
                send(on: connection, intended: nextIntended, sent: now)
                nextIntended &+= interval
            }
        }
    }

    func expire(olderThan deadline: UInt64) {
        guard queue.count > 0, queue.oldestTimes.sent < deadline, connection != nil else { return }
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

    @inline(__always)
    private func send(on connection: Connection, intended: UInt64, sent: UInt64) {
        var (slot, buffer) = queue.append(intended: intended, sent: sent)
        codec.encodeRequest(into: &buffer, context: BenchRequestContext(connection: index, sequence: sequence))
        sequence &+= 1
        queue.commit(slot, length: buffer.count, tag: buffer.tag)
        worker.countSent(intended: intended)
        connection.write(queue.request(slot).bytes)
    }

    /// Fills the connection up to its depth (closed loop) or to what is due (open loop).
    private func sendInitial(on connection: Connection) {
        worker.now = Reactor.now
        let now = worker.now
        guard worker.isSending else { return }
        switch behavior {
        case .openLoop:
            pump()
        case .closedLoop:
            connection.withBatchedWrites {
                while !queue.isFull { send(on: connection, intended: now, sent: now) }
            }
        case .churn:
            send(on: connection, intended: nextIntended, sent: nextIntended)
        case .idle:
            if !answered { send(on: connection, intended: now, sent: now) }
        }
    }

    /// Aborts after an error that is already counted; the connection is reopened.
    private func drop() {
        closingOnPurpose = true
        connection?.abort()
    }

    /// The server said it closes after the response just handled: the requests sent
    /// behind it will not be answered, so they do not count as sent, and the connection
    /// is closed from this side and reopened.
    private func serverEndsConnection() {
        for offset in 0..<queue.count { worker.uncountSent(intended: queue.intended(at: offset)) }
        queue.removeAll()
        worker.countReconnect()
        closingOnPurpose = true
        connection?.close()
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
        worker.countReceived(bytes: bytes.byteCount)
        framed?.received(bytes, on: connection)
    }

    func inputClosed(_ connection: Connection) {
        framed?.inputClosed(connection)
    }

    func closed(_ connection: Connection, reason: CloseReason) {
        framed?.closed(connection, reason: reason)
        framed = nil
        self.connection = nil
        worker.connectionClosed()
        if !closingOnPurpose, !stopped {
            if queue.count == 0, behavior != .idle {
                // Nothing was asked of it: a keep-alive connection the server ended.
                worker.countReconnect()
            } else if case .reset = reason {
                worker.count(\.reset)
            } else {
                worker.count(\.closed)
            }
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

    // Specialized for the built-in codecs: a generic class's methods are not specialized
    // otherwise, and every codec call would go through its witness table (callgrind, line
    // 50 x 64: 568 instructions per response unspecialized, 452 specialized).
    @_specialize(exported: false, where Codec == EchoCodec)
    @_specialize(exported: false, where Codec == RedisCodec)
    @_specialize(exported: false, where Codec == MemcachedCodec)
    @_specialize(exported: false, where Codec == HTTPCodec)
    @_specialize(exported: false, where Codec == CustomCodec)
    func received(frame: RawSpan, on framed: FramedConnection) {
        guard queue.count > 0, !closingOnPurpose else {
            if !closingOnPurpose {
                worker.count(\.wrongResponse)  // a response nobody asked for
                drop()
            }
            return
        }
        let slot = queue.oldest
        let (intended, sent) = queue.oldestTimes
        let outcome: BenchOutcome
        if verify {
            let (request, tag) = queue.request(slot)
            outcome = codec.check(response: frame, request: unsafe RawSpan(_unsafeBytes: request), tag: tag)
        } else {
            outcome = .ok
        }
        queue.removeOldest()
        worker.completed(outcome, intended: intended, sent: sent)
        if outcome.closesConnection {
            serverEndsConnection()
            return
        }
        guard let connection, worker.isSending else { return }
        switch behavior {
        case .openLoop:
            pump()
        case .closedLoop:
            let now = worker.now
            send(on: connection, intended: now, sent: now)
        case .churn:
            closingOnPurpose = true
            connection.close()
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
