import ReactorCore
import ReactorFraming

/// Echo of whole frames: each frame received is sent back re-encoded with the same
/// framer, so the reply is byte-for-byte the request. Replies to the frames of one read
/// leave in one write. Backpressure as in ``EchoHandler``: frame delivery pauses while
/// the peer is not reading its replies.
public final class FramedEchoHandler: FrameHandler {
    /// A new handler; one per connection.
    public init() {}

    public func received(frame: RawSpan, on connection: FramedConnection) {
        // Re-encoding a frame that was just decoded with the same framer cannot fail.
        connection.send(frame: frame)
    }

    public func writabilityChanged(_ connection: FramedConnection) {
        if connection.isWritable {
            connection.resumeDelivery()
        } else {
            connection.pauseDelivery()
        }
    }
}
