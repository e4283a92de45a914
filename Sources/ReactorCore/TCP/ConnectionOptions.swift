/// Per-connection limits and socket settings. Every limit has a default; none is unbounded.
public struct ConnectionOptions: Sendable, Equatable {
    /// Queued output above this many bytes makes the connection not writable (default 64 KiB).
    public var writeBufferHighWatermark: Int = 64 * 1024
    /// Queued output at or below this many bytes makes it writable again (default 32 KiB).
    public var writeBufferLowWatermark: Int = 32 * 1024
    /// Queued output beyond this aborts the connection with
    /// ``CloseReason/writeBufferLimitExceeded`` (default 16 MiB): a handler that ignores
    /// writability cannot grow memory without bound.
    public var writeBufferLimit: Int = 16 * 1024 * 1024
    /// TCP_NODELAY: send small writes at once instead of waiting to coalesce (default on).
    public var noDelay: Bool = true
    /// Deliver a peer's FIN as ``ConnectionHandler/inputClosed(_:)`` and keep the
    /// connection open for writing (default off: a FIN closes the connection after flushing).
    public var allowRemoteHalfClosure: Bool = false
    /// Close a connection that has moved no bytes in either direction for this long
    /// (default nil: no idle timeout). A handler that called
    /// ``Connection/countIdleInputByProgress()`` decides what counts as input, whole
    /// messages say, so a peer trickling a partial message (slowloris) is closed too. One
    /// lazily re-armed timer per connection, not one per read.
    public var idleTimeout: Duration? = nil
    /// How long a graceful close may take to flush queued output before the connection
    /// is aborted with ``CloseReason/timedOut`` (default 30 s).
    public var closeTimeout: Duration = .seconds(30)
    /// After a graceful close has flushed and sent FIN, how long to wait for the peer's
    /// FIN before closing the socket anyway (default 2 s). Closing with the peer's data
    /// unread makes the kernel send RST, which can destroy replies the peer has not read.
    public var lingerTimeout: Duration = .seconds(2)

    /// The defaults.
    public init() {}

    /// Checks that the watermarks and limits are consistent.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/invalidOption`` naming the
    ///   first refused option and its value.
    public func validate() throws(ReactorError) {
        guard writeBufferLowWatermark >= 0, writeBufferLowWatermark < writeBufferHighWatermark else {
            throw .invalidOption(
                "writeBufferLowWatermark", value: writeBufferLowWatermark,
                hint: "it must be at least 0 and below writeBufferHighWatermark (\(writeBufferHighWatermark))")
        }
        guard writeBufferLimit >= writeBufferHighWatermark else {
            throw .invalidOption(
                "writeBufferLimit", value: writeBufferLimit,
                hint: "it must be at least writeBufferHighWatermark (\(writeBufferHighWatermark))")
        }
        guard closeTimeout > .zero else {
            throw .invalidOption("closeTimeout", value: closeTimeout, hint: "it must be positive")
        }
        guard lingerTimeout >= .zero else {
            throw .invalidOption("lingerTimeout", value: lingerTimeout, hint: "it must not be negative (zero closes at once)")
        }
        if let idleTimeout, idleTimeout <= .zero {
            throw .invalidOption("idleTimeout", value: idleTimeout, hint: "it must be positive, or nil for no idle timeout")
        }
    }
}

/// Options shared by every connection from one listener or connect call, held once by
/// reference so a connection pays one pointer for them.
final class ConnectionConfig {
    let options: ConnectionOptions
    let idleTimeoutNanoseconds: UInt64?

    init(_ options: ConnectionOptions) {
        self.options = options
        self.idleTimeoutNanoseconds = options.idleTimeout.map(\.nanoseconds)
    }
}
