/// Hands out the quotes of a ``QuoteList`` in turn, one per request, shared by every
/// connection and datagram socket of a quote-of-the-day server. Use it on the reactor
/// thread only.
///
/// Taking turns rather than drawing at random keeps each request free of a system call
/// (the system random source is one) and makes the order testable.
public final class QuoteCursor {
    /// The quotes handed out.
    public let quotes: QuoteList
    private var next = 0

    /// A cursor at the first of `quotes`.
    public init(_ quotes: QuoteList = .builtIn) {
        self.quotes = quotes
    }

    /// The next quote's reply bytes (CRLF line ends, under 512 bytes).
    public func nextReply() -> [UInt8] {
        let reply = quotes.replies[next]
        next = next + 1 == quotes.replies.count ? 0 : next + 1
        return reply
    }
}
