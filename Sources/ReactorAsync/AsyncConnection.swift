import ReactorCore
import ReactorFraming

/// A TCP connection for async code: ``inbound``, an `AsyncSequence` of frames, and
/// ``outbound``, a writer whose `write` suspends while the connection is not writable.
///
/// Made by `ReactorHandle.connect(host:port:framing:timeout:options:)` or
/// accepted by an ``AsyncListener``. It is `Sendable`: use it from any task. Its state
/// lives on the reactor thread; a task that runs there (an actor on
/// `Reactor.executor`, or `Task(executorPreference: handle.executor)`)
/// reaches it without a thread hop, any other task hops to the reactor and back for each
/// call.
///
/// ```swift
/// let connection = try await handle.connect(host: "127.0.0.1", port: port, framing: .line)
/// try await connection.executeThenClose { inbound, outbound in
///     try await outbound.write("hello")
///     for try await line in inbound { print(line.string) }
/// }
/// ```
///
/// Backpressure comes from the consumer: a task that stops iterating ``inbound`` stops
/// the reactor reading the socket once the buffered frames pass the high watermarks of
/// ``AsyncConnectionOptions``. Cancelling the task that iterates ``inbound`` closes the
/// connection (gracefully: what was written is still sent).
public final class AsyncConnection: Sendable {
    let core: ConnectionCore

    init(core: ConnectionCore) {
        self.core = core
    }

    /// The frames the peer sends, in order. It ends (nil) when the peer closes its side or
    /// this side closes the connection, and throws for a reset, a timeout, a framing error
    /// (`FramingError`) or cancellation. Iterate it from one task at a time.
    public var inbound: Inbound { Inbound(core: core) }

    /// Sends frames to the peer.
    public var outbound: Outbound { Outbound(core: core) }

    /// The reactor's executor, for `Task(executorPreference:)`.
    public var executor: ReactorExecutor { core.executor }

    /// The remote end's address.
    public var peerAddress: SocketAddress {
        get async { await onReactor(core) { core, _ in core.peerAddress! } }
    }

    /// Runs `body` with the connection's two halves, then closes the connection
    /// gracefully (whether `body` returned or threw) and waits until it is closed:
    /// everything written before `body` ended is sent first, a 1 MiB write just before
    /// the end included.
    public func executeThenClose<Result>(
        isolation actor: isolated (any Actor)? = #isolation,
        _ body: (Inbound, Outbound) async throws -> Result
    ) async throws -> Result {
        let result: Result
        do {
            result = try await body(inbound, outbound)
        } catch {
            await close()
            throw error
        }
        await close()
        return result
    }

    /// Closes gracefully (flush, then close) and waits until the connection is closed.
    public func close() async {
        await onReactor(core) { core, actor in await core.closeAndWait(isolation: actor) }
    }

    /// The frames received on a connection; see ``AsyncConnection/inbound``.
    public struct Inbound: AsyncSequence, Sendable {
        public typealias Element = Frame
        public typealias Failure = any Error
        let core: ConnectionCore

        public func makeAsyncIterator() -> Iterator { Iterator(core: core) }

        /// Bytes and frames received but not yet taken, and whether reading is paused
        /// because of them (the consumer is behind).
        public var buffered: (bytes: Int, frames: Int, readingPaused: Bool) {
            get async {
                await onReactor(core) { core, _ in
                    let (bytes, frames) = core.buffered
                    return (bytes, frames, core.isReadingPausedForConsumer)
                }
            }
        }

        /// The most bytes ever held for the consumer at once: with
        /// ``AsyncConnectionOptions/highWatermarkBytes``, the measure of backpressure.
        public var peakBufferedBytes: Int {
            get async { await onReactor(core) { core, _ in core.peakBufferedBytes } }
        }

        /// Takes frames one by one.
        public struct Iterator: AsyncIteratorProtocol {
            let core: ConnectionCore

            // `nonisolated(nonsending)` (run on the caller's executor) and so no `isolated`
            // parameter: a function isolated to its `actor` switches to it on entry and
            // back after each call, and every such switch takes the task's status lock to
            // read its executor preference. `for try await` passes its own isolation here,
            // which is where this runs anyway; the work is on the reactor thread either way.
            // Async echo: 9,404 -> 8,224 instructions per request with `write` and the core's
            // waits nonsending too (docs/async.md, "Instructions per request").
            nonisolated(nonsending) public mutating func next(isolation actor: (any Actor)?) async throws -> Frame? {
                if core.executor.isCurrentThread {
                    if let ready = core.nextWithoutWaiting() { return try ready.get() }
                    return try await core.next()
                }
                return try await withTaskExecutorPreference(core.executor) { [core] in try await core.nextHopped() }
            }

            nonisolated(nonsending) public mutating func next() async throws -> Frame? {
                try await next(isolation: #isolation)
            }
        }
    }

    /// Sends frames on a connection; see ``AsyncConnection/outbound``.
    ///
    /// Each `write` frames its payload with the connection's framer (a length prefix, a
    /// delimiter, nothing for raw bytes). It waits first while the connection is not
    /// writable (queued output above the high watermark), so a fast producer is held to
    /// the pace of the peer. Writes that follow one another while the reactor runs its
    /// jobs (a reply per pipelined request) go out together, in one syscall, when the
    /// run ends; a lone reply goes out at once.
    public struct Outbound: Sendable {
        let core: ConnectionCore

        /// Sends `payload` as one frame.
        ///
        /// - Throws: `ReactorError` when the connection is closed,
        ///   `FramingError` when the framer cannot frame the payload,
        ///   `CancellationError` when cancelled while waiting to write.
        nonisolated(nonsending) public func write(_ payload: [UInt8]) async throws {
            if core.executor.isCurrentThread {
                let send = { (framed: FramedConnection) throws(FramingError) in try ConnectionCore.send(payload, on: framed) }
                if try core.writeWithoutWaiting(send) { return }
                return try await core.write(send)
            }
            try await withTaskExecutorPreference(core.executor) { [core] in try await core.writeHopped(payload) }
        }

        /// Sends a string's UTF-8 as one frame; see ``write(_:)-([UInt8])``.
        nonisolated(nonsending) public func write(_ payload: String) async throws {
            try await write(Array(payload.utf8))
        }

        /// Sends a received frame on (an echo, a relay); see ``write(_:)-([UInt8])``.
        nonisolated(nonsending) public func write(_ payload: Frame) async throws {
            if core.executor.isCurrentThread {
                let send = { (framed: FramedConnection) throws(FramingError) in try ConnectionCore.send(payload, on: framed) }
                if try core.writeWithoutWaiting(send) { return }
                return try await core.write(send)
            }
            try await withTaskExecutorPreference(core.executor) { [core] in try await core.writeHopped(payload) }
        }

        /// Half-closes: once what was written is sent, the peer reads end-of-file, while
        /// ``AsyncConnection/inbound`` goes on (with `ConnectionOptions.allowRemoteHalfClosure`
        /// on the peer's side).
        public func finish() async {
            await onReactor(core) { core, _ in core.shutdownOutput() }
        }
    }
}

/// Runs `body` on the reactor thread: at once when already there, otherwise by hopping
/// there for the call (the task prefers the reactor's executor for its duration).
func onReactor<T: Sendable>(
    _ core: ConnectionCore, isolation actor: isolated (any Actor)? = #isolation,
    _ body: @Sendable (ConnectionCore, isolated (any Actor)?) async -> T
) async -> T {
    if core.executor.isCurrentThread { return await body(core, actor) }
    return await withTaskExecutorPreference(core.executor) { await hopped(core, body) }
}

/// Nonisolated: runs on the task's preferred executor, the reactor.
private func hopped<T: Sendable>(_ core: ConnectionCore, _ body: @Sendable (ConnectionCore, isolated (any Actor)?) async -> T) async -> T {
    await body(core, nil)
}

extension ConnectionCore {
    // Nonisolated async methods run on the task's preferred executor: called inside
    // `withTaskExecutorPreference(executor)`, on the reactor thread.

    func nextHopped() async throws -> Frame? {
        try await next()
    }

    func writeHopped(_ payload: [UInt8]) async throws {
        try await write { framed throws(FramingError) in try ConnectionCore.send(payload, on: framed) }
    }

    func writeHopped(_ payload: Frame) async throws {
        try await write { framed throws(FramingError) in try ConnectionCore.send(payload, on: framed) }
    }
}
