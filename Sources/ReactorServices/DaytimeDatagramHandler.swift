import ReactorCore

/// RFC 867 daytime over UDP: each datagram (its content ignored) is answered with one
/// datagram holding the line ``DaytimeHandler`` sends, if the ``ReplyGuard`` allows.
public final class DaytimeDatagramHandler: DatagramHandler {
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
        DaytimeHandler.withLine(secondsSince1970: clock.secondsSince1970()) { socket.send($0, to: sender) }
    }
}
