import ReactorCore
import ReactorFraming

/// One TCP connection of load. It cuts responses out of each read with its codec's
/// framer, has the codec check each against the oldest request in flight, and builds the
/// next requests into a fixed ring, written together once the read that made them is
/// handled: nothing is allocated per request.
///
/// It frames the stream itself rather than through a `FramedConnection`: with the framer's
/// type (`Responses`) known here, the framing loop, the framer and the response's
/// handling compile into one specialized function, where the adapter reached the framer
/// through `any Framer` (the bench's framers are not among ReactorFraming's specialized
/// ones) and this client through `any FrameHandler`, per response.
final class TCPBenchClient<Codec: BenchCodec, Responses: Framer>: BenchClient, ConnectionHandler {
    // Confined to the worker's reactor thread: the state touched per request has no
    // dynamic exclusivity checks (see BenchWorker). The worker is a plain strong
    // reference, read without a retain per response (callgrind, Redis SET: the retain and
    // release per response once put down to it were the `guard let connection` binding
    // around the next request); unowned(unsafe) made three of them.
    private let worker: BenchWorker
    @exclusivity(unchecked) private var codec: Codec
    private let index: Int
    private let behavior: ClientBehavior
    private let verify: Bool
    @exclusivity(unchecked) private var queue: InFlightQueue
    @exclusivity(unchecked) private var sequence = 0
    @exclusivity(unchecked) var nextIntended: UInt64 = 0

    /// The framer of the connection open now, a new one from `makeResponses` per connection.
    @exclusivity(unchecked) private var responses: Responses
    private let makeResponses: (Codec) -> Responses
    /// The start of a response that a read ended in, until the rest comes: storage from
    /// the reactor's pool only while it holds bytes.
    @exclusivity(unchecked) private var partial = ByteQueue()
    @exclusivity(unchecked) private var connection: Connection?
    private var pending: PendingConnect?
    /// This side is closing the connection (churn, an error already counted, the server's
    /// `Connection: close`, the end): its close is not another error.
    @exclusivity(unchecked) private var closingOnPurpose = false
    private var answered = false
    private var stopped = false
    private var reconnectTimer: ReactorTimer?

    /// Client `index` of `worker`, speaking through `codec`, its responses cut by the
    /// framers `makeResponses` makes from it (the codec's response framer, by its type).
    init(worker: BenchWorker, index: Int, depth: Int, codec: Codec, makeResponses: @escaping (Codec) -> Responses) {
        self.worker = worker
        self.codec = codec
        self.makeResponses = makeResponses
        responses = makeResponses(codec)
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
        responses = makeResponses(codec)
        pending = worker.reactor.connect(
            to: worker.address, from: worker.nextSourceAddress(), timeout: worker.options.connectTimeout, handler: self)
        if behavior == .churn { nextIntended = Reactor.now }
    }

    /// Open loop: sends what is due, as far as the depth allows.
    @_specialize(exported: false, where Codec == RedisCodec, Responses == RESPFramer)
    @_specialize(exported: false, where Codec == MemcachedCodec, Responses == MemcachedFramer)
    @_specialize(exported: false, where Codec == HTTPCodec, Responses == HTTPResponseFramer)
    @_specialize(exported: false, where Codec == EchoCodec, Responses == DelimiterFramer)
    @_specialize(exported: false, where Codec == EchoCodec, Responses == LengthPrefixFramer)
    @_specialize(exported: false, where Codec == EchoCodec, Responses == NetstringFramer)
    @_specialize(exported: false, where Codec == EchoCodec, Responses == FixedLengthFramer)
    @_specialize(exported: false, where Codec == CustomCodec, Responses == DelimiterFramer)
    @_specialize(exported: false, where Codec == CustomCodec, Responses == LengthPrefixFramer)
    @_specialize(exported: false, where Codec == CustomCodec, Responses == NetstringFramer)
    @_specialize(exported: false, where Codec == CustomCodec, Responses == FixedLengthFramer)
    func pump() {
        guard let connection, !closingOnPurpose, worker.isSending else { return }
        sendDue()
        writeRequests(on: connection)
    }

    /// Open loop: builds the requests that are due, as far as the depth allows.
    @inline(__always)
    private func sendDue() {
        let now = worker.now
        guard nextIntended <= now, !queue.isFull else { return }
        let interval = worker.interval!
        while nextIntended <= now, !queue.isFull {
            send(intended: nextIntended, sent: now)
            nextIntended &+= interval
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
    }

    /// Builds the next request in the ring; ``writeRequests(on:)`` sends it.
    @inline(__always)
    private func send(intended: UInt64, sent: UInt64) {
        var (slot, buffer) = queue.append(intended: intended, sent: sent)
        codec.encodeRequest(into: &buffer, context: BenchRequestContext(connection: index, sequence: sequence))
        sequence &+= 1
        queue.commit(slot, length: buffer.count, tag: buffer.tag)
        worker.countSent(intended: intended)
    }

    /// Writes the requests built since the last write, in one `sendmsg` even when they
    /// wrap around the ring.
    @inline(__always)
    private func writeRequests(on connection: Connection) {
        queue.takeUnsent { first, second in
            if second.isEmpty { connection.write(first) } else { connection.write(first, second) }
        }
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
            while !queue.isFull { send(intended: now, sent: now) }
            writeRequests(on: connection)
        case .churn:
            send(intended: nextIntended, sent: nextIntended)
            writeRequests(on: connection)
        case .idle:
            if !answered {
                send(intended: now, sent: now)
                writeRequests(on: connection)
            }
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

    // MARK: - ConnectionHandler

    func opened(_ connection: Connection) {
        pending = nil
        self.connection = connection
        closingOnPurpose = false
        worker.connectionOpened()
        // A partial response is not progress: the idle timeout, when one is set, counts
        // whole responses.
        connection.countIdleInputByProgress()
        sendInitial(on: connection)
    }

    // Specialized for the built-in codecs and their framers: a generic class's methods
    // are not specialized otherwise, and every codec and framer call would go through a
    // witness table (callgrind, line 50 x 64: 568 instructions per response
    // unspecialized, 452 specialized).
    @_specialize(exported: false, where Codec == RedisCodec, Responses == RESPFramer)
    @_specialize(exported: false, where Codec == MemcachedCodec, Responses == MemcachedFramer)
    @_specialize(exported: false, where Codec == HTTPCodec, Responses == HTTPResponseFramer)
    @_specialize(exported: false, where Codec == EchoCodec, Responses == DelimiterFramer)
    @_specialize(exported: false, where Codec == EchoCodec, Responses == LengthPrefixFramer)
    @_specialize(exported: false, where Codec == EchoCodec, Responses == NetstringFramer)
    @_specialize(exported: false, where Codec == EchoCodec, Responses == FixedLengthFramer)
    @_specialize(exported: false, where Codec == CustomCodec, Responses == DelimiterFramer)
    @_specialize(exported: false, where Codec == CustomCodec, Responses == LengthPrefixFramer)
    @_specialize(exported: false, where Codec == CustomCodec, Responses == NetstringFramer)
    @_specialize(exported: false, where Codec == CustomCodec, Responses == FixedLengthFramer)
    func received(_ bytes: RawSpan, on connection: Connection) {
        guard !closingOnPurpose else { return }  // an error already counted: the rest is dropped
        worker.now = Reactor.now
        worker.countReceived(bytes: bytes.byteCount)
        bytes.withUnsafeBytes { bytes in
            let pool = connection.reactor.bufferPool
            if partial.isEmpty {
                let used = deliver(bytes, on: connection)
                if used < bytes.count { partial.append(UnsafeRawBufferPointer(rebasing: bytes[used...]), pool: pool) }
            } else {
                // The rare read that finishes a response: joined to its start, framed from there.
                partial.append(bytes, pool: pool)
                let used = deliver(partial.bytes, on: connection)
                partial.consume(used, pool: pool)
            }
        }
        // The requests that replace this read's responses leave together.
        writeRequests(on: connection)
    }

    func closed(_ connection: Connection, reason: CloseReason) {
        partial.release(pool: connection.reactor.bufferPool)
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
        guard !stopped else { return }
        worker.countConnectFailure(error)
        // Back off a little: a server that refuses at once would otherwise spin the loop.
        reconnectTimer = worker.reactor.schedule(after: .milliseconds(50)) { [weak self] _ in self?.connect() }
    }

    // MARK: - Responses

    /// Cuts the whole responses out of the front of `bytes` and handles each; returns the
    /// bytes used. Stops early when this side closes (an error, churn, the server's close)
    /// or the framing fails, then the rest counts as used.
    @inline(__always)
    private func deliver(_ bytes: UnsafeRawBufferPointer, on connection: Connection) -> Int {
        var offset = 0
        while offset < bytes.count, !closingOnPurpose {
            let rest = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            let found: FrameSearch
            do {
                found = try responses.nextFrame(in: rest)
            } catch {
                framingFailed(error, on: connection)
                return bytes.count
            }
            guard case .frame(let payload, let frameLength) = found else {
                // The rest is one unfinished response. The built-in framers refuse one
                // over their limit themselves; this bounds a codec's own framer too.
                if rest.byteCount - 2 * FramerLimits.maxHeaderLength > responses.maxFrameLength {  // no overflow near Int.max
                    framingFailed(.frameTooLong(length: nil, limit: responses.maxFrameLength), on: connection)
                    return bytes.count
                }
                break
            }
            precondition(
                frameLength > 0 && frameLength <= rest.byteCount && payload.lowerBound >= 0 && payload.upperBound <= frameLength,
                "\(Responses.self).nextFrame returned frame(payload: \(payload), frameLength: \(frameLength)) for \(rest.byteCount) bytes")
            offset += frameLength
            received(response: rest.extracting(payload))
        }
        if offset > 0 { connection.inputMadeProgress() }
        return closingOnPurpose ? bytes.count : offset
    }

    /// One response: checked against the oldest request in flight, counted, and replaced
    /// by the next request.
    @inline(__always)
    private func received(response frame: RawSpan) {
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
        // Not `guard let connection`: a retain and release of it around every request.
        guard connection != nil, worker.isSending else { return }
        switch behavior {
        case .openLoop:
            sendDue()  // written with the rest of the read's requests
        case .closedLoop:
            let now = worker.now
            send(intended: now, sent: now)
        case .churn:
            closingOnPurpose = true
            connection?.close()
        case .idle:
            answered = true
        }
    }

    /// A response the framer refuses: counted, and the connection dropped (and reopened).
    private func framingFailed(_ error: FramingError, on connection: Connection) {
        connection.noteFramingFailure()
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
