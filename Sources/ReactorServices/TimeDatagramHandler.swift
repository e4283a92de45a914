import ReactorCore

/// RFC 868 time over UDP: each datagram (its content ignored) is answered with one
/// datagram of 4 bytes, the value ``TimeHandler`` sends, if the ``ReplyGuard`` allows.
public final class TimeDatagramHandler: DatagramHandler {
    /// Decides which senders are answered.
    public let replyGuard: ReplyGuard
    private let clock: ServiceClock

    /// A handler for one socket, reading the date from `clock` and answering whom
    /// `replyGuard` allows.
    public init(clock: ServiceClock = .system, replyGuard: ReplyGuard = ReplyGuard()) {
        self.clock = clock
        self.replyGuard = replyGuard
    }

    public func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        guard replyGuard.permitsReply(to: sender) else { return }
        TimeHandler.withReply(secondsSince1970: clock.secondsSince1970()) { socket.send($0, to: sender) }
    }
}
