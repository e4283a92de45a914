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
    /// Stop reading while the connection is not writable (default on): a peer that sends
    /// requests and never reads the replies then costs at most the high watermark plus the
    /// replies to one read, instead of queuing up to ``writeBufferLimit`` and being aborted.
    /// Reading resumes when queued output falls to the low watermark. Turn it off for a
    /// handler that must keep reading while its output waits (one that forwards input
    /// elsewhere, or reads a peer's acknowledgements to make progress); it then watches
    /// ``ConnectionHandler/writabilityChanged(_:)`` itself.
    public var pauseReadingWhileNotWritable: Bool = true
    /// TCP_NODELAY: send small writes at once instead of waiting to coalesce (default on).
    public var noDelay: Bool = true
    /// Deliver a peer's FIN as ``ConnectionHandler/inputClosed(_:)`` and keep the
    /// connection open for writing (default off: a FIN closes the connection after flushing).
    public var allowRemoteHalfClosure: Bool = false
    /// Close a connection that has moved no bytes in either direction for this long
    /// (default nil: no idle timeout). A handler that called
    /// ``Connection/countIdleInputByProgress()`` decides what counts as input, whole
    /// messages say, so a peer trickling a partial message (slowloris) is closed too.
    ///
    /// The connection is closed after the timeout and at most a 64th of it later (at least
    /// 2 ms, plus a few milliseconds of the coarse clock that stamps activity): the
    /// reactor's connections with the same timeout share one timing wheel swept by one
    /// timer, so a connection costs no timer of its own, and a read only stores a stamp.
    ///
    /// Off here and on (300 s) in `reactor serve` on purpose: the library cannot know how
    /// long a protocol's connections may rightly stay quiet (a chat client, a pub/sub
    /// subscriber, a pooled database connection can idle for hours), and closing them
    /// behind the application's back is a worse surprise than keeping them; the command
    /// serves the classic services to any peer, where a quiet connection is only a cost.
    /// A server open to untrusted peers should set one.
    public var idleTimeout: Duration? = nil
    /// How long a graceful close may take to flush queued output before the connection
    /// is aborted with ``CloseReason/timedOut`` (default 30 s).
    public var closeTimeout: Duration = .seconds(30)
    /// After a graceful close has flushed and sent FIN, how long to wait for the peer's
    /// FIN before closing the socket anyway (default 2 s). Closing with the peer's data
    /// unread makes the kernel send RST, which can destroy replies the peer has not read.
    public var lingerTimeout: Duration = .seconds(2)
    /// TCP keepalive probes (default nil: off, as the kernel has it). A peer that vanished
    /// without FIN or RST (powered off, partitioned away) leaves an idle connection open
    /// for ever unless something probes it; with keepalive on, the kernel probes after
    /// ``TCPKeepAlive/idle`` of silence and the connection closes with
    /// ``CloseReason/failed(_:)`` (ETIMEDOUT) when ``TCPKeepAlive/count`` probes go
    /// unanswered. Unlike ``idleTimeout`` it keeps a quiet but reachable peer connected.
    public var keepAlive: TCPKeepAlive? = nil

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
        if let keepAlive { try keepAlive.validate() }
    }
}

/// When the kernel probes a silent TCP connection and when it gives up (SO_KEEPALIVE with
/// TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT). A dead peer is detected after about
/// `idle + interval * count`.
public struct TCPKeepAlive: Sendable, Equatable {
    /// Silence before the first probe, in whole seconds from 1 to 32767 (Linux's range).
    public var idle: Duration
    /// Time between unanswered probes, in whole seconds from 1 to 32767.
    public var interval: Duration
    /// Unanswered probes before the connection is dropped, from 1 to 127.
    public var count: Int

    /// Probes after `idle` of silence, then every `interval`, dropping the connection after
    /// `count` unanswered ones.
    public init(idle: Duration, interval: Duration = .seconds(5), count: Int = 3) {
        self.idle = idle
        self.interval = interval
        self.count = count
    }

    /// `idle` and `interval` in whole seconds, as the kernel takes them (rounded up, so a
    /// fraction never turns into 0).
    var seconds: (idle: Int, interval: Int) {
        (Self.wholeSeconds(idle), Self.wholeSeconds(interval))
    }

    private static func wholeSeconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(clamping: seconds) + (attoseconds > 0 ? 1 : 0)
    }

    func validate() throws(ReactorError) {
        let seconds = seconds
        guard idle > .zero, (1...32767).contains(seconds.idle) else {
            throw .invalidOption("keepAlive.idle", value: idle, hint: "it must be from 1 to 32767 seconds")
        }
        guard interval > .zero, (1...32767).contains(seconds.interval) else {
            throw .invalidOption("keepAlive.interval", value: interval, hint: "it must be from 1 to 32767 seconds")
        }
        guard (1...127).contains(count) else {
            throw .invalidOption("keepAlive.count", value: count, hint: "it must be from 1 to 127")
        }
    }
}

/// Options shared by every connection from one listener or connect call, held once by
/// reference so a connection pays one pointer for them, and the listener they came from.
final class ConnectionConfig {
    let options: ConnectionOptions
    let idleTimeoutNanoseconds: UInt64?
    let pausesReadingWhileNotWritable: Bool
    /// The smaller of the high watermark and the limit: queued output at or below it needs
    /// neither check (the limit is the smaller only in options `validate` refuses, which a
    /// connection over memory in a test may have).
    let queueCheckThreshold: Int
    /// Told when one of these connections closes: the listener that accepted it, or a
    /// group's hand-off receiver; nil for a connect. Here rather than in each connection,
    /// since it is the same for all of them; weak, since the listener holds this config
    /// (a listener nobody holds any more, closed, counts nothing).
    weak var source: (any ConnectionSource)?

    init(_ options: ConnectionOptions) {
        self.options = options
        self.idleTimeoutNanoseconds = options.idleTimeout.map(\.nanoseconds)
        self.pausesReadingWhileNotWritable = options.pauseReadingWhileNotWritable
        self.queueCheckThreshold = min(options.writeBufferHighWatermark, options.writeBufferLimit)
    }
}
