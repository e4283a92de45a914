import ReactorCore

/// RFC 865 quote of the day over UDP: each datagram (its content ignored) is answered with
/// one datagram holding the next quote (under 512 bytes), if the ``ReplyGuard`` allows.
public final class QuoteDatagramHandler: DatagramHandler {
    /// Decides which senders are answered.
    public let replyGuard: ReplyGuard
    private let cursor: QuoteCursor

    /// A handler for one socket, taking quotes from `cursor` (which TCP connections may
    /// share) and answering whom `replyGuard` allows.
    public init(cursor: QuoteCursor, replyGuard: ReplyGuard = ReplyGuard()) {
        self.cursor = cursor
        self.replyGuard = replyGuard
    }

    public func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        guard replyGuard.permitsReply(to: sender) else { return }
        socket.send(cursor.nextReply(), to: sender)
    }
}
