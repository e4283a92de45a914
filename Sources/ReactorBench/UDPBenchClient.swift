import ReactorCore

/// One connected UDP socket of load, with `depth` request slots. Each request carries a
/// sequence number in its first 8 bytes, so a datagram that comes back late, after its
/// request was counted lost, is recognised and ignored rather than matched to the wrong
/// request; the rest of the datagram must equal the request byte for byte.
final class UDPBenchClient: BenchClient, DatagramHandler {
    private unowned(unsafe) let worker: BenchWorker
    /// One buffer per slot: slot `i` always sends from request `i`, stamped afresh.
    private let requests: RequestSet
    private let depth: Int
    private let verify: Bool
    private let sequence: UnsafeMutablePointer<UInt64>
    private let intended: UnsafeMutablePointer<UInt64>
    private let sent: UnsafeMutablePointer<UInt64>
    private let active: UnsafeMutablePointer<Bool>
    /// Free slots, a stack (open loop).
    private let free: UnsafeMutablePointer<Int>
    private var freeCount: Int
    private(set) var inFlight = 0
    var nextIntended: UInt64 = 0

    private var socket: UDPSocket?
    private var stopped = false
    private var retryTimer: ReactorTimer?

    init(worker: BenchWorker, depth: Int, seed: UInt64) {
        self.worker = worker
        self.depth = depth
        verify = worker.options.verify
        requests = RequestSet(protocol: .udp, size: worker.options.size, count: depth, seed: seed)
        sequence = .allocate(capacity: depth)
        intended = .allocate(capacity: depth)
        sent = .allocate(capacity: depth)
        active = .allocate(capacity: depth)
        free = .allocate(capacity: depth)
        for slot in 0..<depth {
            sequence[slot] = UInt64(slot)
            active[slot] = false
            free[slot] = depth - 1 - slot
        }
        freeCount = depth
    }

    deinit {
        sequence.deallocate()
        intended.deallocate()
        sent.deallocate()
        active.deallocate()
        free.deallocate()
    }

    // MARK: - Driving

    func connect() {
        guard !stopped, socket == nil else { return }
        var options = UDPOptions()
        options.maxDatagramSize = Swift.max(2 * worker.options.size, 2048)
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

    /// Sends slot's request with a new sequence number (the slot's number plus a multiple
    /// of the depth, so a sequence number names its slot).
    private func send(slot: Int, intended intendedAt: UInt64) {
        guard let socket else { return }
        sequence[slot] &+= UInt64(depth)
        requests.stamp(slot, with: sequence[slot])
        active[slot] = true
        inFlight += 1
        intended[slot] = intendedAt
        sent[slot] = worker.now
        worker.countSent(intended: intendedAt)
        socket.send(requests.wire(slot))
    }

    // MARK: - DatagramHandler

    func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        worker.now = Reactor.now
        guard datagram.byteCount >= 8 else {
            worker.count(\.wrongResponse)
            return
        }
        let number = datagram.loadLittleEndian(UInt64.self, at: 0)
        let slot = Int(number % UInt64(depth))
        // Not in flight under this number: the answer to a request already counted lost.
        guard active[slot], sequence[slot] == number else { return }
        if verify {
            guard datagram.withUnsafeBytes({ requests.matches(slot, $0) }) else {
                worker.count(\.wrongResponse)
                retire(slot)
                if !worker.isOpenLoop { send(slot: takeFree(), intended: worker.now) }
                return
            }
        }
        let intendedAt = intended[slot]
        let sentAt = sent[slot]
        retire(slot)
        worker.completed(intended: intendedAt, sent: sentAt, bytes: requests.wireLength)
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
