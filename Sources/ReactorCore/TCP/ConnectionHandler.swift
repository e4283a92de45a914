/// What a TCP connection tells the code that owns it. Every hook runs on the reactor
/// thread, never inside a call the handler itself made (except
/// ``writabilityChanged(_:)``, which fires as soon as a write crosses a watermark).
///
/// Only ``received(_:on:)`` is required:
///
/// ```swift
/// final class EchoHandler: ConnectionHandler {
///     func received(_ bytes: RawSpan, on connection: Connection) {
///         connection.write(bytes)
///     }
/// }
/// ```
public protocol ConnectionHandler: AnyObject {
    /// The connection is established (accepted, or an outgoing connect succeeded).
    func opened(_ connection: Connection)

    /// Bytes arrived. `bytes` is a view into the reactor's shared read buffer, valid only
    /// during this call; copy what must outlive it.
    func received(_ bytes: RawSpan, on connection: Connection)

    /// ``Connection/isWritable`` changed: false when queued output rose above the high
    /// watermark, true when it fell to the low watermark. Stop producing while false.
    /// Reading is already paused while false (unless
    /// ``ConnectionOptions/pauseReadingWhileNotWritable`` is off), so a handler that only
    /// answers what it reads needs nothing here; the default does nothing.
    func writabilityChanged(_ connection: Connection)

    /// The peer shut down its sending side (FIN) while this side may still write. Only
    /// called when ``ConnectionOptions/allowRemoteHalfClosure`` is on; otherwise a FIN
    /// closes the connection (after flushing) with ``CloseReason/endOfFile``.
    /// The default closes the connection gracefully.
    func inputClosed(_ connection: Connection)

    /// The connection is closed and its socket released. Called exactly once for every
    /// connection that was opened.
    func closed(_ connection: Connection, reason: CloseReason)

    /// An outgoing connect failed; ``opened(_:)`` and ``closed(_:reason:)`` will not be called.
    func connectFailed(_ error: ReactorError)
}

extension ConnectionHandler {
    public func opened(_ connection: Connection) {}
    public func writabilityChanged(_ connection: Connection) {}
    public func inputClosed(_ connection: Connection) { connection.close() }
    public func closed(_ connection: Connection, reason: CloseReason) {}
    public func connectFailed(_ error: ReactorError) {}
}

/// Why a connection closed.
public enum CloseReason: Sendable, Equatable, CustomStringConvertible {
    /// The peer closed its side cleanly (FIN) and everything owed to it was sent.
    case endOfFile
    /// The peer reset the connection (RST, ECONNRESET or EPIPE).
    case reset
    /// The idle timeout passed with no bytes in either direction, or a graceful close
    /// could not finish within ``ConnectionOptions/closeTimeout``.
    case timedOut
    /// This side called ``Connection/close()`` and the close completed.
    case closed
    /// This side called ``Connection/abort()``, or the reactor stopped, dropping unsent output.
    case aborted
    /// Queued output passed ``ConnectionOptions/writeBufferLimit``; the connection was aborted.
    case writeBufferLimitExceeded
    /// Any other socket error.
    case failed(ReactorError)

    public var description: String {
        switch self {
        case .endOfFile: "end of file"
        case .reset: "reset by peer"
        case .timedOut: "timed out"
        case .closed: "closed"
        case .aborted: "aborted"
        case .writeBufferLimitExceeded: "write buffer limit exceeded"
        case .failed(let error): "error: \(error)"
        }
    }
}
