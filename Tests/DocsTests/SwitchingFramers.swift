import ReactorCore
import ReactorFraming

/// A request is a line `PUT <length>` followed by a body of exactly that many bytes,
/// then the next request line. The handler switches to a fixed-length framer for the
/// body and back to lines after it; bytes that arrived with the header line are
/// carried over to whichever framer comes next.
final class PutHandler: FrameHandler {
    private(set) var bodies: [[UInt8]] = []
    private var readingBody = false

    func received(frame: RawSpan, on connection: FramedConnection) {
        if readingBody {
            bodies.append(frame.copyBytes())
            readingBody = false
            connection.framer = DelimiterFramer.line()
            connection.sendLine("OK \(frame.byteCount)")
            return
        }
        let words = frame.decodeUTF8().split(separator: " ")
        guard words.count == 2, words[0] == "PUT", let length = Int(words[1]), length > 0, length <= 1 << 20 else {
            connection.close()
            return
        }
        readingBody = true
        connection.framer = FixedLengthFramer(length: length)
    }
}

extension FramedConnection {
    /// Sends a reply line; a reply that cannot be framed is a bug here, so close.
    func sendLine(_ text: String) {
        if case .refused(let error) = send(frame: text) {
            logger.error("cannot send \(text): \(error)")
            close()
        }
    }
}
