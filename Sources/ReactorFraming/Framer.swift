import ReactorCore

/// Turns a byte stream into frames and frames back into bytes.
///
/// The ``FramedConnection`` adapter calls ``nextFrame(in:)`` with the bytes buffered so
/// far, starting at the first byte of the next frame; it calls again with the same bytes
/// (and more appended) until the framer finds a frame. A framer may remember how far it
/// has looked, so long frames arriving in small reads are not rescanned (Twisted's
/// quadratic trap); it must forget that state when it returns a frame.
///
/// Every framer has a ``maxFrameLength`` and must refuse, with
/// ``FramingError/frameTooLong(length:limit:)``, as soon as it knows a frame exceeds it,
/// so a peer can never make the adapter buffer more than about one maximum frame.
///
/// To write your own, implement three members; see docs/framing.md for a framer with a
/// 2-byte type and a 4-byte length header.
public protocol Framer {
    /// The largest payload this framer accepts or sends, in bytes.
    var maxFrameLength: Int { get }

    /// Looks for one whole frame at the start of `buffer`.
    ///
    /// - Returns: ``FrameSearch/frame(payload:frameLength:)`` with the payload's byte range
    ///   and the whole frame's length (header, payload, trailer), or
    ///   ``FrameSearch/needMore(atLeast:)``.
    /// - Throws: ``FramingError`` when the bytes cannot start a valid frame, or the frame
    ///   would exceed ``maxFrameLength``.
    mutating func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch

    /// Writes the bytes that go before `payload` into `header` (``FramerLimits/maxHeaderLength``
    /// bytes of room) and returns how many it wrote.
    ///
    /// - Throws: ``FramingError`` when the payload cannot be framed (too long, wrong fixed
    ///   length, contains the delimiter, ...).
    func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int

    /// The bytes that go after every payload (a delimiter, netstring's comma); empty for most.
    var trailer: [UInt8] { get }
}

extension Framer {
    public var trailer: [UInt8] { [] }

    /// One frame as this framer writes it (header, payload, trailer) in one array, for
    /// tests and tools; a connection sends the three parts without joining them.
    package func encodedFrame(_ payload: [UInt8]) throws(FramingError) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: FramerLimits.maxHeaderLength)
        let span = payload.span.bytes
        let encoded = header.withUnsafeMutableBytes { room in
            Result { () throws(FramingError) in try encodeHeader(for: span, into: room) }
        }
        return Array(header[..<(try encoded.get())]) + payload + trailer
    }
}

/// Limits shared by every framer.
public enum FramerLimits {
    /// The default ``Framer/maxFrameLength``: 64 KiB.
    public static let defaultMaxFrameLength = 64 * 1024
    /// Room a framer has for one header in ``Framer/encodeHeader(for:into:)``.
    public static let maxHeaderLength = 32
}

/// What ``Framer/nextFrame(in:)`` found.
public enum FrameSearch: Sendable, Equatable {
    /// A whole frame: its payload occupies `payload`, and the frame the first
    /// `frameLength` bytes of the buffer.
    case frame(payload: Range<Int>, frameLength: Int)
    /// No whole frame yet: at least `atLeast` more bytes must arrive (1 when unknown).
    case needMore(atLeast: Int)
}

/// Bad framing, on the way in or out. Incoming errors close the offending connection
/// (see ``FrameHandler/framingFailed(_:on:)``); outgoing ones are returned by
/// ``FramedConnection/send(frame:)-(RawSpan)`` as ``FramedConnection/SendResult/refused(_:)``.
public enum FramingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A frame is longer than the limit. `length` is nil when not known yet (no
    /// delimiter within the limit).
    case frameTooLong(length: Int?, limit: Int)
    /// A header that cannot be parsed (a netstring with a leading zero, a sign, a
    /// non-digit, too many digits, ...).
    case malformedHeader(String)
    /// The bytes after a payload are not the required trailer (a netstring without its comma).
    case malformedTrailer(String)
    /// An outgoing payload that this framer cannot frame (contains the delimiter, or is
    /// not the fixed length).
    case unframeablePayload(String)

    public var description: String {
        switch self {
        case .frameTooLong(let length?, let limit): "frame too long: \(length) bytes, limit \(limit)"
        case .frameTooLong(nil, let limit): "frame too long: no delimiter within the limit of \(limit) bytes"
        case .malformedHeader(let detail): "malformed header: \(detail)"
        case .malformedTrailer(let detail): "malformed trailer: \(detail)"
        case .unframeablePayload(let detail): "cannot frame payload: \(detail)"
        }
    }
}
