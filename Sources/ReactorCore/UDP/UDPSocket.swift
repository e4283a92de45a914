import Glibc
import Logging

/// A UDP socket on a ``Reactor``: receives datagrams in batches and hands each, whole, to
/// its ``DatagramHandler``. Made by ``Reactor/bindUDP(host:port:options:handler:)`` or
/// ``Reactor/connectUDP(to:options:handler:)``.
///
/// Receiving takes up to ``UDPOptions/receiveBatch`` datagrams per `recvmmsg` (each may be
/// a run of datagrams coalesced by the kernel, ``UDPOptions/receiveOffload``), and at most
/// ``UDPOptions/maxBatchesPerWakeup`` batches before the loop turns to other sockets.
/// Replies sent from inside ``DatagramHandler/received(_:from:on:)`` go out together in
/// one `sendmmsg` when the batch has been handled; other sends go out at once. Runs of
/// equal-sized replies to one destination (an echo of a client's burst) travel as one
/// UDP_SEGMENT message where the kernel supports it (``UDPOptions/segmentationOffload``).
///
/// Sending never waits and never queues: UDP has no flow control to wait for, so a
/// datagram the kernel cannot take now is dropped, counted, and reported, like one lost
/// on the wire.
public final class UDPSocket {
    /// The reactor this socket belongs to, held strongly like every object a reactor
    /// makes (docs/architecture.md, "Ownership").
    public let reactor: Reactor
    /// The socket.
    package let fileDescriptor: Int32
    /// The bound address; with port 0 requested, this holds the port the kernel chose.
    public private(set) var localAddress: SocketAddress
    /// The peer set by ``connect(to:)``: the only source accepted and the destination of
    /// ``send(_:to:)-(RawSpan,_)`` without an address.
    public private(set) var remoteAddress: SocketAddress?
    /// The socket's settings.
    public let options: UDPOptions
    /// True until ``close()``.
    public var isOpen: Bool { state.isOpen }
    /// What the socket has received, sent, dropped and refused.
    public var counters: UDPCounters { state.counters }

    /// The socket's mutable state, in one place behind one attribute: it is touched only
    /// on its reactor's thread, and dynamic exclusivity checks on it cost more than the
    /// rest of a datagram's user-space work (docs/performance.md, "Ledger of tricks").
    private struct State {
        var isOpen = true
        var counters = UDPCounters()
        var handler: (any DatagramHandler)?
        /// The reply batch's slots (in `replies`), how many are used, and how many bytes
        /// of its storage copied replies hold.
        var replySlots: UnsafeMutablePointer<Datagram>?
        var replyCount = 0
        var replyBytes = 0
        /// The bytes of the receive batch being handled (nil outside one): replies that
        /// lie inside need no copy.
        var receiving: UnsafeRawBufferPointer?
        /// Nonzero while batched replies may use UDP segmentation offload.
        var segmentation: Int32
    }
    @exclusivity(unchecked) private var state: State
    private var events = LoopEvents(count: 1)
    /// Replies batched while a receive batch is handled, flushed when it ends.
    private var replies: DatagramArea?

    init(reactor: Reactor, fd: Int32, localAddress: SocketAddress, options: UDPOptions, handler: any DatagramHandler) {
        self.reactor = reactor
        self.fileDescriptor = fd
        self.localAddress = localAddress
        self.options = options
        self.state = State(handler: handler, segmentation: options.segmentationOffload ? 1 : 0)
        events.assign(0, on: reactor.base, .readable(fd), owner: self) { _, _, context in
            LoopEvents.withOwner(context, UDPSocket.self) { $0.readable() }
        }
    }

    deinit {
        if state.isOpen { Socket.close(fileDescriptor) }
    }

    func start() {
        events.arm(0)
        reactor.registry.insert(.udpSocket(self))
        reactor.runSoon { [self] in
            if state.isOpen, let handler = state.handler { handler.opened(self) }
        }
    }

    /// The logger of the reactor.
    public var logger: Logger { reactor.logger }

    // MARK: - Sending

    /// Sends one datagram, to `address` or, when it is nil, to the peer given to
    /// ``connect(to:)``. Returns false when it was not sent: the socket is closed, or the
    /// kernel refused it (the error goes to ``DatagramHandler/errorCaught(_:on:)`` and
    /// ``counters``, never thrown).
    ///
    /// From inside ``DatagramHandler/received(_:from:on:)`` the datagram joins the batch
    /// sent when the receive batch ends, and true means it was accepted into that batch.
    @discardableResult
    public func send(_ bytes: RawSpan, to address: SocketAddress? = nil) -> Bool {
        // Unwrapped here, not with `??`, whose generic call cost ~8 instructions per echoed
        // datagram (callgrind).
        if let address { return bytes.withUnsafeBytes { send($0, to: address) } }
        return bytes.withUnsafeBytes { send($0, to: connectedPeer) }
    }

    /// Sends an array of bytes as one datagram; see ``send(_:to:)-(RawSpan,_)``.
    @discardableResult
    public func send(_ bytes: [UInt8], to address: SocketAddress? = nil) -> Bool {
        bytes.withUnsafeBytes { send($0, to: address ?? connectedPeer) }
    }

    /// Sends a string's UTF-8 as one datagram; see ``send(_:to:)-(RawSpan,_)``.
    @discardableResult
    public func send(_ text: String, to address: SocketAddress? = nil) -> Bool {
        var text = text
        return text.withUTF8 { send(UnsafeRawBufferPointer($0), to: address ?? connectedPeer) }
    }

    /// Sends one datagram to `address`. The other forms come here; the bundled services
    /// call it with their buffers directly.
    @discardableResult
    package func send(_ bytes: UnsafeRawBufferPointer, to address: SocketAddress) -> Bool {
        guard state.isOpen else { return false }
        reactor.assertInLoop()
        if state.receiving != nil, batch(bytes, to: address) { return true }
        return sendAlone(bytes, to: address)
    }

    /// A datagram sent on its own, at once. Out of line: its 160-byte header on the stack
    /// (zeroed, behind a stack protector) made every batched reply pay for the frame too.
    @inline(never)
    private func sendAlone(_ bytes: UnsafeRawBufferPointer, to address: SocketAddress) -> Bool {
        var datagram = Datagram()
        datagram.data = UnsafeMutableRawPointer(mutating: bytes.baseAddress)
        datagram.length = UInt32(truncatingIfNeeded: bytes.count)
        datagram.address_length = address.copy(into: &datagram.address)
        return sendNow(&datagram, count: 1) == 1
    }

    /// Sends one datagram to the peer given to ``connect(to:)``: the bench client's path.
    @discardableResult
    package func send(_ bytes: UnsafeRawBufferPointer) -> Bool {
        send(bytes, to: connectedPeer)
    }

    private var connectedPeer: SocketAddress {
        guard let remoteAddress else {
            preconditionFailure("UDPSocket.send(_:) without an address needs connect(to:) first")
        }
        return remoteAddress
    }

    /// Adds a reply to the batch. A reply that is a received datagram (an echo) is not
    /// copied: the receive area stays put until the batch is flushed. Returns false for a
    /// reply too large to copy, which the caller sends at once.
    @inline(__always)
    private func batch(_ bytes: UnsafeRawBufferPointer, to address: SocketAddress) -> Bool {
        let slots = state.replySlots ?? makeReplyArea()
        let inPlace = state.receiving.unsafelyUnwrapped.contains(bytes)
        let copied = inPlace ? 0 : bytes.count
        if state.replyCount == Self.replySlots || state.replyBytes &+ copied > Self.replyStorage { flushReplies() }
        guard copied <= Self.replyStorage else { return false }
        let slot = slots + state.replyCount
        if inPlace {
            slot.pointee.data = UnsafeMutableRawPointer(mutating: bytes.baseAddress)
        } else {
            let target = replies.unsafelyUnwrapped.storage.baseAddress.unsafelyUnwrapped + state.replyBytes
            if let source = bytes.baseAddress { target.copyMemory(from: source, byteCount: copied) }
            slot.pointee.data = target
            state.replyBytes &+= copied
        }
        slot.pointee.length = UInt32(truncatingIfNeeded: bytes.count)
        slot.pointee.address_length = address.copy(into: &slot.pointee.address)
        state.replyCount &+= 1
        return true
    }

    /// Replies one flush sends: as many as one `sendmmsg` takes.
    private static let replySlots = Socket.datagramBatchMax
    /// Bytes of copied (not echoed) replies one flush holds.
    private static let replyStorage = 65_536

    @inline(never)
    private func makeReplyArea() -> UnsafeMutablePointer<Datagram> {
        let area = DatagramArea(count: Self.replySlots, slotSize: Self.replyStorage / Self.replySlots)
        replies = area
        state.replySlots = area.slots.baseAddress
        return area.slots.baseAddress!
    }

    @inline(never)
    private func flushReplies() {
        guard let replySlots = state.replySlots, state.replyCount > 0 else { return }
        let count = state.replyCount
        state.replyCount = 0
        state.replyBytes = 0
        sendNow(replySlots, count: count)
    }

    /// Sends `count` datagrams from `first`, counting each one sent or refused. A refused
    /// datagram is skipped and the rest still go, except after a full send buffer, which
    /// drops them all. Returns how many were sent.
    @discardableResult
    private func sendNow(_ first: UnsafeMutablePointer<Datagram>, count: Int) -> Int {
        var start = 0
        var total = 0
        while start < count {
            let error: Int32
            switch Socket.sendBatch(
                fileDescriptor, first + start, count: Swift.min(count - start, Socket.datagramBatchMax),
                segmentation: &state.segmentation)
            {
            case .done(let sent) where sent > 0:
                state.counters.sent += sent
                for index in start..<(start + sent) { state.counters.sentBytes += Int(first[index].length) }
                start += sent
                total += sent
                continue
            case .done, .wouldBlock, .endOfFile: error = EAGAIN
            case .failed(let failure): error = failure
            }
            let full = error == EAGAIN || error == ENOBUFS
            for index in start..<(full ? count : start + 1) { sendFailed(errno: error, to: first[index]) }
            start = full ? count : start + 1
        }
        return total
    }

    private func sendFailed(errno error: Int32, to datagram: Datagram) {
        switch error {
        case EAGAIN, ENOBUFS: state.counters.sendDropped += 1
        case EMSGSIZE: state.counters.sendTooLarge += 1
        case ECONNREFUSED: state.counters.sendRefused += 1
        default: state.counters.sendFailed += 1
        }
        var destination = datagram
        let address = destination.address_length == 0
            ? remoteAddress
            : withUnsafePointer(to: &destination.address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress($0) }
            }
        // The handler is copied out first: its callback may use the socket's state.
        let handler = state.handler
        handler?.errorCaught(ReactorError(errno: error, operation: .send, address: address), on: self)
    }

    // MARK: - Receiving

    private func readable() {
        let area = reactor.receiveArea(count: options.receiveBatch, slotSize: options.maxDatagramSize)
        for _ in 0..<options.maxBatchesPerWakeup {
            guard state.isOpen else { return }
            let count: Int
            switch Socket.receiveBatch(
                fileDescriptor, area.receiveHeaders.unsafelyUnwrapped, count: options.receiveBatch,
                capacity: options.maxDatagramSize)
            {
            case .done(let received): count = received
            case .wouldBlock, .endOfFile: return
            case .failed(let error):
                receiveFailed(errno: error)
                return
            }
            state.receiving = UnsafeRawBufferPointer(area.storage)
            // One reference for the whole batch instead of a retain per datagram; close()
            // releases the socket's own only after this callback.
            if let handler = state.handler {
                for index in 0..<count where state.isOpen {
                    deliver(area.slots.baseAddress.unsafelyUnwrapped + index, to: handler)
                }
            }
            state.receiving = nil
            flushReplies()
            if count < options.receiveBatch { return }
        }
    }

    @inline(__always)
    private func deliver(_ slot: UnsafeMutablePointer<Datagram>, to handler: any DatagramHandler) {
        let sender = slot.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress($0) } ?? fallbackSender()
        let length = Int(slot.pointee.length)
        guard length <= options.maxDatagramSize else {
            state.counters.truncated += 1
            handler.truncated(length: length, from: sender, on: self)
            return
        }
        // A UDP_GRO receive holds a run of datagrams of `segment_size` bytes, the last maybe
        // shorter; any other receive is one datagram, possibly empty.
        let segment = Int(slot.pointee.segment_size)
        let step = segment > 0 && length > segment ? segment : length
        if step < length { state.counters.coalesced &+= 1 }
        var offset = 0
        repeat {
            let size = Swift.min(step, length - offset)
            state.counters.received &+= 1
            state.counters.receivedBytes &+= size
            let bytes = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(start: slot.pointee.data! + offset, count: size))
            handler.received(bytes, from: sender, on: self)
            offset += size
        } while offset < length && state.isOpen
    }

    /// The sender to report when the kernel's source address is not IPv4 or IPv6. Out of
    /// line: inlined, the two reads (each with a dynamic exclusivity check) ran on every
    /// batch, and UDP echo cost 2,379 instructions per datagram instead of 2,210.
    @inline(never)
    private func fallbackSender() -> SocketAddress {
        remoteAddress ?? localAddress
    }

    private func receiveFailed(errno error: Int32) {
        // An ICMP error queued on the socket (ECONNREFUSED for a connected socket whose
        // peer has no listener) is reported once and cleared by this very receive.
        state.counters.receiveErrors += 1
        let handler = state.handler
        handler?.errorCaught(ReactorError(errno: error, operation: .receive, address: remoteAddress), on: self)
    }

    // MARK: - Connecting and closing

    /// Connected mode: from now on only datagrams from `address` arrive, and
    /// ``send(_:to:)-(RawSpan,_)`` without an address sends to it. An ICMP "port unreachable" from it
    /// then arrives as ``ReactorError/Code/connectionRefused`` through
    /// ``DatagramHandler/errorCaught(_:on:)``.
    ///
    /// - Throws: ``ReactorError`` when the kernel refuses (another family, no route, ...).
    public func connect(to address: SocketAddress) throws(ReactorError) {
        guard state.isOpen else { throw ReactorError(.invalidState, operation: .connect, address: address, hint: "the socket is closed") }
        reactor.assertInLoop()
        if case .failed(let error) = Socket.connect(fileDescriptor, to: address) {
            throw ReactorError(errno: error, operation: .connect, address: address)
        }
        remoteAddress = address
        if let bound = SocketAddress.of(fd: fileDescriptor, peer: false) { localAddress = bound }
    }

    /// Stops receiving and closes the socket. Replies batched in the current receive batch
    /// are sent first. The handler hears ``DatagramHandler/closed(_:)`` after this call.
    public func close() {
        guard state.isOpen else { return }
        reactor.assertInLoop()
        if state.receiving != nil {
            state.receiving = nil
            flushReplies()
        }
        state.isOpen = false
        events.disarm(0)
        Socket.close(fileDescriptor)
        reactor.registry.remove(self)
        // Its counts stay in the reactor's totals (Reactor.counters) once it leaves the registry.
        reactor.tally.closedUDP += state.counters
        reactor.runSoon { [self] in
            let handler = state.handler
            state.handler = nil
            handler?.closed(self)
        }
    }
}

extension SocketAddress {
    /// Writes the address into `storage` for a system call; returns its length.
    @inline(__always)
    func copy(into storage: inout sockaddr_storage) -> socklen_t {
        withUnsafeMutableBytes(of: &storage) { target in
            // Stored as words: stored as the C struct, `sin_zero`'s tuple went byte by byte
            // (eight stores per batched reply, callgrind).
            switch self.storage {
            case .v4(let address):
                target.storeBytes(of: unsafeBitCast(address, to: (UInt64, UInt64).self), as: (UInt64, UInt64).self)
                return socklen_t(MemoryLayout<sockaddr_in>.size)
            case .v6(let address):
                target.storeBytes(of: address, as: sockaddr_in6.self)
                return socklen_t(MemoryLayout<sockaddr_in6>.size)
            }
        }
    }
}

extension UnsafeRawBufferPointer {
    /// True when `bytes` lie inside this buffer.
    @inline(__always)
    func contains(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let start = bytes.baseAddress, let base = baseAddress else { return false }
        return start >= base && start + bytes.count <= base + count
    }
}

extension Reactor {
    /// Binds a UDP socket on a numeric address or host name and starts receiving.
    ///
    /// - Parameters:
    ///   - host: an IPv4 or IPv6 address or a name resolved once, blocking, before binding.
    ///   - port: the port; 0 lets the kernel choose (read it back from ``UDPSocket/localAddress``).
    ///   - options: the socket's limits and batching (``UDPOptions``).
    ///   - handler: hears each datagram.
    /// - Throws: ``ReactorError`` naming the address and cause (``ReactorError/Code/addressInUse``, ...).
    @discardableResult
    public func bindUDP(
        host: String, port: Int, options: UDPOptions = UDPOptions(), handler: some DatagramHandler
    ) throws(ReactorError) -> UDPSocket {
        let address = try SocketAddress.resolve(host: host, port: port)[0]
        return try bindUDP(on: address, options: options, handler: handler)
    }

    /// Binds a UDP socket on an address; see ``bindUDP(host:port:options:handler:)``.
    @discardableResult
    public func bindUDP(
        on address: SocketAddress, options: UDPOptions = UDPOptions(), handler: some DatagramHandler
    ) throws(ReactorError) -> UDPSocket {
        let fd = try openUDPSocket(for: address, options: options)
        try Socket.bind(fd, to: address)
        let bound = SocketAddress.of(fd: fd, peer: false) ?? address
        let socket = UDPSocket(reactor: self, fd: fd, localAddress: bound, options: options, handler: handler)
        socket.start()
        logger.debug("bound udp \(bound)")
        return socket
    }

    /// Opens a UDP socket connected to `address` (a client): the kernel picks the local
    /// address and port, only `address` can answer, and ``UDPSocket/send(_:to:)-(RawSpan,_)`` without an address
    /// sends to it.
    @discardableResult
    public func connectUDP(
        to address: SocketAddress, options: UDPOptions = UDPOptions(), handler: some DatagramHandler
    ) throws(ReactorError) -> UDPSocket {
        let fd = try openUDPSocket(for: address, options: options)
        let local = SocketAddress.of(fd: fd, peer: false) ?? address.withPort(0)
        let socket = UDPSocket(reactor: self, fd: fd, localAddress: local, options: options, handler: handler)
        do {
            try socket.connect(to: address)
        } catch {
            socket.discard()
            throw error
        }
        socket.start()
        return socket
    }

    private func openUDPSocket(for address: SocketAddress, options: UDPOptions) throws(ReactorError) -> Int32 {
        preconditionInLoop()
        guard state != .stopped else { throw ReactorError(.reactorStopped, operation: .bind, address: address) }
        try options.validate()
        let fd = try Socket.open(
            .datagram, for: address,
            SocketSettings(
                reuseAddress: options.reuseAddress, reusePort: options.reusePort, ipv6Only: options.ipv6Only,
                receiveBufferSize: options.receiveBufferSize, sendBufferSize: options.sendBufferSize))
        if options.receiveOffload, options.maxDatagramSize == 65_536 { Socket.enableReceiveOffload(fd) }
        return fd
    }
}

extension UDPSocket {
    /// Closes a socket that never started: no handler call, no registry entry.
    fileprivate func discard() {
        state.isOpen = false
        state.handler = nil
        Socket.close(fileDescriptor)
    }
}
