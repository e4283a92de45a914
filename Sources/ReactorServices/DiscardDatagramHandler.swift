import ReactorCore

/// RFC 863 discard over UDP: every datagram is dropped. It never answers, so it needs no
/// ``ReplyGuard``; `UDPSocket/counters` still counts what arrived.
public final class DiscardDatagramHandler: DatagramHandler {
    /// A handler for one socket.
    public init() {}

    public func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {}
}
