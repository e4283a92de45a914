import Glibc
import Logging

/// A TCP connection owned by a ``Reactor``, accepted by a ``TCPListener`` or made by
/// ``Reactor/connect(to:timeout:options:handler:)``.
///
/// Data flow: readiness → one `read` into the reactor's shared buffer →
/// ``ConnectionHandler/received(_:on:)`` → ``write(_:)-(RawSpan)`` → `send` straight to the
/// socket. Only what the kernel does not take is copied into the connection's output
/// queue, and only then is the socket watched for writability.
///
/// Use it on the reactor thread only. After it closes, writes return false and the
/// other operations do nothing.
public final class Connection {
    /// Where the connection is in its life.
    public enum Phase: Sendable, Equatable {
        /// Reading and writing.
        case open
        /// ``Connection/close()`` was called, or the peer sent FIN: flushing output.
        case closing
        /// Output flushed and shut down; waiting briefly for the peer's FIN so that
        /// closing does not reset data the peer has not read yet.
        case lingering
        /// The socket is closed.
        case closed
    }

    /// The reactor that owns the connection, held strongly like every object a reactor
    /// makes (docs/architecture.md, "Ownership").
    public let reactor: Reactor
    /// The socket. Valid until the connection closes.
    package let fileDescriptor: Int32
    /// The remote end's address.
    public let peerAddress: SocketAddress
    // Mutable state is confined to the reactor thread and never passed inout across a
    // call that reaches user code, so Swift's dynamic exclusivity checks (a third of the
    // per-request instructions when enabled) are turned off for it.

    /// Where the connection is in its life.
    @exclusivity(unchecked) public private(set) var phase: Phase = .open
    /// False while queued output is above the high watermark, or while the reactor's
    /// output budget throttles the connection (``isThrottled``); see
    /// ``ConnectionHandler/writabilityChanged(_:)``.
    @exclusivity(unchecked) public private(set) var isWritable = true
    /// True between ``pauseReading()`` and ``resumeReading()``.
    @exclusivity(unchecked) public private(set) var isReadingPaused = false
    /// True once the peer has sent FIN.
    @exclusivity(unchecked) public private(set) var isInputClosed = false
    /// True once ``shutdownOutput()`` was called.
    @exclusivity(unchecked) public private(set) var isOutputShutdown = false
    /// True while the reactor's ``Reactor/outputBudget`` holds this connection: it queued
    /// output while all connections together were over the budget, so it neither reads
    /// nor is writable until the total falls to half the budget or its own queue empties.
    @exclusivity(unchecked) public private(set) var isThrottled = false

    let config: ConnectionConfig
    @exclusivity(unchecked) private(set) var handler: (any ConnectionHandler)?
    @exclusivity(unchecked) private var isReceiving = false
    @exclusivity(unchecked) var listener: TCPListener?
    /// Read and write readiness, both in one allocation.
    @exclusivity(unchecked) private var events = LoopEvents(count: 2)
    private static let readEvent = 0
    private static let writeEvent = 1
    @exclusivity(unchecked) private var output = ByteQueue()
    @exclusivity(unchecked) private var batchDepth = 0
    @exclusivity(unchecked) private var closeReason = CloseReason.closed
    @exclusivity(unchecked) private var lastActivity: UInt64 = 0
    @exclusivity(unchecked) private var idleClockCountsReads = false
    @exclusivity(unchecked) private var idleTimer: ReactorTimer?
    @exclusivity(unchecked) private var closeTimer: ReactorTimer?

    init(reactor: Reactor, fd: Int32, peer: SocketAddress, config: ConnectionConfig) {
        self.reactor = reactor
        self.fileDescriptor = fd
        self.peerAddress = peer
        self.config = config
        // The registry owns the connection while its events are armed, and finish() hands it
        // to the deferred `closed` notification before leaving the registry, so callbacks
        // can borrow it without a retain/release pair per event.
        events.assign(Connection.readEvent, on: reactor.base, .readable(fd), owner: self) { _, _, context in
            LoopEvents.withBorrowedOwner(context, Connection.self) { $0.readable() }
        }
        events.assign(Connection.writeEvent, on: reactor.base, .writable(fd), owner: self) { _, _, context in
            LoopEvents.withBorrowedOwner(context, Connection.self) { $0.flushQueued() }
        }
    }

    deinit {
        if phase != .closed {
            // Never started (its handler factory was never reached): release the socket.
            Socket.close(fileDescriptor)
        }
    }

    /// Registers with the reactor, applies socket options and starts reading.
    func start(handler: any ConnectionHandler) {
        self.handler = handler
        reactor.register(self)
        if config.options.noDelay { Socket.setNoDelay(fileDescriptor) }
        if let idle = config.idleTimeoutNanoseconds {
            idleClockCountsReads = true
            lastActivity = Reactor.coarseNow
            idleTimer = reactor.schedule(after: .nanoseconds(Int64(idle))) { [unowned self] _ in checkIdle() }
        }
        updateReadInterest()
        handler.opened(self)
    }

    // MARK: - Public operations

    /// The local address of the socket, or nil once closed.
    public var localAddress: SocketAddress? {
        guard phase != .closed else { return nil }
        reactor.assertInLoop()
        return SocketAddress.of(fd: fileDescriptor, peer: false)
    }

    /// The reactor's logger.
    public var logger: Logger { reactor.logger }

    /// Bytes written but not yet taken by the kernel. Handlers watch ``isWritable``
    /// instead; the count is for tests.
    package var queuedOutputBytes: Int { output.count }

    /// The options this connection was opened with.
    public var options: ConnectionOptions { config.options }

    /// Sends bytes, copying only what the kernel does not take at once. The other forms
    /// (a span, an array, a string) come here; the bundled services call it with their
    /// buffers directly.
    @discardableResult
    package func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        // The common reply, in full: one buffer, nothing queued, not batching, and the
        // kernel takes it all. A plain send(2) here instead of the gather path saves about
        // 60 instructions per echo request.
        if output.isEmpty, batchDepth == 0, phase == .open, !isOutputShutdown, bytes.count > 0 {
            reactor.assertInLoop()
            let result = Socket.send(fileDescriptor, bytes)
            if result == .done(bytes.count) {
                noteActivity()
                return true
            }
            return sendRemainder(bytes, ByteQueue.none, ByteQueue.none, result: result)
        }
        return send(bytes, ByteQueue.none, ByteQueue.none)
    }

    /// Sends the bytes of a span (the ones just received, say), copying only what the
    /// kernel does not take at once.
    ///
    /// - Returns: false if the connection is closing or closed, or its output was shut
    ///   down; the bytes are dropped. Failures of the socket itself close the connection
    ///   and reach the handler as ``ConnectionHandler/closed(_:reason:)``.
    @discardableResult
    public func write(_ bytes: RawSpan) -> Bool {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Sends an array of bytes; see ``write(_:)-(RawSpan)``.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Sends a string as UTF-8; see ``write(_:)-(RawSpan)``.
    @discardableResult
    public func write(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    /// Sends a header, a payload and a trailer as one write (a single `sendmsg`), copying
    /// none of them unless the kernel leaves some behind. `FramedConnection` uses it to
    /// wrap a payload without building a contiguous frame first.
    @discardableResult
    package func write(
        prefix: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer, suffix: UnsafeRawBufferPointer
    ) -> Bool {
        send(prefix, payload, suffix)
    }

    /// Runs `body` with writes held back, then sends everything it wrote in one syscall.
    ///
    /// Use it when one event produces many small writes (a reply per pipelined request):
    /// each write is copied once into the output queue instead of costing a syscall.
    /// Batches nest; the outermost one flushes.
    public func withBatchedWrites<Result, Failure: Error>(
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        reactor.assertInLoop()
        batchDepth += 1
        defer {
            batchDepth -= 1
            if batchDepth == 0, !events.isArmed(Connection.writeEvent), phase == .open || phase == .closing { flushQueued() }
        }
        return try body()
    }

    /// Closes gracefully: stops reading, sends everything queued, shuts down output,
    /// waits for the peer's FIN (at most ``ConnectionOptions/lingerTimeout``), then closes
    /// the socket. The handler hears ``CloseReason/closed``, or ``CloseReason/timedOut``
    /// if flushing takes longer than ``ConnectionOptions/closeTimeout``.
    public func close() {
        guard phase == .open else { return }
        reactor.assertInLoop()
        closeReason = .closed
        beginClosing()
    }

    /// Closes now, dropping queued output; the peer sees a reset. The handler hears
    /// ``CloseReason/aborted``.
    public func abort() {
        guard phase != .closed else { return }
        reactor.assertInLoop()
        finish(.aborted, reset: true)
    }

    /// Half-closes: sends what is queued, then shuts down the sending side (the peer
    /// reads end-of-file) while this side goes on reading. Later writes return false.
    public func shutdownOutput() {
        guard phase == .open, !isOutputShutdown else { return }
        reactor.assertInLoop()
        isOutputShutdown = true
        if output.isEmpty, batchDepth == 0 { shutdownSendingSide() }
    }

    /// Stops reading from the socket; the kernel's receive buffer fills and TCP flow
    /// control slows the peer.
    public func pauseReading() {
        if phase != .closed { reactor.assertInLoop() }
        isReadingPaused = true
        updateReadInterest()
    }

    /// Makes the idle timeout count input progress instead of reads: from now on only
    /// ``inputMadeProgress()`` (and moving output) keeps the connection alive. A handler
    /// that assembles messages calls it when a message is complete, so a peer that trickles
    /// a partial message (slowloris) is closed after ``ConnectionOptions/idleTimeout``.
    public func countIdleInputByProgress() {
        idleClockCountsReads = false
    }

    /// The input received so far made progress (a whole message, say): input activity for
    /// the idle timeout after ``countIdleInputByProgress()``.
    public func inputMadeProgress() {
        if config.idleTimeoutNanoseconds != nil { lastActivity = Reactor.coarseNow }
    }

    /// Starts reading again after ``pauseReading()``.
    public func resumeReading() {
        if phase != .closed { reactor.assertInLoop() }
        isReadingPaused = false
        updateReadInterest()
    }

    // MARK: - Reading

    private func readable() {
        let buffer = reactor.readBuffer
        switch Socket.read(fileDescriptor, into: buffer) {
        case .done(let count):
            guard phase == .open else { return }  // lingering: the peer's late bytes are discarded
            if idleClockCountsReads { lastActivity = Reactor.coarseNow }
            let bytes = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
            isReceiving = true
            handler?.received(bytes, on: self)
            isReceiving = false
        case .endOfFile:
            peerSentFIN()
        case .wouldBlock:
            return
        case .failed(let error):
            if phase == .lingering {
                finish(closeReason)
            } else {
                failed(errno: error, operation: .read)
            }
        }
    }

    private func peerSentFIN() {
        isInputClosed = true
        updateReadInterest()
        switch phase {
        case .lingering:
            finish(closeReason)
        case .open where config.options.allowRemoteHalfClosure:
            if isOutputShutdown && output.isEmpty {
                finish(.endOfFile)
            } else {
                handler?.inputClosed(self)
            }
        case .open:
            closeReason = .endOfFile
            beginClosing()
        case .closing, .closed:
            break
        }
    }

    private func updateReadInterest() {
        let wanted = switch phase {
        case .open: !isReadingPaused && !isInputClosed && !isThrottled
        case .lingering: !isInputClosed
        case .closing, .closed: false
        }
        guard wanted != events.isArmed(Connection.readEvent) else { return }
        if wanted { events.arm(Connection.readEvent) } else { events.disarm(Connection.readEvent) }
    }

    // MARK: - Writing

    /// Sends or queues up to three parts. Queueing comes first and is kept short: in a
    /// write batch (a reply per pipelined request) every write takes that path.
    @inline(__always)
    private func send(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer) -> Bool {
        guard phase == .open, !isOutputShutdown else { return false }
        reactor.assertInLoop()
        if batchDepth > 0 || !output.isEmpty {
            output.append(a, b, c, pool: reactor.bufferPool)
            if batchDepth == 0 { armWrite() }
            return queuedMore(a.count &+ b.count &+ c.count)
        }
        return sendNow(a, b, c)
    }

    /// Nothing queued, not batching: one `sendmsg`, and only what the kernel refuses is
    /// copied. Kept out of line so the queueing path it sits beside stays small.
    @inline(never)
    private func sendNow(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer) -> Bool {
        let total = a.count + b.count + c.count
        guard total > 0 else { return true }
        let result = Socket.send(fileDescriptor, a, b, c)
        if result == .done(total) {
            noteActivity()
            return true
        }
        return sendRemainder(a, b, c, result: result)
    }

    /// After a direct send that did not take everything: queue the rest and watch for
    /// writability, or fail the connection on a real error.
    private func sendRemainder(
        _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer, result: IOResult
    ) -> Bool {
        var sent = 0
        let queuedBefore = output.count
        switch result {
        case .done(let count):
            sent = count
            noteActivity()
        case .wouldBlock, .endOfFile:
            break
        case .failed(let error):
            failed(errno: error, operation: .write)
            return false
        }
        sent = enqueue(a, skipping: sent)
        sent = enqueue(b, skipping: sent)
        _ = enqueue(c, skipping: sent)
        armWrite()
        return queuedMore(output.count &- queuedBefore)
    }

    /// Queues what is left of `part` after the first `skipping` bytes (already sent);
    /// returns how many of the skipped bytes belong to later parts.
    private func enqueue(_ part: UnsafeRawBufferPointer, skipping: Int) -> Int {
        guard skipping < part.count else { return skipping - part.count }
        output.append(UnsafeRawBufferPointer(rebasing: part[skipping...]), pool: reactor.bufferPool)
        return 0
    }

    /// After output grew by `added` bytes: crossing the high watermark makes the connection
    /// not writable, crossing the hard limit aborts it, and adding to a reactor total over
    /// the output budget throttles it.
    @inline(__always)
    private func queuedMore(_ added: Int) -> Bool {
        reactor.queuedOutputBytes &+= added
        if output.count > config.options.writeBufferLimit {
            abortOverLimit()
            return false
        }
        if isWritable, output.count > config.options.writeBufferHighWatermark {
            isWritable = false
            handler?.writabilityChanged(self)
        }
        if reactor.queuedOutputBytes > reactor.outputBudget, !isThrottled { overBudget() }
        return true
    }

    /// Queued output while the reactor is over its output budget: stop reading and
    /// report not writable until ``budgetReleased()``.
    @inline(never)
    private func overBudget() {
        guard phase == .open else { return }  // the writability hook may have closed it
        isThrottled = true
        reactor.throttle(self)
        updateReadInterest()
        if isWritable {
            isWritable = false
            handler?.writabilityChanged(self)
        }
    }

    /// The output budget lets this connection go: read again, and be writable again if
    /// its own queue allows.
    func budgetReleased() {
        guard isThrottled else { return }
        isThrottled = false
        guard phase == .open else { return }
        updateReadInterest()
        becameWritableIfDrained()
    }

    @inline(never)
    private func abortOverLimit() {
        reactor.logger.warning(
            "connection \(peerAddress): \(output.count) bytes queued, over the write buffer limit of \(config.options.writeBufferLimit); aborting")
        finish(.writeBufferLimitExceeded, reset: true)
    }

    /// Sends queued output until it is gone or the kernel is full. Runs when the socket
    /// becomes writable, and at the end of a write batch.
    private func flushQueued() {
        sending: while !output.isEmpty {
            let bytes = output.bytes
            switch Socket.send(fileDescriptor, bytes) {
            case .done(let count):
                output.consume(count, pool: reactor.bufferPool)
                reactor.queuedOutputBytes &-= count
                noteActivity()
                if count < bytes.count { break sending }
            case .wouldBlock, .endOfFile:
                break sending
            case .failed(let error):
                failed(errno: error, operation: .write)
                return
            }
        }
        if !reactor.throttledConnections.isEmpty { releaseBudget() }
        guard output.isEmpty else {
            armWrite()
            becameWritableIfDrained()
            return
        }
        disarmWrite()
        becameWritableIfDrained()
        guard phase != .closed else { return }  // the writability hook may have closed it
        if phase == .closing {
            beginLingering()
        } else if isOutputShutdown {
            shutdownSendingSide()
        }
    }

    /// Output drained while some connections are throttled: this one goes free once its
    /// own queue is empty (it no longer holds any of the total), the others when the
    /// total allows.
    @inline(never)
    private func releaseBudget() {
        if isThrottled, output.isEmpty {
            reactor.unthrottle(self)
            budgetReleased()
        }
        reactor.outputDrained()
    }

    private func becameWritableIfDrained() {
        if !isWritable, !isThrottled, output.count <= config.options.writeBufferLowWatermark, phase == .open {
            isWritable = true
            handler?.writabilityChanged(self)
        }
    }

    private func armWrite() {
        guard !events.isArmed(Connection.writeEvent) else { return }
        events.arm(Connection.writeEvent)
    }

    private func disarmWrite() {
        events.disarm(Connection.writeEvent)
    }

    /// Stamps the idle clock; a reply written while receiving is covered by the read's stamp.
    private func noteActivity() {
        if config.idleTimeoutNanoseconds != nil, !isReceiving { lastActivity = Reactor.coarseNow }
    }

    // MARK: - Closing

    private func beginClosing() {
        phase = .closing
        updateReadInterest()
        closeTimer = reactor.schedule(after: config.options.closeTimeout) { [unowned self] _ in
            reactor.logger.debug("connection \(peerAddress): graceful close took longer than \(config.options.closeTimeout); aborting")
            finish(.timedOut, reset: true)
        }
        if batchDepth == 0, !events.isArmed(Connection.writeEvent) { flushQueued() }
    }

    private func beginLingering() {
        phase = .lingering
        Socket.shutdownOutput(fileDescriptor)
        if isInputClosed {
            finish(closeReason)
            return
        }
        updateReadInterest()
        // Everything owed is sent; the wait for the peer's FIN is a courtesy, kept short.
        closeTimer?.cancel()
        closeTimer = reactor.schedule(after: config.options.lingerTimeout) { [unowned self] _ in finish(closeReason) }
    }

    private func shutdownSendingSide() {
        Socket.shutdownOutput(fileDescriptor)
        if isInputClosed { finish(.endOfFile) }
    }

    private func checkIdle() {
        guard let idle = config.idleTimeoutNanoseconds, phase == .open else { return }
        let quiet = Reactor.coarseNow &- lastActivity
        if quiet >= idle {
            reactor.logger.debug("connection \(peerAddress): idle for \(Duration.nanoseconds(Int64(quiet))); closing")
            finish(.timedOut, reset: false)
        } else {
            idleTimer = reactor.schedule(after: .nanoseconds(Int64(idle - quiet))) { [unowned self] _ in checkIdle() }
        }
    }

    private func failed(errno error: Int32, operation: ReactorError.Operation) {
        if error == ECONNRESET || error == EPIPE {
            finish(.reset)
        } else {
            finish(.failed(ReactorError(errno: error, operation: operation, address: peerAddress)))
        }
    }

    /// Closes the socket and tells the handler, after the current callback returns.
    private func finish(_ reason: CloseReason, reset: Bool = false) {
        guard phase != .closed else { return }
        phase = .closed
        events.disarmAll()
        if reset {
            Socket.closeWithReset(fileDescriptor)
        } else {
            Socket.close(fileDescriptor)
        }
        reactor.queuedOutputBytes &-= output.count
        output.release(pool: reactor.bufferPool)
        if isThrottled {
            isThrottled = false
            reactor.unthrottle(self)
        }
        if !reactor.throttledConnections.isEmpty { reactor.outputDrained() }
        idleTimer?.cancel()
        closeTimer?.cancel()
        idleTimer = nil
        closeTimer = nil
        let handler = self.handler
        self.handler = nil
        // The closure keeps the connection alive once the registry lets go (callbacks
        // borrow it without retaining).
        reactor.runSoon { handler?.closed(self, reason: reason) }
        reactor.unregister(self)
        listener?.connectionClosed()
        listener = nil
    }

    /// The reactor is stopping: close at once.
    func abortForTeardown() {
        finish(.aborted, reset: !output.isEmpty)
    }
}
