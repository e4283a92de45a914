/// Settings for a ``UDPSocket``. Every limit has a default.
public struct UDPOptions: Sendable, Equatable {
    /// The largest datagram received whole, in bytes (default 65,536: any UDP datagram).
    /// A longer one is reported through ``DatagramHandler/truncated(length:from:on:)``
    /// and dropped.
    public var maxDatagramSize: Int = 65_536
    /// Datagrams taken per `recvmmsg` call (default 32, at most 64).
    public var receiveBatch: Int = 32
    /// Batches taken per readiness event before the loop serves other sockets (default 4),
    /// so a flood on one UDP socket cannot starve TCP connections.
    public var maxBatchesPerWakeup: Int = 4
    /// Send runs of equal-sized batched replies to one destination as one UDP_SEGMENT (GSO)
    /// message, which the kernel splits into the same datagrams at a fraction of the cost
    /// (default on; only datagrams up to 1232 bytes, so no segment exceeds a path's MTU).
    /// Turned off by itself, for the socket, if the kernel refuses it.
    public var segmentationOffload: Bool = true
    /// Let the kernel hand over a run of datagrams a sender sent as one GSO message in one
    /// receive (UDP_GRO); they are split here into the same datagrams (default on). Only
    /// used with ``maxDatagramSize`` 65,536, since such a run can fill 64 KiB.
    public var receiveOffload: Bool = true
    /// SO_REUSEADDR (default off). For UDP this does not skip a TIME_WAIT as it does for
    /// TCP: it lets other sockets bind the same address and port and take its datagrams,
    /// and a bind to port 0 may then be given a port another such socket holds.
    public var reuseAddress: Bool = false
    /// SO_REUSEPORT: let several sockets bind the same port (default off).
    public var reusePort: Bool = false
    /// IPV6_V6ONLY for IPv6 sockets (default on), so `::` and `0.0.0.0` can be bound side by side.
    public var ipv6Only: Bool = true
    /// SO_RCVBUF in bytes; `nil` keeps the kernel's default (net.core.rmem_default).
    public var receiveBufferSize: Int?
    /// SO_SNDBUF in bytes; `nil` keeps the kernel's default (net.core.wmem_default).
    public var sendBufferSize: Int?

    /// The defaults.
    public init() {}

    /// Checks the limits.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/invalidOption`` naming the
    ///   first refused option and its value.
    public func validate() throws(ReactorError) {
        guard maxDatagramSize > 0, maxDatagramSize <= 65_536 else {
            throw .invalidOption("maxDatagramSize", value: maxDatagramSize, hint: "it must be from 1 to 65536")
        }
        guard (1...64).contains(receiveBatch) else {
            throw .invalidOption("receiveBatch", value: receiveBatch, hint: "it must be from 1 to 64")
        }
        guard maxBatchesPerWakeup > 0 else {
            throw .invalidOption("maxBatchesPerWakeup", value: maxBatchesPerWakeup, hint: "it must be positive")
        }
        if let size = receiveBufferSize, size <= 0 {
            throw .invalidOption("receiveBufferSize", value: size, hint: "it must be positive, or nil for the kernel's default")
        }
        if let size = sendBufferSize, size <= 0 {
            throw .invalidOption("sendBufferSize", value: size, hint: "it must be positive, or nil for the kernel's default")
        }
    }
}

/// What a ``UDPSocket`` has done since it opened. Every failure the socket survives is
/// counted here as well as reported to ``DatagramHandler/errorCaught(_:on:)``.
public struct UDPCounters: Sendable, Equatable {
    /// Whole datagrams received and passed to the handler.
    public var received = 0
    /// Bytes in those datagrams.
    public var receivedBytes = 0
    /// Datagrams longer than ``UDPOptions/maxDatagramSize``, dropped.
    public var truncated = 0
    /// Receives that carried a run of datagrams the kernel coalesced (UDP_GRO, see
    /// ``UDPOptions/receiveOffload``); their datagrams count in ``received`` one by one.
    public var coalesced = 0
    /// Failed receives (an ICMP error queued on the socket, for example).
    public var receiveErrors = 0
    /// Datagrams the kernel accepted for sending.
    public var sent = 0
    /// Bytes in those datagrams.
    public var sentBytes = 0
    /// Datagrams dropped because the send buffer was full (EAGAIN, ENOBUFS).
    public var sendDropped = 0
    /// Datagrams refused as too large (EMSGSIZE).
    public var sendTooLarge = 0
    /// Sends refused because the connected peer's port is closed (ECONNREFUSED).
    public var sendRefused = 0
    /// Sends that failed for any other reason.
    public var sendFailed = 0

    /// All zero.
    public init() {}
}
