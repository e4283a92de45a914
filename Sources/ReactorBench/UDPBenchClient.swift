import ReactorCore

/// One connected UDP socket of load, with `depth` request slots, each holding the bytes
/// of its request. A datagram goes to the oldest request in flight that the codec says
/// it answers (the echo codec compares the sequence number in the first 8 bytes); one
/// that answers none, a reply to a request already counted lost, is ignored.
final class UDPBenchClient<Codec: BenchCodec>: BenchClient, DatagramHandler {
    // Confined to the worker's reactor thread: the state touched per request has no
    // dynamic exclusivity checks (see BenchWorker).
    private let worker: BenchWorker
    @exclusivity(unchecked) private var codec: Codec
    private let index: Int
    private let depth: Int
    private let verify: Bool
    private let room: Int
    private let requests: UnsafeMutableRawBufferPointer
    private let length: UnsafeMutablePointer<Int>
    private let tag: UnsafeMutablePointer<UInt64>
    /// The order requests left in: the oldest in flight has the smallest.
    private let order: UnsafeMutablePointer<Int>
    private let intended: UnsafeMutablePointer<UInt64>
    private let sent: UnsafeMutablePointer<UInt64>
    private let active: UnsafeMutablePointer<Bool>
    /// Free slots, a stack.
    private let free: UnsafeMutablePointer<Int>
    @exclusivity(unchecked) private var freeCount: Int
    @exclusivity(unchecked) private var sequence = 0
    @exclusivity(unchecked) private(set) var inFlight = 0
    @exclusivity(unchecked) var nextIntended: UInt64 = 0

    @exclusivity(unchecked) private var socket: UDPSocket?
    private var stopped = false
    private var retryTimer: ReactorTimer?

    init(worker: BenchWorker, index: Int, depth: Int, codec: Codec) {
        self.worker = worker
        self.codec = codec
        self.index = index
        self.depth = depth
        verify = worker.options.verify
        room = codec.maxRequestLength
        requests = .allocate(byteCount: Swift.max(room * depth, 1), alignment: 8)
        length = .allocate(capacity: depth)
        tag = .allocate(capacity: depth)
        order = .allocate(capacity: depth)
        intended = .allocate(capacity: depth)
        sent = .allocate(capacity: depth)
        active = .allocate(capacity: depth)
        free = .allocate(capacity: depth)
        for slot in 0..<depth {
            active[slot] = false
            free[slot] = depth - 1 - slot
        }
        freeCount = depth
    }

    deinit {
        requests.deallocate()
        length.deallocate()
        tag.deallocate()
        order.deallocate()
        intended.deallocate()
        sent.deallocate()
        active.deallocate()
        free.deallocate()
    }

    // MARK: - Driving

    func connect() {
        guard !stopped, socket == nil else { return }
        var options = UDPOptions()
        options.maxDatagramSize = Swift.max(2 * worker.options.size, 2 * room, 2048)
        do {
            socket = try worker.reactor.connectUDP(to: worker.address, options: options, handler: self)
        } catch {
            worker.countConnectFailure(error)
            retryTimer = worker.reactor.schedule(after: .milliseconds(50)) { [weak self] _ in self?.connect() }
            return
        }
        worker.connectionOpened()
        worker.now = Reactor.now
        if worker.isOpenLoop {
            pump()
        } else {
            while freeCount > 0 { send(slot: takeFree(), intended: worker.now) }
        }
    }

    func pump() {
        guard socket != nil, worker.isSending else { return }
        let now = worker.now
        let interval = worker.interval!
        while nextIntended <= now, freeCount > 0 {
            send(slot: takeFree(), intended: nextIntended)
            nextIntended &+= interval
        }
    }

    func expire(olderThan deadline: UInt64) {
        guard inFlight > 0 else { return }
        for slot in 0..<depth where active[slot] && sent[slot] < deadline {
            worker.count(\.lost)
            retire(slot)
            if !worker.isOpenLoop { send(slot: takeFree(), intended: worker.now) }
        }
    }

    func stop() {
        stopped = true
        retryTimer?.cancel()
        socket?.close()
    }

    private func takeFree() -> Int {
        freeCount -= 1
        return free[freeCount]
    }

    private func retire(_ slot: Int) {
        active[slot] = false
        inFlight -= 1
        free[freeCount] = slot
        freeCount += 1
    }

    @inline(__always)
    private func request(_ slot: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: requests[(slot * room)..<(slot * room + length[slot])])
    }

    /// Builds and sends slot's request.
    private func send(slot: Int, intended intendedAt: UInt64) {
        guard let socket else { return }
        var buffer = BenchRequestBuffer(storage: UnsafeMutableRawBufferPointer(rebasing: requests[(slot * room)..<((slot + 1) * room)]))
        codec.encodeRequest(into: &buffer, context: BenchRequestContext(connection: index, sequence: sequence))
        order[slot] = sequence
        sequence &+= 1
        length[slot] = buffer.count
        tag[slot] = buffer.tag
        active[slot] = true
        inFlight += 1
        intended[slot] = intendedAt
        sent[slot] = worker.now
        worker.countSent(intended: intendedAt)
        socket.send(request(slot))
    }

    // MARK: - DatagramHandler

    @_specialize(exported: false, where Codec == EchoCodec)
    @_specialize(exported: false, where Codec == CustomCodec)
    func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        worker.now = Reactor.now
        worker.countReceived(bytes: datagram.byteCount)
        var found = -1
        for slot in 0..<depth where active[slot] && (found < 0 || order[slot] < order[found]) {
            if codec.datagram(datagram, answers: unsafe RawSpan(_unsafeBytes: request(slot)), tag: tag[slot]) { found = slot }
        }
        // Not in flight: the answer to a request already counted lost.
        guard found >= 0 else { return }
        let outcome = verify ? codec.check(response: datagram, request: unsafe RawSpan(_unsafeBytes: request(found)), tag: tag[found]) : .ok
        let intendedAt = intended[found]
        let sentAt = sent[found]
        retire(found)
        worker.completed(outcome, intended: intendedAt, sent: sentAt)
        guard worker.isSending else { return }
        if worker.isOpenLoop {
            pump()
        } else {
            send(slot: takeFree(), intended: worker.now)
        }
    }

    func errorCaught(_ error: ReactorError, on socket: UDPSocket) {
        switch error.code {
        case .connectionRefused: worker.count(\.refused)
        default: worker.count(\.sendFailed)
        }
    }

    func closed(_ socket: UDPSocket) {
        self.socket = nil
        worker.connectionClosed()
    }
}
