import ReactorCore

/// RFC 863 discard over TCP: reads everything and drops it, until the peer closes.
///
/// Reading as fast as the peer sends is the point of the service, so there is nothing to
/// pause; the reactor's shared read buffer is reused for every read, so a connection costs
/// no memory for its input.
public final class DiscardHandler: ConnectionHandler {
    /// A new handler; one per connection.
    public init() {}

    public func received(_ bytes: RawSpan, on connection: Connection) {}
}
