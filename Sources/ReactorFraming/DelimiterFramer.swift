import Glibc

/// Frames that end with a delimiter: `\n` (``line(maxFrameLength:)``), `\r\n`
/// (``crlf(maxFrameLength:)``), or any byte sequence. The payload excludes the delimiter;
/// an empty payload is a valid frame.
///
/// A frame longer than ``maxFrameLength`` is refused as soon as more than
/// `maxFrameLength + delimiter.count - 1` bytes have arrived without a delimiter, so a
/// frame of exactly the maximum whose delimiter is split across reads is still accepted.
/// Each byte is scanned once however many reads a frame takes (the scan resumes where it
/// stopped), with `memchr` for the delimiter's first byte.
public struct DelimiterFramer: Framer, Sendable {
    /// The delimiter that ends each frame.
    public let delimiter: [UInt8]
    public let maxFrameLength: Int
    // Three words: an `any Framer` holds it inline, without a heap box.
    private var scanned = 0

    /// `\n`-terminated lines.
    public static func line(maxFrameLength: Int = FramerLimits.defaultMaxFrameLength) -> DelimiterFramer {
        DelimiterFramer(delimiter: [0x0A], maxFrameLength: maxFrameLength)
    }

    /// `\r\n`-terminated lines (Twisted's LineReceiver, SMTP, Redis inline commands).
    public static func crlf(maxFrameLength: Int = FramerLimits.defaultMaxFrameLength) -> DelimiterFramer {
        DelimiterFramer(delimiter: [0x0D, 0x0A], maxFrameLength: maxFrameLength)
    }

    /// A framer for any non-empty delimiter of at most ``FramerLimits/maxHeaderLength`` bytes.
    public init(delimiter: [UInt8], maxFrameLength: Int = FramerLimits.defaultMaxFrameLength) {
        precondition(!delimiter.isEmpty && delimiter.count <= FramerLimits.maxHeaderLength, "a delimiter has 1 to \(FramerLimits.maxHeaderLength) bytes")
        precondition(maxFrameLength >= 0, "maxFrameLength cannot be negative")
        self.delimiter = delimiter
        self.maxFrameLength = maxFrameLength
    }

    public var trailer: [UInt8] { delimiter }

    public mutating func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        let count = buffer.byteCount
        let length = delimiter.count
        // A delimiter that straddles the previous end may begin up to length-1 bytes back.
        let from = scanned <= count ? Swift.max(0, scanned - (length - 1)) : 0
        let found = length == 1
            ? buffer.withUnsafeBytes { firstByte(in: $0, from: from) }
            : buffer.withUnsafeBytes { firstDelimiter(in: $0, from: from) }
        if let at = found {
            scanned = 0
            guard at <= maxFrameLength else { throw .frameTooLong(length: at, limit: maxFrameLength) }
            return .frame(payload: 0..<at, frameLength: at + length)
        }
        if count - (length - 1) > maxFrameLength {
            scanned = 0
            throw .frameTooLong(length: nil, limit: maxFrameLength)
        }
        scanned = count
        return .needMore(atLeast: 1)
    }

    public func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int {
        guard payload.byteCount <= maxFrameLength else {
            throw .frameTooLong(length: payload.byteCount, limit: maxFrameLength)
        }
        let clash = delimiter.count == 1
            ? payload.withUnsafeBytes { firstByte(in: $0, from: 0) != nil }
            : payload.withUnsafeBytes { firstDelimiter(in: $0, from: 0) != nil || endsWithDelimiterStart($0) }
        if clash {
            let contains = payload.withUnsafeBytes { firstDelimiter(in: $0, from: 0) != nil }
            throw .unframeablePayload(
                contains ? "the payload contains the delimiter"
                    : "the payload ends with bytes that form the delimiter with its first bytes")
        }
        return 0
    }

    /// True when a delimiter would begin in the last bytes of `payload` and end inside the
    /// trailer, so the peer would cut the frame short: "x--END" + "--END--" holds
    /// "--END--" at offset 1. Only delimiters whose end repeats their start allow it.
    private func endsWithDelimiterStart(_ payload: UnsafeRawBufferPointer) -> Bool {
        let length = delimiter.count
        for inPayload in stride(from: 1, to: Swift.min(length, payload.count + 1), by: 1)
        where delimiter[inPayload...].elementsEqual(delimiter[..<(length - inPayload)]) {
            if payload[(payload.count - inPayload)...].elementsEqual(delimiter[..<inPayload]) { return true }
        }
        return false
    }

    /// The offset of the first occurrence of a one-byte delimiter at or after `from`.
    @inline(__always)
    private func firstByte(in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard start < bytes.count, let base = bytes.baseAddress,
              let hit = memchr(base + start, Int32(delimiter[0]), bytes.count - start)
        else { return nil }
        return base.distance(to: UnsafeRawPointer(hit))
    }

    /// The offset of the first whole delimiter at or after `from`: memchr finds candidates
    /// for its first byte, memcmp checks the rest.
    @inline(__always)
    private func firstDelimiter(in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        let length = delimiter.count
        let first = Int32(delimiter[0])
        var from = start
        while from + length <= bytes.count {
            guard let hit = memchr(base + from, first, bytes.count - from) else { return nil }
            let at = base.distance(to: UnsafeRawPointer(hit))
            if length == 1 { return at }
            guard at + length <= bytes.count else { return nil }
            if delimiter.withUnsafeBytes({ memcmp(base + at, $0.baseAddress!, length) == 0 }) { return at }
            from = at + 1
        }
        return nil
    }
}
