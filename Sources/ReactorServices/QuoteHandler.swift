import ReactorCore

/// RFC 865 quote of the day over TCP: on connect, one quote (under 512 bytes, CRLF line
/// ends), then a graceful close. Anything the client sends is ignored.
public final class QuoteHandler: ConnectionHandler {
    private let cursor: QuoteCursor

    /// A new handler, one per connection, taking its quote from `cursor` (shared by the server).
    public init(cursor: QuoteCursor) {
        self.cursor = cursor
    }

    public func opened(_ connection: Connection) {
        connection.write(cursor.nextReply())
        connection.close()
    }

    public func received(_ bytes: RawSpan, on connection: Connection) {}
}
