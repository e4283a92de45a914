import ReactorCore

/// RFC 862 echo over UDP: each datagram goes back, unchanged, to its sender, if the
/// ``ReplyGuard`` allows. The reply is the received datagram itself, sent with the batch's
/// other replies in one `sendmmsg`: nothing is copied.
public final class EchoDatagramHandler: DatagramHandler {
    /// Decides which senders are answered.
    public let replyGuard: ReplyGuard

    /// A handler for one socket, answering whom `replyGuard` allows (by default a guard of
    /// its own with the default limits).
    public init(replyGuard: ReplyGuard = ReplyGuard()) {
        self.replyGuard = replyGuard
    }

    public func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        guard replyGuard.permitsReply(to: sender) else { return }
        socket.send(datagram, to: sender)
    }
}
