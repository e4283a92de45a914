import Logging
import ReactorCore

/// Puts a ``Framer`` between a TCP `Connection` and a ``FrameHandler``: bytes in,
/// frames out, and frames in, bytes out.
///
/// Install it as the connection's handler:
///
/// ```swift
/// try reactor.listen(host: "127.0.0.1", port: 0) { _ in
///     FramedConnection(framer: LengthPrefixFramer(width: .four), handler: MyHandler())
/// }
/// ```
///
/// Frames are delivered straight from the reactor's read buffer when they arrive whole;
/// only the tail of a read that ends mid-frame is copied, into a per-connection buffer
/// that exists only while bytes wait in it. Replies sent with ``send(frame:)-(RawSpan)`` while
/// frames are being delivered are gathered and written with one syscall after the last
/// frame of the read.
///
/// The handler may, from inside ``FrameHandler/received(frame:on:)``:
/// - ``pauseDelivery()``: frames already read stay buffered and arrive, in order, after
///   ``resumeDelivery()``;
/// - set ``framer``: the bytes not yet framed are framed by the new framer (line mode for
///   a header, then fixed length or raw for a body).
public final class FramedConnection: ConnectionHandler {
    // State is confined to the reactor thread, and the framer is only passed inout to
    // its own methods, which cannot reach back here: Swift's dynamic exclusivity checks
    // would cost more than the framing itself, so they are off for it.

    /// The framer applied to the bytes not yet framed. Set it to switch framing
    /// mid-stream; it takes effect from the next frame, including bytes already received.
    public var framer: any Framer {
        get { engine.framer }
        set { engine = FramerEngine.make(newValue) }
    }

    /// The framer, specialized for its type (see ``FramerEngine``).
    @exclusivity(unchecked) private var engine: FramerEngine {
        didSet {
            borrowedEngine = Unmanaged.passUnretained(engine)
            // Decoded by the framer being replaced: the new one checks it.
            decodedPayload = FramedConnection.noPayload
        }
    }
    /// The same engine, called without a retain per frame: `engine` owns it, and a
    /// delivery in progress holds the one it started with.
    @exclusivity(unchecked) private var borrowedEngine: Unmanaged<FramerEngine>

    /// The code that receives frames.
    public let handler: any FrameHandler

    /// Whether frames go through code compiled for the framer's type (every built-in
    /// framer) rather than through `any Framer` (a framer from another module).
    package var isFramerSpecialized: Bool { engine.isSpecialized }

    /// The underlying connection (nil only before it opens).
    @exclusivity(unchecked) public private(set) var connection: Connection?

    /// True between ``pauseDelivery()`` and ``resumeDelivery()``.
    @exclusivity(unchecked) public private(set) var isDeliveryPaused = false

    @exclusivity(unchecked) private var input = ByteQueue()
    @exclusivity(unchecked) private var hasFailed = false
    private var resumeScheduled = false
    @exclusivity(unchecked) private var missingBytes = 1
    /// The connection while frames are being delivered, borrowed without a retain per
    /// reply: delivery holds a strong reference for its whole duration.
    @exclusivity(unchecked) private var delivering: Unmanaged<Connection>?
    /// The payload of the frame being delivered, while its handler runs: sent back
    /// unchanged (an echo), the framer may skip the checks it already passed
    /// (``SpecializedFramer/encodeHeader(forDecoded:by:into:)``).
    @exclusivity(unchecked) private var decodedPayload = FramedConnection.noPayload
    private static var noPayload: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    private var isDelivering: Bool { delivering != nil }

    /// An adapter that frames with `framer` and delivers to `handler`.
    public init(framer: any Framer, handler: any FrameHandler) {
        let engine = FramerEngine.make(framer)
        self.engine = engine
        self.borrowedEngine = Unmanaged.passUnretained(engine)
        self.handler = handler
    }

    deinit {
        if let connection { input.release(pool: connection.reactor.bufferPool) }
    }

    // MARK: - For the frame handler

    /// The peer's address.
    public var peerAddress: SocketAddress { connection!.peerAddress }

    /// The reactor's logger.
    public var logger: Logger { connection!.logger }

    /// The connection's log metadata (its peer); see `Connection/logMetadata`.
    public var logMetadata: Logger.Metadata { connection?.logMetadata ?? [:] }

    /// See `Connection/isWritable`.
    public var isWritable: Bool { connection?.isWritable ?? false }

    /// Bytes received but not yet delivered as frames (a partial frame, or the rest of a
    /// paused read).
    public var bufferedInputBytes: Int { input.count }

    /// What became of a frame given to ``send(frame:)-(RawSpan)``.
    public enum SendResult: Sendable, Equatable {
        /// Written, or queued to be written: the peer gets it unless the connection fails.
        case sent
        /// Dropped: the connection is closing or closed, or its output was shut down.
        case closed
        /// Dropped: the framer cannot frame this payload (over the limit, contains the
        /// delimiter, not the fixed length). Nothing was sent; the connection is untouched.
        case refused(FramingError)

        /// True for ``sent``.
        public var isSent: Bool { self == .sent }
    }

    /// Sends `payload` as one frame: the framer's header, the payload, its trailer.
    ///
    /// Outside frame delivery the three parts go out in one `sendmsg` without copying;
    /// during delivery they are queued and flushed with the other replies.
    ///
    /// It never throws: a reply needs no `do`/`catch`. Check the result where a dropped
    /// frame matters (a payload that comes from user data may be unframeable).
    @discardableResult
    public func send(frame payload: RawSpan) -> SendResult {
        withUnsafeTemporaryAllocation(byteCount: FramerLimits.maxHeaderLength, alignment: 8) {
            (header: UnsafeMutableRawBufferPointer) -> SendResult in
            let decoded = decodedPayload
            let encoded = borrowedEngine._withUnsafeGuaranteedRef { engine in
                Result { () throws(FramingError) -> (Int, UnsafeRawBufferPointer) in
                    (try engine.encodeHeader(for: payload, into: header, decoded: decoded), engine.trailer)
                }
            }
            let headerLength: Int
            let trailer: UnsafeRawBufferPointer
            switch encoded {
            case .success(let parts): (headerLength, trailer) = parts
            case .failure(let error): return .refused(error)
            }
            let prefix = UnsafeRawBufferPointer(rebasing: header[..<headerLength])
            let written = payload.withUnsafeBytes { body in
                if let delivering {
                    return delivering._withUnsafeGuaranteedRef { $0.write(prefix: prefix, body, suffix: trailer) }
                }
                return connection?.write(prefix: prefix, body, suffix: trailer) ?? false
            }
            return written ? .sent : .closed
        }
    }

    /// Sends an array of bytes as one frame; see ``send(frame:)-(RawSpan)``.
    @discardableResult
    public func send(frame payload: [UInt8]) -> SendResult {
        send(frame: payload.span.bytes)
    }

    /// Sends a string's UTF-8 as one frame; see ``send(frame:)-(RawSpan)``.
    @discardableResult
    public func send(frame payload: String) -> SendResult {
        send(frame: Array(payload.utf8))
    }

    /// Stops delivering frames (and reading from the socket) after the current one.
    /// Bytes already received stay buffered.
    public func pauseDelivery() {
        guard !isDeliveryPaused else { return }
        isDeliveryPaused = true
        connection?.pauseReading()
    }

    /// Delivers the buffered frames, in order, then reads again. The buffered frames
    /// arrive after the current callback returns, never inside this call.
    public func resumeDelivery() {
        guard isDeliveryPaused else { return }
        isDeliveryPaused = false
        guard let connection, connection.phase == .open else { return }
        if input.isEmpty || isDelivering {
            connection.resumeReading()
        } else if !resumeScheduled {
            resumeScheduled = true
            connection.reactor.runSoon { [self] in
                resumeScheduled = false
                guard !isDeliveryPaused, connection.phase == .open else { return }
                deliverBuffered()
                if !isDeliveryPaused { connection.resumeReading() }
            }
        }
    }

    /// Closes gracefully; see `Connection/close()`.
    public func close() { connection?.close() }

    /// Closes at once, dropping output; see `Connection/abort()`.
    public func abort() { connection?.abort() }

    /// Half-closes the sending side; see `Connection/shutdownOutput()`.
    public func shutdownOutput() { connection?.shutdownOutput() }

    // MARK: - ConnectionHandler

    public func opened(_ connection: Connection) {
        self.connection = connection
        // A partial frame is not progress: a peer trickling one byte at a time must not
        // hold a connection past the idle timeout.
        connection.countIdleInputByProgress()
        handler.opened(self)
    }

    public func received(_ bytes: RawSpan, on connection: Connection) {
        guard !hasFailed else { return }
        bytes.withUnsafeBytes { bytes in
            guard !isDeliveryPaused else {
                input.append(bytes, pool: connection.reactor.bufferPool)
                return
            }
            connection.withBatchedWrites {
                var offset = input.isEmpty ? 0 : completeBufferedFrame(from: bytes, pool: connection.reactor.bufferPool)
                if offset < bytes.count, input.isEmpty, canDeliver {
                    offset += deliver(from: UnsafeRawBufferPointer(rebasing: bytes[offset...]))
                }
                if offset < bytes.count, !hasFailed, connection.phase == .open {
                    input.append(UnsafeRawBufferPointer(rebasing: bytes[offset...]), pool: connection.reactor.bufferPool)
                }
            }
        }
    }

    public func writabilityChanged(_ connection: Connection) {
        handler.writabilityChanged(self)
    }

    public func inputClosed(_ connection: Connection) {
        handler.inputClosed(self)
    }

    public func connectFailed(_ error: ReactorError) {
        handler.connectFailed(error, on: self)
    }

    public func closed(_ connection: Connection, reason: CloseReason) {
        input.release(pool: connection.reactor.bufferPool)
        handler.closed(self, reason: reason)
    }

    // MARK: - Delivery

    private var canDeliver: Bool {
        !isDeliveryPaused && !hasFailed && connection?.phase == .open
    }

    /// Finishes the frame waiting in `input` with bytes from a new read, copying as few
    /// as it can: exactly what the framer says is missing when it knows (length prefix,
    /// fixed length), otherwise doubling chunks (a delimiter search). Once `input` is
    /// empty the rest of the read can be delivered in place. Returns the bytes of
    /// `bytes` it took.
    private func completeBufferedFrame(from bytes: UnsafeRawBufferPointer, pool: BufferPool) -> Int {
        var offset = 0
        var chunk = 256
        while offset < bytes.count, !input.isEmpty, canDeliver {
            let take = Swift.min(bytes.count - offset, Swift.max(missingBytes, chunk))
            input.append(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + take)]), pool: pool)
            offset += take
            chunk = Swift.min(chunk * 2, 64 * 1024)
            if !deliverInput(pool: pool) { return bytes.count }
        }
        return offset
    }

    private func deliverBuffered() {
        guard !isDelivering, let connection else { return }
        connection.withBatchedWrites { _ = deliverInput(pool: connection.reactor.bufferPool) }
    }

    /// Delivers what `input` holds and drops what was delivered; after a framing failure
    /// or a close, drops it all. Returns false in that case.
    private func deliverInput(pool: BufferPool) -> Bool {
        let used = deliver(from: input.bytes)
        guard !hasFailed, connection?.phase == .open else {
            input.release(pool: pool)
            return false
        }
        input.consume(used, pool: pool)
        return true
    }

    /// Delivers whole frames from the front of `bytes` until the bytes run out, delivery
    /// pauses, the connection closes, or framing fails. Returns the bytes consumed.
    private func deliver(from bytes: UnsafeRawBufferPointer) -> Int {
        guard let connection else { return 0 }
        delivering = Unmanaged.passUnretained(connection)
        defer { delivering = nil }
        var offset = 0
        while true {
            let engine = self.engine  // held for the call, even if the handler replaces it
            offset += engine.deliverFrames(
                from: UnsafeRawBufferPointer(rebasing: bytes[offset...]), to: self, connection: connection)
            // The handler switched framers mid-read: the rest goes to the new one.
            guard engine !== self.engine, offset < bytes.count, canDeliver else {
                if offset > 0 { connection.inputMadeProgress() }
                return offset
            }
        }
    }

    /// The per-frame loop, compiled for each framer type by its ``SpecializedFramer``
    /// conformance. Stops when the bytes run out, delivery pauses, the connection closes,
    /// framing fails (consuming everything), or the handler switches to another framer.
    func deliverFrames<F: SpecializedFramer>(
        from bytes: UnsafeRawBufferPointer, framer: inout F, engine: FramerEngine, connection: Connection
    ) -> Int {
        var offset = 0
        var frames = 0
        // One call to the reactor's count per read, not one per frame.
        defer { connection.countFramesReceived(frames) }
        while offset < bytes.count, !isDeliveryPaused, !hasFailed, connection.phase == .open, self.engine === engine {
            let rest = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            let found: FrameSearch
            do {
                found = try framer.nextFrame(in: rest)
            } catch {
                fail(error)
                return bytes.count
            }
            guard case .frame(let payload, let frameLength) = found else {
                // Everything buffered belongs to one unfinished frame. Built-in framers
                // refuse oversized frames themselves; this bounds custom ones too.
                if rest.byteCount - 2 * FramerLimits.maxHeaderLength > framer.maxFrameLength {  // no overflow near Int.max
                    fail(.frameTooLong(length: nil, limit: framer.maxFrameLength))
                    return bytes.count
                }
                if case .needMore(let atLeast) = found { missingBytes = atLeast }
                break
            }
            precondition(
                frameLength > 0 && frameLength <= rest.byteCount && payload.lowerBound >= 0 && payload.upperBound <= frameLength,
                "\(F.self).nextFrame returned frame(payload: \(payload), frameLength: \(frameLength)) for \(rest.byteCount) bytes")
            let frame = rest.extracting(payload)
            // `offset < bytes.count`, so `bytes` has a base; the framer's range was checked above.
            // A constant per framer type: the others pay nothing for it.
            if F.skipsChecksForDecoded {
                decodedPayload = UnsafeRawBufferPointer(
                    start: bytes.baseAddress.unsafelyUnwrapped + (offset &+ payload.lowerBound), count: payload.count)
            }
            offset += frameLength
            frames &+= 1
            handler.received(frame: frame, on: self)
            if F.skipsChecksForDecoded { decodedPayload = FramedConnection.noPayload }
        }
        return offset
    }

    /// Stops delivery and reading for good, then tells the handler. Its default aborts
    /// the connection; one that keeps it open (to send an error reply, say) no longer
    /// receives anything from it.
    private func fail(_ error: FramingError) {
        hasFailed = true
        connection?.noteFramingFailure()
        connection?.pauseReading()
        handler.framingFailed(error, on: self)
    }
}
