import Glibc
import Logging
import ReactorCore
import ReactorFraming
import Synchronization

/// The reactor-side half of an ``AsyncConnection``: the frame handler of its framed
/// connection, the frames waiting for the consumer, and the tasks waiting for frames, for
/// writability or for the close. All of it is confined to the reactor thread (checked on
/// every entry from async code); it is `Sendable` only so that closures for the reactor
/// can carry it.
final class ConnectionCore: FrameHandler, @unchecked Sendable {
    // The state below is confined to the reactor thread and never passed inout across a
    // call that reaches user code (a continuation's resume only queues a job), so Swift's
    // dynamic exclusivity checks are off for what every frame touches: they were 15
    // `swift_beginAccess` calls per async echo request (docs/performance.md, the ledger).
    let executor: ReactorExecutor
    let handle: ReactorHandle
    let options: AsyncConnectionOptions
    let logger: Logger
    @exclusivity(unchecked) private(set) var framed: FramedConnection?
    private(set) var peerAddress: SocketAddress?
    /// Set (releasing) on the reactor thread when the connection opens, read (acquiring)
    /// by the task the connect hands it to: that task reads `executor` and the other
    /// constants on its own thread. The continuation's resume orders those reads after
    /// `init` too, but ThreadSanitizer did not see that order (CI, 2026-12-03: a race
    /// reported between `init` on the reactor and `Outbound.write` on a pool thread);
    /// this pair states it where it can.
    private let handedOver = Atomic<Bool>(false)

    @exclusivity(unchecked) private var arena: FrameArena
    @exclusivity(unchecked) private var frames: [Frame] = []
    @exclusivity(unchecked) private var head = 0
    @exclusivity(unchecked) private var bufferedBytes = 0
    @exclusivity(unchecked) private var pausedForConsumer = false
    @exclusivity(unchecked) private var reader: UnsafeContinuation<Frame?, any Error>?
    private var writers: [Writer] = []
    private var closeWaiters: [UnsafeContinuation<Void, Never>] = []
    /// Why the connection ended, once it has (or why it will: a framing error).
    private var ending: Ending?
    @exclusivity(unchecked) private var isClosed = false
    /// A request/response client's connection: frames answer requests in order.
    var isClient = false
    private var replies: [Reply] = []
    private var replyHead = 0
    /// Numbers the requests and the writes that wait, so that a cancellation finds its own.
    private var nextWaiter: UInt64 = 0
    /// The reactor's run of executor jobs in which this connection last wrote.
    @exclusivity(unchecked) private var lastWriteRun: UInt64 = 0

    /// A task waiting for the connection to become writable.
    struct Writer {
        let id: UInt64
        let continuation: UnsafeContinuation<Void, any Error>
    }

    struct Reply {
        let id: UInt64
        let continuation: UnsafeContinuation<Frame, any Error>
        let timer: ReactorTimer?
    }
    /// Told once when the connection opens (the listener that hands it out) or fails to.
    var onOpen: ((Result<ConnectionCore, any Error>) -> Void)?

    enum Ending {
        case closed(CloseReason)
        case framing(FramingError)
        case cancelled
    }

    init(reactor: Reactor, options: AsyncConnectionOptions) {
        executor = reactor.executor
        handle = reactor.handle
        logger = reactor.logger
        self.options = options
        arena = FrameArena(chunkSize: options.chunkSize)
    }

    /// The most bytes the consumer has left buffered; for tests of the watermark.
    @exclusivity(unchecked) private(set) var peakBufferedBytes = 0
    var isReadingPausedForConsumer: Bool { pausedForConsumer }
    var buffered: (bytes: Int, frames: Int) { (bufferedBytes, frames.count - head) }

    // MARK: - FrameHandler (the reactor's side)

    func opened(_ connection: FramedConnection) {
        framed = connection
        peerAddress = connection.peerAddress
        let onOpen = self.onOpen
        self.onOpen = nil
        handedOver.store(true, ordering: .releasing)
        onOpen?(.success(self))
    }

    /// Called by the task that receives this core from another thread, before it reads
    /// any of it; see `handedOver`.
    func takeOver() {
        _ = handedOver.load(ordering: .acquiring)
    }

    func received(frame: RawSpan, on connection: FramedConnection) {
        let frame = arena.copy(frame)
        if isClient {
            replied(frame, on: connection)
            return
        }
        if let reader, head == frames.count {
            self.reader = nil
            reader.resume(returning: frame)
            return
        }
        frames.append(frame)
        bufferedBytes += frame.count
        peakBufferedBytes = max(peakBufferedBytes, bufferedBytes)
        if !pausedForConsumer,
            bufferedBytes > options.highWatermarkBytes || frames.count - head > options.highWatermarkFrames
        {
            pausedForConsumer = true
            connection.pauseDelivery()
        }
    }

    func writabilityChanged(_ connection: FramedConnection) {
        guard connection.isWritable else { return }
        resumeWriters(throwing: nil)
    }

    func framingFailed(_ error: FramingError, on connection: FramedConnection) {
        logger.warning("framing error from \(connection.peerAddress): \(error); closing the connection")
        if ending == nil { ending = .framing(error) }
        connection.abort()
    }

    func closed(_ connection: FramedConnection, reason: CloseReason) {
        isClosed = true
        // The framed connection's handler is this core: kept, it would be a cycle holding
        // the connection and, through it, the reactor after both are done (LeakSanitizer
        // found it, for every reactor that had an async connection).
        framed = nil
        if ending == nil { ending = .closed(reason) }
        arena.release()
        if let reader, head == frames.count {
            self.reader = nil
            reader.resume(with: endOfInput())
        }
        resumeWriters(throwing: closedError(.write))
        failReplies(reason == .endOfFile || reason == .closed ? closedError(.read) : closeError(reason))
        let waiters = closeWaiters
        closeWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// An outgoing connect failed, or was given up; the connect call throws.
    func connectFailed(_ error: any Error) {
        isClosed = true
        ending = .cancelled
        let onOpen = self.onOpen
        self.onOpen = nil
        onOpen?(.failure(error))
    }

    // MARK: - Inbound (the consumer's side, on the reactor thread)

    /// What ``next()`` answers without waiting: a buffered frame, or the end of
    /// input; nil when it would wait. The iterator tries it first, so that taking the rest
    /// of a pipelined read costs no async call (each one is a switch in the runtime).
    func nextWithoutWaiting() -> Result<Frame?, any Error>? {
        if let frame = takeFrame() { return .success(frame) }
        if isClosed { return endOfInput() }
        return nil
    }

    /// The next frame, nil at a clean end of input; suspends while none is buffered.
    nonisolated(nonsending) func next() async throws -> Frame? {
        if reactorHasGone { throw stoppedError(.read) }
        if let frame = takeFrame() { return frame }
        if isClosed { return try endOfInput().get() }
        if Task.isCancelled {
            cancel()
            throw CancellationError()
        }
        // The handler without an `isolation` parameter: it runs where its caller runs, as
        // this nonsending function does; the one with it switches on entry, in its
        // operation and on return (8,224 -> 7,673 instructions per async echo request).
        return try await _unsafeInheritExecutor_withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                // The runtime may have hopped (through the reactor's queue) on the way
                // here, and frames or the close come in between: look again.
                if reactorHasGone {
                    continuation.resume(throwing: stoppedError(.read))
                } else if let frame = takeFrame() {
                    continuation.resume(returning: frame)
                } else if isClosed {
                    continuation.resume(with: endOfInput())
                } else {
                    reader = continuation
                    // A cancellation's job may have overtaken that hop and found no reader.
                    if Task.isCancelled { cancel() }
                }
            }
        } onCancel: { [self] in
            handle.execute { _ in self.cancel() }
        }
    }

    private func takeFrame() -> Frame? {
        guard head < frames.count else { return nil }
        let frame = frames[head]
        head += 1
        bufferedBytes -= frame.count
        if head == frames.count {
            frames.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024, head * 2 >= frames.count {
            frames.removeFirst(head)
            head = 0
        }
        if pausedForConsumer, bufferedBytes <= options.lowWatermarkBytes,
            frames.count - head <= options.lowWatermarkFrames
        {
            pausedForConsumer = false
            framed?.resumeDelivery()
        }
        return frame
    }

    /// Nil for a clean end (the peer's FIN, a close from this side), the error otherwise.
    private func endOfInput() -> Result<Frame?, any Error> {
        switch ending {
        case .none, .closed(.endOfFile), .closed(.closed):
            return .success(nil)
        case .cancelled:
            return .failure(CancellationError())
        case .framing(let error):
            return .failure(error)
        case .closed(let reason):
            return .failure(closeError(reason))
        }
    }

    private func closeError(_ reason: CloseReason) -> ReactorError {
        switch reason {
        case .failed(let error):
            return error
        case .reset:
            return ReactorError(errno: ECONNRESET, operation: .read, address: peerAddress)
        case .timedOut:
            var error = ReactorError(errno: ETIMEDOUT, operation: .read, address: peerAddress)
            error.hint = "idle timeout, or a close that could not flush within closeTimeout"
            return error
        case .writeBufferLimitExceeded:
            return ReactorError(
                .writeBufferLimitExceeded, operation: .write, address: peerAddress,
                hint: "more output queued than writeBufferLimit allows; the connection was aborted")
        case .aborted, .endOfFile, .closed:
            return ReactorError(.invalidState, operation: .read, address: peerAddress, hint: "the connection was \(reason)")
        }
    }

    /// The error for using a connection that has closed.
    func closedError(_ operation: ReactorError.Operation) -> ReactorError {
        let why: String = switch ending {
        case .none: "closed"
        case .cancelled: "closed: the task reading it was cancelled"
        case .framing(let error): "closed: \(error)"
        case .closed(let reason): "closed (\(reason))"
        }
        return ReactorError(.invalidState, operation: operation, address: peerAddress, hint: "the connection is \(why)")
    }

    /// The reading task was cancelled: the connection closes (flushing what was written)
    /// and the reader, if waiting, throws `CancellationError`.
    func cancel() {
        if ending == nil { ending = .cancelled }
        if let reader {
            self.reader = nil
            reader.resume(throwing: CancellationError())
        }
        framed?.close()
    }

    /// False on the reactor thread; true when the reactor has stopped and this runs on
    /// another thread, where nothing here may be touched: once the reactor has torn down
    /// (closing this connection), its executor hands jobs to the global executor, so the
    /// hop to the reactor thread lands elsewhere. Traps on another thread otherwise.
    var reactorHasGone: Bool {
        if executor.isCurrentThread { return false }
        precondition(executor.hasStopped, "not on the reactor's thread: this code must run on the reactor")
        return true
    }

    /// The error for a call made after the reactor stopped (the connection closed with it).
    func stoppedError(_ operation: ReactorError.Operation) -> ReactorError {
        ReactorError(.reactorStopped, operation: operation, address: peerAddress, hint: "the connection closed when its reactor stopped")
    }

    // MARK: - Outbound

    /// Sends one frame, after waiting while the connection is not writable.
    nonisolated(nonsending) func write(_ send: (FramedConnection) throws(FramingError) -> Bool) async throws {
        if reactorHasGone { throw stoppedError(.write) }
        if let framed, !isClosed, !framed.isWritable {
            let id = takeWaiterID()
            try await withTaskCancellationHandler {
                while let framed = self.framed, !isClosed, !framed.isWritable {
                    try await waitWritable(id: id)
                }
            } onCancel: { [self] in
                handle.execute { _ in _ = self.writerCancelled(id) }
            }
            // The wait may end after the reactor stopped, off its thread.
            if reactorHasGone { throw stoppedError(.write) }
        }
        guard let framed, !isClosed else { throw closedError(.write) }
        try sendNow(send, on: framed)
    }

    /// Sends `send`'s frame at once when the connection is writable: true once sent, false
    /// when the writer must wait (``write(_:)``). Outbound tries it first: a
    /// write that need not wait costs no async call.
    func writeWithoutWaiting(_ send: (FramedConnection) throws(FramingError) -> Bool) throws -> Bool {
        guard let framed, !isClosed else { throw closedError(.write) }
        guard framed.isWritable else { return false }
        try sendNow(send, on: framed)
        return true
    }

    private func sendNow(_ send: (FramedConnection) throws(FramingError) -> Bool, on framed: FramedConnection) throws {
        if let connection = framed.connection { coalesceWrites(on: connection) }
        guard try send(framed) else { throw closedError(.write) }
    }

    /// Holds the connection's writes until the reactor has run the jobs it is running,
    /// then sends them with one syscall, when this write is likely not the last before
    /// then: frames wait for the consumer (a reply per pipelined request), or a write went
    /// out already in this run (a producer in a loop, requests from many tasks). A lone
    /// reply (ping-pong) goes out at once, with no copy into the output queue.
    private func coalesceWrites(on connection: Connection) {
        let run = connection.reactor.executorJobRuns
        if run == lastWriteRun || head < frames.count { connection.holdWritesUntilJobsEnd() }
        lastWriteRun = run
    }

    private func takeWaiterID() -> UInt64 {
        defer { nextWaiter += 1 }
        return nextWaiter
    }

    /// Frames and sends `payload`: false when the connection no longer takes writes, a
    /// throw when the framer refuses the payload. The one place that calls `send(frame:)`.
    static func send(_ payload: [UInt8], on framed: FramedConnection) throws(FramingError) -> Bool {
        try sent(framed.send(frame: payload))
    }

    static func send(_ payload: Frame, on framed: FramedConnection) throws(FramingError) -> Bool {
        try sent(payload.withBytes { bytes in framed.send(frame: bytes) })
    }

    /// A refused payload is the writer's error to catch; a closed connection is not.
    private static func sent(_ result: FramedConnection.SendResult) throws(FramingError) -> Bool {
        switch result {
        case .sent: return true
        case .closed: return false
        case .refused(let error): throw error
        }
    }

    /// Waits until the connection is writable or closed; throws `CancellationError` when
    /// the task is cancelled (`writerCancelled(_:)`, which the caller's handler queues).
    nonisolated(nonsending) private func waitWritable(id: UInt64) async throws {
        try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
            // The runtime may hop through the reactor's queue on the way here, and the
            // job of a cancellation that came first may run in between, finding no writer.
            if reactorHasGone {
                continuation.resume(throwing: stoppedError(.write))
            } else if Task.isCancelled {
                continuation.resume(throwing: CancellationError())
            } else if let framed, !isClosed, !framed.isWritable {
                writers.append(Writer(id: id, continuation: continuation))
            } else {
                continuation.resume()
            }
        }
    }

    /// The task of writer `id` was cancelled: it throws `CancellationError`, if it waits.
    @discardableResult
    private func writerCancelled(_ id: UInt64) -> Bool {
        guard let index = writers.firstIndex(where: { $0.id == id }) else { return false }
        writers.remove(at: index).continuation.resume(throwing: CancellationError())
        return true
    }

    private func resumeWriters(throwing error: (any Error)?) {
        guard !writers.isEmpty else { return }
        let waiting = writers
        writers.removeAll()
        for writer in waiting {
            if let error { writer.continuation.resume(throwing: error) } else { writer.continuation.resume() }
        }
    }

    /// Half-closes: the peer reads end-of-file once what was written is sent.
    func shutdownOutput() {
        framed?.shutdownOutput()
    }

    // MARK: - Closing

    /// Closes gracefully (everything written is sent first) and waits until it is closed.
    func closeAndWait(isolation actor: isolated (any Actor)?) async {
        if reactorHasGone { return }
        framed?.close()
        guard !isClosed, framed != nil else { return }
        await withUnsafeContinuation(isolation: actor) { continuation in
            if isClosed { continuation.resume() } else { closeWaiters.append(continuation) }
        }
    }

    func close() {
        framed?.close()
    }
}

extension ConnectionCore {
    // MARK: - Requests and replies (AsyncRequestClient)

    /// Sends `send`'s frame and waits for the frame that answers it: replies come in the
    /// order of the requests, so the n-th reply answers the n-th request.
    ///
    /// A cancelled request throws `CancellationError` and closes the connection, whether it
    /// was waiting for writability, about to be sent, or waiting for its reply: its caller
    /// cannot tell which, so every cancellation ends the same way.
    func request(
        isolation actor: isolated (any Actor)?, timeout: Duration?,
        _ send: (FramedConnection) throws(FramingError) -> Bool
    ) async throws -> Frame {
        if reactorHasGone { throw stoppedError(.write) }
        let id = takeWaiterID()
        return try await withTaskCancellationHandler {
            do {
                while let framed, !isClosed, !framed.isWritable {
                    try await waitWritable(id: id)
                }
            } catch let error as CancellationError {
                if !reactorHasGone { closeForBrokenOrder() }
                throw error
            }
            return try await withUnsafeThrowingContinuation(isolation: actor) { continuation in
                // Sent and awaited in one step on the reactor thread: no reply can come
                // in between.
                if reactorHasGone {
                    continuation.resume(throwing: stoppedError(.write))
                    return
                }
                // The runtime may hop through the reactor's queue on the way here: the
                // job of a cancellation that came first (even before the handler was
                // installed: the handler then runs at once and queues it) may have run
                // in between and found nothing to cancel. A cancellation after this check
                // queues its job behind this one, which has registered the reply by then.
                if Task.isCancelled {
                    continuation.resume(throwing: CancellationError())
                    closeForBrokenOrder()
                    return
                }
                do {
                    guard let framed, !isClosed else { throw closedError(.write) }
                    if let connection = framed.connection { coalesceWrites(on: connection) }
                    guard try send(framed) else { throw closedError(.write) }
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                let timer = timeout.flatMap { timeout in
                    framed?.connection?.reactor.schedule(after: timeout) { [self] _ in timedOut(id, after: timeout) }
                }
                replies.append(Reply(id: id, continuation: continuation, timer: timer))
            }
        } onCancel: { [self] in
            handle.execute { _ in self.requestCancelled(id) }
        }
    }

    fileprivate func replied(_ frame: Frame, on connection: FramedConnection) {
        guard replyHead < replies.count else {
            logger.warning("connection \(connection.peerAddress): a reply no request asked for; closing the connection")
            connection.close()
            return
        }
        let reply = replies[replyHead]
        replyHead += 1
        if replyHead == replies.count {
            replies.removeAll(keepingCapacity: true)
            replyHead = 0
        }
        reply.timer?.cancel()
        reply.continuation.resume(returning: frame)
    }

    private func timedOut(_ id: UInt64, after timeout: Duration) {
        guard replyHead < replies.count, let index = replies[replyHead...].firstIndex(where: { $0.id == id }) else { return }
        let reply = replies.remove(at: index)
        reply.continuation.resume(
            throwing: ReactorError(
                .timedOut, operation: .read, address: peerAddress,
                hint: "no reply within \(timeout); the connection is closed, since later replies would answer the wrong requests"))
        closeForBrokenOrder()
    }

    private func requestCancelled(_ id: UInt64) {
        // Still waiting to go out: the request closes the connection as it throws.
        if writerCancelled(id) { return }
        guard replyHead < replies.count, let index = replies[replyHead...].firstIndex(where: { $0.id == id }) else { return }
        let reply = replies.remove(at: index)
        reply.timer?.cancel()
        reply.continuation.resume(throwing: CancellationError())
        closeForBrokenOrder()
    }

    /// A request gave up waiting: its reply would answer the next one, so the connection
    /// closes and the requests behind it fail.
    private func closeForBrokenOrder() {
        if ending == nil { ending = .cancelled }
        failReplies(ReactorError(
            .invalidState, operation: .read, address: peerAddress,
            hint: "the connection was closed: an earlier request timed out or was cancelled"))
        framed?.close()
    }

    fileprivate func failReplies(_ error: any Error) {
        guard replyHead < replies.count else { return }
        let failing = replies[replyHead...]
        replies.removeAll()
        replyHead = 0
        for reply in failing {
            reply.timer?.cancel()
            reply.continuation.resume(throwing: error)
        }
    }
}

/// Forwards a connection's events to a framed connection, and a failed connect to the
/// async connect waiting for it.
final class ConnectAdapter: ConnectionHandler {
    let framed: FramedConnection
    let core: ConnectionCore

    init(framed: FramedConnection, core: ConnectionCore) {
        self.framed = framed
        self.core = core
    }

    func opened(_ connection: Connection) { framed.opened(connection) }
    func received(_ bytes: RawSpan, on connection: Connection) { framed.received(bytes, on: connection) }
    func writabilityChanged(_ connection: Connection) { framed.writabilityChanged(connection) }
    func inputClosed(_ connection: Connection) { framed.inputClosed(connection) }
    func closed(_ connection: Connection, reason: CloseReason) { framed.closed(connection, reason: reason) }
    func connectFailed(_ error: ReactorError) { core.connectFailed(error) }
}
