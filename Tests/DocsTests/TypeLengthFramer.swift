import ReactorCore
import ReactorFraming

/// Frames laid out as a 2-byte message type, a 4-byte body length (both big-endian),
/// then the body. The handler receives the whole frame, header included, so it can
/// read the type; it sends whole frames too, and the framer checks their length field.
struct TypeLengthFramer: Framer {
    static let headerLength = 6
    let maxFrameLength: Int

    init(maxBodyLength: Int = 64 * 1024) {
        maxFrameLength = TypeLengthFramer.headerLength + maxBodyLength
    }

    func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        let header = TypeLengthFramer.headerLength
        guard buffer.byteCount >= header else { return .needMore(atLeast: header - buffer.byteCount) }
        let bodyLength = Int(buffer.loadBigEndian(UInt32.self, at: 2))
        // Refuse an oversized frame as soon as its header is in, before its body arrives.
        guard header + bodyLength <= maxFrameLength else {
            throw .frameTooLong(length: header + bodyLength, limit: maxFrameLength)
        }
        let frameLength = header + bodyLength
        guard buffer.byteCount >= frameLength else { return .needMore(atLeast: frameLength - buffer.byteCount) }
        return .frame(payload: 0..<frameLength, frameLength: frameLength)
    }

    func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int {
        guard payload.byteCount >= TypeLengthFramer.headerLength,
              Int(payload.loadBigEndian(UInt32.self, at: 2)) == payload.byteCount - TypeLengthFramer.headerLength
        else { throw .unframeablePayload("not a type-length frame with a matching length field") }
        guard payload.byteCount <= maxFrameLength else {
            throw .frameTooLong(length: payload.byteCount, limit: maxFrameLength)
        }
        return 0  // the payload is the whole frame
    }
}

/// Answers message type 1 (ping) with type 2 (pong), echoing the body.
final class PingHandler: FrameHandler {
    func received(frame: RawSpan, on connection: FramedConnection) {
        guard frame.loadBigEndian(UInt16.self, at: 0) == 1 else { return }
        var reply = frame.copyBytes()
        reply[1] = 2
        connection.send(frame: reply)
    }
}
