import ReactorCore

/// RFC 862 echo over TCP: every byte received is sent back, unchanged.
///
/// It writes straight from the reactor's read buffer (no copy unless the kernel leaves
/// some behind) and applies backpressure: when the peer stops reading its replies and
/// the output queue passes the high watermark, the handler stops reading from that peer
/// until the queue drains to the low watermark. Memory per connection stays bounded by
/// the high watermark plus one read.
public final class EchoHandler: ConnectionHandler {
    /// A new handler; one per connection.
    public init() {}

    public func received(_ bytes: RawSpan, on connection: Connection) {
        connection.write(bytes)
    }

    public func writabilityChanged(_ connection: Connection) {
        if connection.isWritable {
            connection.resumeReading()
        } else {
            connection.pauseReading()
        }
    }
}
