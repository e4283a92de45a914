/// A connection's output: bytes go straight to the socket when nothing waits before
/// them, and only what the kernel does not take is copied into a ``ByteQueue``, sent
/// later by ``flush(via:)`` when the socket is writable. It also judges the queue
/// against the connection's watermarks and limit.
///
/// It does no bookkeeping of its own beyond the bytes: the connection turns each
/// ``Outcome`` into writability, the output budget and the write event.
struct OutputQueue: ~Copyable {
    private var queue = ByteQueue()
    /// The reactor's pool, unretained: the connection holds its reactor strongly, so the
    /// pool outlives the queue, and a retain and release of the pool per write were a tenth
    /// of a pipelined line's instructions. Held here, it is loaded only when storage must
    /// grow, not on every write.
    private let unretainedPool: Unmanaged<BufferPool>

    /// What became of a write.
    enum Outcome {
        /// The kernel took all of it.
        case sent
        /// Queued behind output already waiting, or held back by a write batch: the
        /// queue grew by this many bytes.
        case queued(Int)
        /// The kernel took part (or, wouldBlock, none): the rest, this many bytes, is
        /// queued and the socket must be watched for writability.
        case partlySent(queued: Int, progress: Bool)
        /// The socket failed with this errno; nothing was queued.
        case failed(Int32)
    }

    /// What a flush did.
    struct Flushed {
        /// Bytes the kernel took.
        var sent = 0
        /// The errno of a failed send; 0 if none failed.
        var error: Int32 = 0
    }

    init(pool: BufferPool) {
        unretainedPool = .passUnretained(pool)
    }

    private var pool: BufferPool { unretainedPool.takeUnretainedValue() }

    var count: Int { queue.count }
    var isEmpty: Bool { queue.isEmpty }

    /// Writes one buffer: the common reply, in full, is a plain send(2) (about 60
    /// instructions fewer per echo request than the gather path).
    @inline(__always)
    mutating func write(_ bytes: UnsafeRawBufferPointer, batching: Bool, via transport: ConnectionTransport) -> Outcome {
        if queue.isEmpty, !batching, bytes.count > 0 {
            let result = transport.send(bytes)
            if result == .done(bytes.count) { return .sent }
            return remainder(bytes, ByteQueue.none, ByteQueue.none, result: result)
        }
        return write(bytes, ByteQueue.none, ByteQueue.none, batching: batching, via: transport)
    }

    /// Writes up to three parts (a frame's header, payload and trailer) as one. Queueing
    /// comes first and is kept short: in a write batch (a reply per pipelined request)
    /// every write takes that path.
    @inline(__always)
    mutating func write(
        _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer,
        batching: Bool, via transport: ConnectionTransport
    ) -> Outcome {
        if batching || !queue.isEmpty {
            let pool = unretainedPool
            queue.append(a, b, c, pool: pool.takeUnretainedValue())
            return .queued(a.count &+ b.count &+ c.count)
        }
        return sendNow(a, b, c, via: transport)
    }

    /// Nothing queued, not batching: one `sendmsg`, and only what the kernel refuses is
    /// copied. Kept out of line so the queueing path it sits beside stays small.
    @inline(never)
    private mutating func sendNow(
        _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer,
        via transport: ConnectionTransport
    ) -> Outcome {
        let total = a.count + b.count + c.count
        guard total > 0 else { return .sent }
        let result = transport.send(a, b, c)
        if result == .done(total) { return .sent }
        return remainder(a, b, c, result: result)
    }

    /// After a direct send that did not take everything: queue the rest, or report the
    /// socket's error.
    @inline(never)
    private mutating func remainder(
        _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer, result: IOResult
    ) -> Outcome {
        var sent = 0
        switch result {
        case .done(let count): sent = count
        case .wouldBlock, .endOfFile: break
        case .failed(let error): return .failed(error)
        }
        let queuedBefore = queue.count
        sent = enqueue(a, skipping: sent)
        sent = enqueue(b, skipping: sent)
        _ = enqueue(c, skipping: sent)
        return .partlySent(queued: queue.count &- queuedBefore, progress: result != .wouldBlock)
    }

    /// Queues what is left of `part` after the first `skipping` bytes (already sent);
    /// returns how many of the skipped bytes belong to later parts.
    private mutating func enqueue(_ part: UnsafeRawBufferPointer, skipping: Int) -> Int {
        guard skipping < part.count else { return skipping - part.count }
        let pool = unretainedPool
        queue.append(UnsafeRawBufferPointer(rebasing: part[skipping...]), pool: pool.takeUnretainedValue())
        return 0
    }

    /// Sends queued output until it is gone, the kernel is full, or the socket fails.
    mutating func flush(via transport: ConnectionTransport) -> Flushed {
        var flushed = Flushed()
        sending: while !queue.isEmpty {
            let bytes = queue.bytes
            switch transport.send(bytes) {
            case .done(let count):
                queue.consume(count, pool: pool)
                flushed.sent &+= count
                if count < bytes.count { break sending }
            case .wouldBlock, .endOfFile:
                break sending
            case .failed(let error):
                flushed.error = error
                break sending
            }
        }
        return flushed
    }

    /// Drops everything queued (the connection closed); returns how many bytes that was.
    mutating func release() -> Int {
        let dropped = queue.count
        queue.release(pool: pool)
        return dropped
    }

    // MARK: - Watermarks

    /// Over ``ConnectionOptions/writeBufferLimit``: the connection must be aborted.
    @inline(__always)
    func isOverLimit(_ options: ConnectionOptions) -> Bool { queue.count > options.writeBufferLimit }

    /// Above ``ConnectionOptions/writeBufferHighWatermark``: the connection is not writable.
    @inline(__always)
    func isAboveHighWatermark(_ options: ConnectionOptions) -> Bool { queue.count > options.writeBufferHighWatermark }

    /// At or below ``ConnectionOptions/writeBufferLowWatermark``: writable again.
    @inline(__always)
    func isAtLowWatermark(_ options: ConnectionOptions) -> Bool { queue.count <= options.writeBufferLowWatermark }
}
