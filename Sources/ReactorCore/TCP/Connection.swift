import Glibc
import Logging

/// A TCP connection owned by a ``Reactor``, accepted by a ``TCPListener`` or made by
/// ``Reactor/connect(to:from:timeout:options:handler:)``.
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
    /// `ConnectionLifecycle`, which docs/architecture.md draws).
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

    // The stored properties are ordered so that little is lost to padding (words, then the
    // 4-byte-aligned address, then bytes, then the events): an idle connection is mostly
    // this object, and every byte of it counts a million times over (docs/performance.md,
    // "Heap per idle connection").
    //
    // Mutable state is confined to the reactor thread and never passed inout across a
    // call that reaches user code, so Swift's dynamic exclusivity checks (a third of the
    // per-request instructions when enabled) are turned off for it.

    /// The reactor that owns the connection, held strongly like every object a reactor
    /// makes (docs/architecture.md, "Ownership").
    public let reactor: Reactor
    let config: ConnectionConfig
    @exclusivity(unchecked) private(set) var handler: (any ConnectionHandler)?
    @exclusivity(unchecked) private var output: OutputQueue
    /// When bytes last moved (the coarse clock), for the idle timeout.
    @exclusivity(unchecked) private(set) var lastActivity: UInt64 = 0
    /// The neighbours in the idle wheel's slot (``IdleWheel``), which holds connections
    /// unretained.
    var idlePrev: Unmanaged<Connection>?
    var idleNext: Unmanaged<Connection>?
    /// What only some connections need, made when first needed.
    private var extras: Extras?
    let transport: ConnectionTransport
    /// The remote end's address: the client's. Behind a PROXY-protocol balancer
    /// (``ListenerOptions/proxyProtocol``) it is the source the header gave, and the
    /// balancer's address is ``proxyPeer``.
    public let peerAddress: SocketAddress
    /// The life cycle: open, half-closed either way, closing, lingering, closed.
    @exclusivity(unchecked) package private(set) var lifecycle = ConnectionLifecycle()
    /// False while queued output is above the high watermark, or while the reactor's
    /// output budget throttles the connection (``isThrottled``); see
    /// ``ConnectionHandler/writabilityChanged(_:)``.
    @exclusivity(unchecked) public private(set) var isWritable = true
    /// True between ``pauseReading()`` and ``resumeReading()``. Reading also stops, without
    /// this turning true, while the connection is not writable
    /// (``ConnectionOptions/pauseReadingWhileNotWritable``) or throttled.
    @exclusivity(unchecked) public private(set) var isReadingPaused = false
    /// True while the reactor's ``Reactor/outputBudget`` holds this connection: it queued
    /// output while all connections together were over the budget, so it neither reads
    /// nor is writable until the total falls to half the budget or its own queue empties.
    @exclusivity(unchecked) public private(set) var isThrottled = false
    /// Its framer refused the peer's input: the close counts as a framing error.
    @exclusivity(unchecked) private var framingFailed = false
    @exclusivity(unchecked) private var isReceiving = false
    @exclusivity(unchecked) private var idleClockCountsReads = false
    /// Some input has reached the handler: a graceful shutdown closes the connection after
    /// answering what has arrived. Until then its client may still be sending its first
    /// request (see ``closeForShutdown()``).
    @exclusivity(unchecked) private var hasReceived = false
    /// The idle wheel's slot this connection is filed in, or ``IdleWheel/notFiled``.
    var idleSlot = IdleWheel.notFiled
    /// In the reactor's list of connections whose writes wait for the end of the executor
    /// jobs it is running (``holdWritesUntilJobsEnd()``), holding one level of `batchDepth`.
    @exclusivity(unchecked) private var heldForJobs = false
    @exclusivity(unchecked) private var batchDepth: UInt16 = 0
    /// Read readiness, and writability lent from the reactor's spare events while output
    /// waits (an idle connection holds one libevent event, not two).
    @exclusivity(unchecked) private var events: LoopEvents
    private static let readEvent = 0

    /// The state few connections have: kept out of line, so the others do not pay for it.
    private final class Extras {
        var proxyInfo: ProxyInfo?
        /// The close or linger timeout, while closing.
        var closeTimer: ReactorTimer?
    }

    /// The socket. Valid until the connection closes.
    package var fileDescriptor: Int32 { transport.fd }

    /// The PROXY header the connection started with and the balancer that sent it; nil
    /// when its listener does not take the PROXY protocol.
    public internal(set) var proxyInfo: ProxyInfo? {
        get { extras?.proxyInfo }
        set { if newValue != nil || extras != nil { madeExtras.proxyInfo = newValue } }
    }

    private var closeTimer: ReactorTimer? {
        get { extras?.closeTimer }
        set { if newValue != nil || extras != nil { madeExtras.closeTimer = newValue } }
    }

    private var madeExtras: Extras {
        if let extras { return extras }
        let made = Extras()
        extras = made
        return made
    }

    init(reactor: Reactor, transport: ConnectionTransport, peer: SocketAddress, config: ConnectionConfig) {
        self.reactor = reactor
        self.transport = transport
        self.peerAddress = peer
        self.config = config
        self.output = OutputQueue(pool: reactor.bufferPool)
        self.events = LoopEvents(count: 1, backed: !transport.isMemory)
        guard !transport.isMemory else { return }
        // The registry owns the connection while its events are armed, and finish() hands it
        // to the deferred `closed` notification before leaving the registry, so callbacks
        // can borrow it without a retain/release pair per event.
        events.assign(Connection.readEvent, on: reactor.base, .readable(transport.fd), owner: self) { _, _, context in
            LoopEvents.withBorrowedOwner(context, Connection.self) { $0.readable() }
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
        // A connection over memory its test dropped while open: out of the wheel, which
        // does not retain it.
        if idleSlot != IdleWheel.notFiled, let idle = config.idleTimeoutNanoseconds {
            reactor.idleWheel(timeout: idle).remove(self)
        }
        transport.releaseMemory()
    }

    /// The socket is watched for input (for a connection over memory: it would be).
    package var readArmed: Bool { events.isArmed(Connection.readEvent) }

    /// The socket is watched for writability: output is queued.
    package var writeArmed: Bool { events.isLentArmed }

    /// Registers with the reactor, applies socket options and starts reading.
    package func start(handler: any ConnectionHandler) {
        self.handler = handler
        if !transport.isMemory { reactor.register(self) }
        if config.options.noDelay, !transport.isMemory { Socket.setNoDelay(transport.fd) }
        if let keepAlive = config.options.keepAlive, !transport.isMemory {
            let seconds = keepAlive.seconds
            Socket.setKeepAlive(transport.fd, idleSeconds: seconds.idle, intervalSeconds: seconds.interval, count: keepAlive.count)
        }
        if let idle = config.idleTimeoutNanoseconds {
            idleClockCountsReads = true
            lastActivity = Reactor.coarseNow
            reactor.idleWheel(timeout: idle).insert(self, now: lastActivity, reactor: reactor)
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

    /// The TCP peer of the accepted socket when a PROXY header came first: the balancer.
    /// Nil without the PROXY protocol (then ``peerAddress`` is the TCP peer).
    public var proxyPeer: SocketAddress? { proxyInfo?.balancer }

    /// Metadata for a log line about this connection: its peer, as `peer` (and the
    /// balancer, as `proxy`, when a PROXY header came first), so that log pipelines can
    /// filter and group by it instead of parsing message text.
    public var logMetadata: Logger.Metadata {
        guard let proxyPeer else { return ["peer": "\(peerAddress)"] }
        return ["peer": "\(peerAddress)", "proxy": "\(proxyPeer)"]
    }

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
        return wrote(output.write(bytes, batching: batchDepth > 0, via: transport), size: bytes.count)
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
    /// wrap a payload without building a contiguous frame first, and it counts as a frame
    /// sent in the reactor's counters.
    @discardableResult
    package func write(
        prefix: UnsafeRawBufferPointer, _ payload: UnsafeRawBufferPointer, suffix: UnsafeRawBufferPointer
    ) -> Bool {
        guard lifecycle.acceptsWrites else { return false }
        reactor.assertInLoop()
        // Counted here, not by FramedConnection: from another module the reactor's counts
        // are reached through accessors: 627 instructions per pipelined line against 542 (callgrind).
        reactor.tally.framesSent &+= 1
        return wrote(
            output.write(prefix, payload, suffix, batching: batchDepth > 0, via: transport),
            size: prefix.count &+ payload.count &+ suffix.count)
    }

    /// Sends two pieces as one write (a single `sendmsg`), so as one segment where a
    /// write of each would make two: the load client's requests where they wrap around
    /// its ring. Copies only what the kernel does not take at once.
    @discardableResult
    package func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer) -> Bool {
        guard lifecycle.acceptsWrites else { return false }
        reactor.assertInLoop()
        return wrote(
            output.write(first, second, UnsafeRawBufferPointer(start: nil, count: 0), batching: batchDepth > 0, via: transport),
            size: first.count &+ second.count)
    }

    /// A framer delivered `count` frames from one read (`FramedConnection`): counted in
    /// the reactor's counters.
    package func countFramesReceived(_ count: Int) {
        reactor.tally.framesReceived &+= count
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

    /// Holds writes back until the reactor has run the executor jobs it is running now,
    /// then sends them with one syscall: a task that writes a reply per frame it takes
    /// (the async layer's `outbound.write`) pays one `send` per batch of jobs, as a
    /// callback does per read with ``withBatchedWrites(_:)``. Outside a run of jobs it
    /// does nothing, and the writes go out at once.
    package func holdWritesUntilJobsEnd() {
        guard !heldForJobs, reactor.isRunningJobs, lifecycle.acceptsWrites else { return }
        heldForJobs = true
        batchDepth += 1
        reactor.holdUntilJobsEnd(self)
    }

    /// The reactor has run its jobs: the writes they made go out.
    func releaseHeldWrites() {
        guard heldForJobs else { return }
        heldForJobs = false
        batchDepth -= 1
        if batchDepth == 0, !writeArmed, lifecycle.isFlushing { flushQueued() }
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
            reactor.tally.bytesReceived &+= count
            guard lifecycle.isOpen else { return }  // lingering: the peer's late bytes are discarded
            if idleClockCountsReads { lastActivity = Reactor.coarseNow }
            let bytes = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(start: buffer.baseAddress, count: count))
            hasReceived = true
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

    /// The bytes that came after the PROXY header in the read that completed it, handed
    /// over as a read right after ``ConnectionHandler/opened(_:)`` (nothing reads the
    /// shared buffer in between).
    func receivedWithHeader(_ bytes: UnsafeRawBufferPointer) {
        guard lifecycle.isOpen else { return }
        if idleClockCountsReads { lastActivity = Reactor.coarseNow }
        hasReceived = true
        isReceiving = true
        handler?.received(unsafe RawSpan(_unsafeBytes: bytes), on: self)
        isReceiving = false
    }

    private func updateReadInterest() {
        let wanted = lifecycle.wantsInput(
            paused: isReadingPaused || isThrottled || (!isWritable && config.pausesReadingWhileNotWritable))
        guard wanted != events.isArmed(Connection.readEvent) else { return }
        if wanted { events.arm(Connection.readEvent) } else { events.disarm(Connection.readEvent) }
    }

    // MARK: - Writing

    /// Turns what the output queue did with a write of `size` bytes into activity, the
    /// bytes-sent count, the write event, writability and the budget.
    @inline(__always)
    private func wrote(_ outcome: OutputQueue.Outcome, size: Int) -> Bool {
        switch outcome {
        case .sent:
            reactor.tally.bytesSent &+= size
            noteActivity()
            return true
        case .queued(let added):
            if batchDepth == 0 { armWrite() }
            return queuedMore(added)
        case .partlySent(let added, let progress):
            return partlySent(size: size, queued: added, progress: progress)
        case .failed(let error):
            failed(errno: error, operation: .write)
            return false
        }
    }

    /// The kernel took part of a write. Out of line, so that `wrote` stays small enough for
    /// the optimizer to inline into the write paths (it would not: +42 instructions per
    /// pipelined line, callgrind).
    @inline(never)
    private func partlySent(size: Int, queued added: Int, progress: Bool) -> Bool {
        reactor.tally.bytesSent &+= size &- added
        if progress { noteActivity() }
        armWrite()
        return queuedMore(added)
    }

    /// After output grew by `added` bytes: crossing the high watermark makes the connection
    /// not writable, crossing the hard limit aborts it, and adding to a reactor total over
    /// the output budget throttles it.
    @inline(__always)
    private func queuedMore(_ added: Int) -> Bool {
        let overBudget = reactor.budget.add(added)
        // One comparison on the path a reply per pipelined request takes.
        if output.count > config.queueCheckThreshold {
            if output.isOverLimit(config.options) {
                abortOverLimit()
                return false
            }
            if isWritable { becameNotWritable() }
        }
        if overBudget, !isThrottled { throttle() }
        return true
    }

    /// Queued output passed the high watermark: stop reading unless the options say not
    /// to, and tell the handler.
    @inline(never)
    private func becameNotWritable() {
        isWritable = false
        if config.pausesReadingWhileNotWritable { updateReadInterest() }
        handler?.writabilityChanged(self)
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
            "\(output.count) bytes queued, over the write buffer limit of \(config.options.writeBufferLimit); aborting the connection",
            metadata: logMetadata)
        finish(.writeBufferLimitExceeded, reset: true)
    }

    /// Sends queued output until it is gone or the kernel is full. Runs when the socket
    /// becomes writable, and at the end of a write batch.
    package func flushQueued() {
        let flushed = output.flush(via: transport)
        if flushed.sent > 0 {
            reactor.tally.bytesSent &+= flushed.sent
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
            if config.pausesReadingWhileNotWritable { updateReadInterest() }
            handler?.writabilityChanged(self)
        }
    }

    /// Out of line, like `partlySent`: rare, and it would make `wrote` too big to inline.
    @inline(never)
    private func armWrite() {
        guard !events.isLentArmed else { return }
        events.armLent(from: reactor.spareEvents, on: reactor.base, .writable(transport.fd), owner: self) { _, _, context in
            LoopEvents.withBorrowedOwner(context, Connection.self) { $0.flushQueued() }
        }
    }

    private func disarmWrite() {
        if events.isLentArmed { returnWriteEvent() }
    }

    @inline(never)
    private func returnWriteEvent() {
        events.disarmLent(to: reactor.spareEvents)
    }

    /// Stamps the idle clock; a reply written while receiving is covered by the read's stamp.
    private func noteActivity() {
        if config.idleTimeoutNanoseconds != nil, !isReceiving { lastActivity = Reactor.coarseNow }
    }

    // MARK: - Closing

    private func beginClosing() {
        updateReadInterest()
        // Most closes have nothing queued and finish in this flush: the close timer is
        // scheduled only for those that must wait.
        if batchDepth == 0, !writeArmed { flushQueued() }
        guard lifecycle.waitsForDrain else { return }
        closeTimer = reactor.schedule(after: config.options.closeTimeout) { [unowned self] _ in
            reactor.logger.debug(
                "graceful close took longer than \(config.options.closeTimeout); aborting the connection", metadata: logMetadata)
            finish(.timedOut, reset: true, kind: .closeTimeout)
        }
    }

    private func beginLingering() {
        transport.shutdownOutput()
        updateReadInterest()
        // Everything owed is sent; the wait for the peer's FIN is a courtesy, kept short.
        closeTimer?.cancel()
        closeTimer = reactor.schedule(after: config.options.lingerTimeout) { [unowned self] _ in apply(.lingerEnded) }
    }

    /// The idle timeout still applies: the connection is open (one that is closing has its
    /// close timeout instead).
    var countsIdleTime: Bool { lifecycle.isOpen }

    /// Its idle wheel found it quiet for the timeout.
    func idleTimedOut(quiet: UInt64) {
        reactor.logger.debug("idle for \(Duration.nanoseconds(Int64(quiet))); closing the connection", metadata: logMetadata)
        finish(.timedOut, reset: false, kind: .idleTimeout)
    }

    private func failed(errno error: Int32, operation: ReactorError.Operation) {
        if error == ECONNRESET || error == EPIPE {
            finish(.reset)
        } else {
            finish(.failed(ReactorError(errno: error, operation: operation, address: peerAddress)))
        }
    }

    /// Closes now: abort, a socket error, a timeout, teardown. `kind` says which timeout
    /// ran out, which the reason alone does not.
    private func finish(_ reason: CloseReason, reset: Bool = false, kind: ConnectionCloseKind? = nil) {
        guard lifecycle.state != .closed else { return }
        _ = lifecycle.handle(.finish(reason))
        finished(reason, reset: reset, kind: kind)
    }

    /// The state machine reached closed: close the socket and tell the handler, after the
    /// current callback returns.
    private func finished(_ reason: CloseReason, reset: Bool, kind: ConnectionCloseKind? = nil) {
        reactor.tally.closedConnections[closeKind(reason, kind)] &+= 1
        events.disarmAll(lentTo: reactor.spareEvents)
        transport.close(reset: reset)
        reactor.budget.subtract(output.release())
        if isThrottled {
            isThrottled = false
            reactor.budget.unthrottle(self)
        }
        if reactor.budget.isThrottling { reactor.outputDrained() }
        if idleSlot != IdleWheel.notFiled, let idle = config.idleTimeoutNanoseconds {
            reactor.idleWheel(timeout: idle).remove(self)
        }
        if let extras, let closeTimer = extras.closeTimer {
            closeTimer.cancel()
            extras.closeTimer = nil
        }
        let handler = self.handler
        self.handler = nil
        // The closure keeps the connection alive once the registry lets go (callbacks
        // borrow it without retaining).
        reactor.runSoon { handler?.closed(self, reason: reason) }
        if !transport.isMemory { reactor.unregister(self) }
        config.source?.connectionClosed()
    }

    /// Graceful shutdown: answers what the peer has sent already (one read, as if the
    /// socket had been readable), then closes. Without the read, a request that arrived
    /// as the shutdown began would be dropped by the lingering close unanswered.
    ///
    /// A connection that has received nothing yet is treated as one accepted in the
    /// drain (``ShutdownGrace``): served until its first input is answered, or closed
    /// after ``ShutdownGrace/firstInputWait``. Its client usually connected moments
    /// before and is sending its request; closed at once, it read end of file instead of
    /// a reply (`RestartCommandTests` caught one such client in 22,730 in CI).
    func closeForShutdown() {
        if !transport.isMemory, lifecycle.wantsInput(paused: isReadingPaused || isThrottled) { readable() }
        // Already under a grace (a group's acceptor handed it over from its drain before
        // this reactor's shutdown began): the grace closes it.
        if handler is ShutdownGrace { return }
        if !hasReceived, lifecycle.isOpen, let handler {
            let grace = ShutdownGrace(handler, reactor: reactor)
            self.handler = grace
            grace.waitForFirstInput(on: self)
            return
        }
        close()
    }

    /// How the close counts: a framing failure or the output budget is what closed it
    /// when a timeout or an abort ended a connection they had stopped.
    private func closeKind(_ reason: CloseReason, _ kind: ConnectionCloseKind?) -> ConnectionCloseKind {
        if framingFailed { return .framingError }
        switch reason {
        case .endOfFile, .closed: return .normal
        case .reset: return .reset
        case .writeBufferLimitExceeded: return .limit
        case .failed: return .error
        case .timedOut, .aborted:
            if isThrottled { return .outputBudget }
            return kind ?? (reason == .aborted ? .aborted : .idleTimeout)
        }
    }

    /// Its framer refused the peer's input (`FramedConnection`): whatever ends the
    /// connection now, its close counts as a framing error.
    package func noteFramingFailure() {
        framingFailed = true
    }

    /// The reactor is stopping: close at once.
    func abortForTeardown() {
        finish(.aborted, reset: !output.isEmpty)
    }
}
