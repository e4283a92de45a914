import ReactorCore

/// RFC 864 character generator over UDP: each datagram (its content ignored) is answered
/// with one datagram of 6 lines of the chargen pattern, 444 bytes, under the 512 bytes the
/// service is limited to so the reply cannot be amplified further. Each reply starts one
/// line later in the 95-line cycle than the one before, as successive TCP lines do.
/// Replies go only where the ``ReplyGuard`` allows.
public final class ChargenDatagramHandler: DatagramHandler {
    /// Lines per reply: as many whole lines as fit in 512 bytes.
    public static let linesPerReply = 512 / ChargenPattern.lineLength

    /// Decides which senders are answered.
    public let replyGuard: ReplyGuard
    private var line = 0

    /// A handler for one socket, answering whom `replyGuard` allows.
    public init(replyGuard: ReplyGuard = ReplyGuard()) {
        self.replyGuard = replyGuard
    }

    public func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        guard replyGuard.permitsReply(to: sender) else { return }
        ChargenPattern.withBytes(from: line * ChargenPattern.lineLength, count: Self.linesPerReply * ChargenPattern.lineLength) {
            socket.send($0, to: sender)
        }
        line = line + 1 == ChargenPattern.printableCount ? 0 : line + 1
    }
}
