import ReactorCore

/// What a framed connection tells the code that owns it: whole frames instead of bytes.
/// Hooks run on the reactor thread. Only ``received(frame:on:)`` is required.
///
/// ```swift
/// final class Shout: FrameHandler {
///     func received(frame: RawSpan, on connection: FramedConnection) {
///         connection.send(frame: frame.decodeUTF8().uppercased())
///     }
/// }
/// reactor.listen(host: "127.0.0.1", port: 0) { _ in
///     FramedConnection(framer: DelimiterFramer.line(), handler: Shout())
/// }
/// ```
public protocol FrameHandler: AnyObject {
    /// The connection is established.
    func opened(_ connection: FramedConnection)

    /// A whole frame arrived. `frame` is the payload (no header or trailer), a view into
    /// a buffer valid only during this call: copy what must outlive it.
    func received(frame: RawSpan, on connection: FramedConnection)

    /// The peer sent bytes that are not a valid frame, or a frame over the limit.
    /// No further frames from it are delivered. The default logs one line with the
    /// peer and the reason and aborts the connection; other connections are untouched.
    func framingFailed(_ error: FramingError, on connection: FramedConnection)

    /// ``FramedConnection/isWritable`` changed; see `ConnectionHandler/writabilityChanged(_:)`.
    func writabilityChanged(_ connection: FramedConnection)

    /// The peer shut down its sending side (FIN) while this side may still send. Only
    /// called when `ConnectionOptions.allowRemoteHalfClosure` is on; otherwise a FIN
    /// closes the connection (after flushing). Bytes of an unfinished frame are dropped.
    /// The default closes the connection gracefully.
    func inputClosed(_ connection: FramedConnection)

    /// An outgoing connect (`Reactor.connect(to:from:timeout:options:handler:)` with this
    /// framed connection as the handler) failed: refused, unreachable or timed out.
    /// ``opened(_:)`` and ``closed(_:reason:)`` will not be called. The default does
    /// nothing, as `ConnectionHandler.connectFailed(_:)`'s does.
    func connectFailed(_ error: ReactorError, on connection: FramedConnection)

    /// The connection closed; see `ConnectionHandler/closed(_:reason:)`.
    func closed(_ connection: FramedConnection, reason: CloseReason)
}

extension FrameHandler {
    public func opened(_ connection: FramedConnection) {}
    public func writabilityChanged(_ connection: FramedConnection) {}
    public func closed(_ connection: FramedConnection, reason: CloseReason) {}
    public func inputClosed(_ connection: FramedConnection) { connection.close() }

    public func connectFailed(_ error: ReactorError, on connection: FramedConnection) {}

    public func framingFailed(_ error: FramingError, on connection: FramedConnection) {
        connection.logger.warning("framing error: \(error); closing the connection", metadata: connection.logMetadata)
        connection.abort()
    }
}
