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
    /// Where the connection is in its life (a coarse view of its state machine,
    /// ``ConnectionLifecycle``).
    public enum Phase: Sendable, Equatable {
        /// Reading and writing, or one of them after a half-close.
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
    package var fileDescriptor: Int32 { transport.fd }
    /// The remote end's address.
    public let peerAddress: SocketAddress
    // Mutable state is confined to the reactor thread and never passed inout across a
    // call that reaches user code, so Swift's dynamic exclusivity checks (a third of the
    // per-request instructions when enabled) are turned off for it.

    /// The life cycle: open, half-closed either way, closing, lingering, closed.
    @exclusivity(unchecked) package private(set) var lifecycle = ConnectionLifecycle()
    /// False while queued output is above the high watermark, or while the reactor's
    /// output budget throttles the connection (``isThrottled``); see
    /// ``ConnectionHandler/writabilityChanged(_:)``.
    @exclusivity(unchecked) public private(set) var isWritable = true
    /// True between ``pauseReading()`` and ``resumeReading()``.
    @exclusivity(unchecked) public private(set) var isReadingPaused = false
    /// True while the reactor's ``Reactor/outputBudget`` holds this connection: it queued
    /// output while all connections together were over the budget, so it neither reads
    /// nor is writable until the total falls to half the budget or its own queue empties.
    @exclusivity(unchecked) public private(set) var isThrottled = false

    let config: ConnectionConfig
    let transport: ConnectionTransport
    @exclusivity(unchecked) private(set) var handler: (any ConnectionHandler)?
    @exclusivity(unchecked) private var isReceiving = false
    var listener: TCPListener?
    /// Read and write readiness, both in one allocation.
    @exclusivity(unchecked) private var events: LoopEvents
    private static let readEvent = 0
    private static let writeEvent = 1
    @exclusivity(unchecked) private var output: OutputQueue
    @exclusivity(unchecked) private var batchDepth = 0
    @exclusivity(unchecked) private var lastActivity: UInt64 = 0
    @exclusivity(unchecked) private var idleClockCountsReads = false
    private var idleTimer: ReactorTimer?
    private var closeTimer: ReactorTimer?

    init(reactor: Reactor, transport: ConnectionTransport, peer: SocketAddress, config: ConnectionConfig) {
        self.reactor = reactor
        self.transport = transport
        self.peerAddress = peer
        self.config = config
        self.output = OutputQueue(pool: reactor.bufferPool)
        self.events = LoopEvents(count: 2, backed: !transport.isMemory)
        guard !transport.isMemory else { return }
        // The registry owns the connection while its events are armed, and finish() hands it
        // to the deferred `closed` notification before leaving the registry, so callbacks
        // can borrow it without a retain/release pair per event.
        events.assign(Connection.readEvent, on: reactor.base, .readable(transport.fd), owner: self) { _, _, context in
            LoopEvents.withBorrowedOwner(context, Connection.self) { $0.readable() }
        }
        events.assign(Connection.writeEvent, on: reactor.base, .writable(transport.fd), owner: self) { _, _, context in
            LoopEvents.withBorrowedOwner(context, Connection.self) { $0.flushQueued() }
        }
    }

    convenience init(reactor: Reactor, fd: Int32, peer: SocketAddress, config: ConnectionConfig) {
        self.init(reactor: reactor, transport: ConnectionTransport(fd: fd), peer: peer, config: config)
    }

    /// A connection over `memory` instead of a socket, for tests: not registered with
    /// the reactor, and its reads and writes run only when the test drives them
    /// (``readable()``, ``flushQueued()``; see `EmbeddedConnection` in ReactorTestSupport).
    package convenience init(reactor: Reactor, memory: MemoryTransport, peer: SocketAddress, options: ConnectionOptions) {
        self.init(reactor: reactor, transport: ConnectionTransport(memory: memory), peer: peer, config: ConnectionConfig(options))
    }

    deinit {
        if lifecycle.state != .closed {
            // Never started (its handler factory was never reached): release the socket.
            transport.close(reset: false)
        }
        transport.releaseMemory()
    }

    /// The socket is watched for input (for a connection over memory: it would be).
    package var readArmed: Bool { events.isArmed(Connection.readEvent) }

    /// The socket is watched for writability: output is queued.
    package var writeArmed: Bool { events.isArmed(Connection.writeEvent) }

    /// Registers with the reactor, applies socket options and starts reading.
    package func start(handler: any ConnectionHandler) {
        self.handler = handler
        if !transport.isMemory { reactor.register(self) }
        if config.options.noDelay, !transport.isMemory { Socket.setNoDelay(transport.fd) }
        if let idle = config.idleTimeoutNanoseconds {
            idleClockCountsReads = true
            lastActivity = Reactor.coarseNow
            idleTimer = reactor.schedule(after: .nanoseconds(Int64(idle))) { [unowned self] _ in checkIdle() }
        }
        updateReadInterest()
        handler.opened(self)
    }

    // MARK: - Public operations

    /// Where the connection is in its life.
    public var phase: Phase { lifecycle.phase }

    /// True once the peer has sent FIN (while the connection is still open or closing).
    public var isInputClosed: Bool { lifecycle.isInputClosed }

    /// True once ``shutdownOutput()`` was called.
    public var isOutputShutdown: Bool { lifecycle.isOutputShutdown }

    /// The local address of the socket, or nil once closed (and for a connection in memory).
    public var localAddress: SocketAddress? {
        guard lifecycle.state != .closed, !transport.isMemory else { return nil }
        reactor.assertInLoop()
        return SocketAddress.of(fd: transport.fd, peer: false)
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
        guard lifecycle.acceptsWrites else { return false }
        reactor.assertInLoop()
        return wrote(output.write(bytes, batching: batchDepth > 0, via: transport))
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
        guard lifecycle.acceptsWrites else { return false }
        reactor.assertInLoop()
        return wrote(output.write(prefix, payload, suffix, batching: batchDepth > 0, via: transport))
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
            if batchDepth == 0, !writeArmed, lifecycle.isFlushing { flushQueued() }
        }
        return try body()
    }

    /// Closes gracefully: stops reading, sends everything queued, shuts down output,
    /// waits for the peer's FIN (at most ``ConnectionOptions/lingerTimeout``), then closes
    /// the socket. The handler hears ``CloseReason/closed``, or ``CloseReason/timedOut``
    /// if flushing takes longer than ``ConnectionOptions/closeTimeout``.
    public func close() {
        guard lifecycle.state != .closed else { return }
        reactor.assertInLoop()
        apply(.close)
    }

    /// Closes now, dropping queued output; the peer sees a reset. The handler hears
    /// ``CloseReason/aborted``.
    public func abort() {
        guard lifecycle.state != .closed else { return }
        reactor.assertInLoop()
        finish(.aborted, reset: true)
    }

    /// Half-closes: sends what is queued, then shuts down the sending side (the peer
    /// reads end-of-file) while this side goes on reading. Later writes return false.
    public func shutdownOutput() {
        guard lifecycle.acceptsWrites else { return }
        reactor.assertInLoop()
        apply(.shutdownOutput)
        if output.isEmpty, batchDepth == 0, lifecycle.waitsForDrain { apply(.outputDrained) }
    }

    /// Stops reading from the socket; the kernel's receive buffer fills and TCP flow
    /// control slows the peer.
    public func pauseReading() {
        if lifecycle.state != .closed { reactor.assertInLoop() }
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
        if lifecycle.state != .closed { reactor.assertInLoop() }
        isReadingPaused = false
        updateReadInterest()
    }

    // MARK: - The life cycle

    /// Feeds `event` to the state machine and carries out its action.
    private func apply(_ event: ConnectionLifecycle.Event) {
        guard let action = lifecycle.handle(event) else {
            assertionFailure("connection \(peerAddress): \(event) cannot happen in state \(lifecycle.state)")
            return
        }
        switch action {
        case .none:
            break
        case .notifyInputClosed:
            updateReadInterest()
            handler?.inputClosed(self)
        case .drain:
            beginClosing()
        case .shutdownOutput:
            transport.shutdownOutput()
        case .shutdownOutputAndLinger:
            beginLingering()
        case .shutdownOutputAndFinish(let reason):
            transport.shutdownOutput()
            finished(reason, reset: false)
        case .finish(let reason):
            finished(reason, reset: false)
        }
    }

    // MARK: - Reading

    /// The socket is readable: one read into the reactor's buffer, handed to the handler.
    package func readable() {
        let buffer = reactor.readBuffer
        switch transport.read(into: buffer) {
        case .done(let count):
            guard lifecycle.isOpen else { return }  // lingering: the peer's late bytes are discarded
            if idleClockCountsReads { lastActivity = Reactor.coarseNow }
            let bytes = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
            isReceiving = true
            handler?.received(bytes, on: self)
            isReceiving = false
        case .endOfFile:
            apply(.peerClosedInput(halfClosureAllowed: config.options.allowRemoteHalfClosure))
            updateReadInterest()
        case .wouldBlock:
            return
        case .failed(let error):
            if lifecycle.state == .lingering {
                apply(.lingerEnded)
            } else {
                failed(errno: error, operation: .read)
            }
        }
    }

    private func updateReadInterest() {
        let wanted = lifecycle.wantsInput(paused: isReadingPaused || isThrottled)
        guard wanted != events.isArmed(Connection.readEvent) else { return }
        if wanted { events.arm(Connection.readEvent) } else { events.disarm(Connection.readEvent) }
    }

    // MARK: - Writing

    /// Turns what the output queue did with a write into activity, the write event,
    /// writability and the budget.
    @inline(__always)
    private func wrote(_ outcome: OutputQueue.Outcome) -> Bool {
        switch outcome {
        case .sent:
            noteActivity()
            return true
        case .queued(let added):
            if batchDepth == 0 { armWrite() }
            return queuedMore(added)
        case .partlySent(let added, let progress):
            if progress { noteActivity() }
            armWrite()
            return queuedMore(added)
        case .failed(let error):
            failed(errno: error, operation: .write)
            return false
        }
    }

    /// After output grew by `added` bytes: crossing the high watermark makes the connection
    /// not writable, crossing the hard limit aborts it, and adding to a reactor total over
    /// the output budget throttles it.
    @inline(__always)
    private func queuedMore(_ added: Int) -> Bool {
        let overBudget = reactor.budget.add(added)
        if output.isOverLimit(config.options) {
            abortOverLimit()
            return false
        }
        if isWritable, output.isAboveHighWatermark(config.options) {
            isWritable = false
            handler?.writabilityChanged(self)
        }
        if overBudget, !isThrottled { throttle() }
        return true
    }

    /// Queued output while the reactor is over its output budget: stop reading and
    /// report not writable until ``budgetReleased()``.
    @inline(never)
    private func throttle() {
        guard lifecycle.isOpen else { return }  // the writability hook may have closed it
        isThrottled = true
        reactor.budget.throttle(self, logger: reactor.logger)
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
        guard lifecycle.isOpen else { return }
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
    package func flushQueued() {
        let flushed = output.flush(via: transport)
        if flushed.sent > 0 {
            reactor.budget.subtract(flushed.sent)
            noteActivity()
        }
        guard flushed.error == 0 else {
            failed(errno: flushed.error, operation: .write)
            return
        }
        if reactor.budget.isThrottling { releaseBudget() }
        guard output.isEmpty else {
            armWrite()
            becameWritableIfDrained()
            return
        }
        disarmWrite()
        becameWritableIfDrained()
        // The writability hook may have closed it; while open, a drained queue changes nothing.
        if lifecycle.waitsForDrain { apply(.outputDrained) }
    }

    /// Output drained while some connections are throttled: this one goes free once its
    /// own queue is empty (it no longer holds any of the total), the others when the
    /// total allows.
    @inline(never)
    private func releaseBudget() {
        if isThrottled, output.isEmpty {
            reactor.budget.unthrottle(self)
            budgetReleased()
        }
        reactor.outputDrained()
    }

    private func becameWritableIfDrained() {
        if !isWritable, !isThrottled, output.isAtLowWatermark(config.options), lifecycle.isOpen {
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
        updateReadInterest()
        closeTimer = reactor.schedule(after: config.options.closeTimeout) { [unowned self] _ in
            reactor.logger.debug("connection \(peerAddress): graceful close took longer than \(config.options.closeTimeout); aborting")
            finish(.timedOut, reset: true)
        }
        if batchDepth == 0, !writeArmed { flushQueued() }
    }

    private func beginLingering() {
        transport.shutdownOutput()
        updateReadInterest()
        // Everything owed is sent; the wait for the peer's FIN is a courtesy, kept short.
        closeTimer?.cancel()
        closeTimer = reactor.schedule(after: config.options.lingerTimeout) { [unowned self] _ in apply(.lingerEnded) }
    }

    private func checkIdle() {
        guard let idle = config.idleTimeoutNanoseconds, lifecycle.isOpen else { return }
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

    /// Closes now: abort, a socket error, a timeout, teardown.
    private func finish(_ reason: CloseReason, reset: Bool = false) {
        guard lifecycle.state != .closed else { return }
        _ = lifecycle.handle(.finish(reason))
        finished(reason, reset: reset)
    }

    /// The state machine reached closed: close the socket and tell the handler, after the
    /// current callback returns.
    private func finished(_ reason: CloseReason, reset: Bool) {
        events.disarmAll()
        transport.close(reset: reset)
        reactor.budget.subtract(output.release())
        if isThrottled {
            isThrottled = false
            reactor.budget.unthrottle(self)
        }
        if reactor.budget.isThrottling { reactor.outputDrained() }
        idleTimer?.cancel()
        closeTimer?.cancel()
        idleTimer = nil
        closeTimer = nil
        let handler = self.handler
        self.handler = nil
        // The closure keeps the connection alive once the registry lets go (callbacks
        // borrow it without retaining).
        reactor.runSoon { handler?.closed(self, reason: reason) }
        if !transport.isMemory { reactor.unregister(self) }
        listener?.connectionClosed()
        listener = nil
    }

    /// The reactor is stopping: close at once.
    func abortForTeardown() {
        finish(.aborted, reset: !output.isEmpty)
    }
}
