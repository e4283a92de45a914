/// Frames of exactly ``length`` bytes, with no header or trailer.
public struct FixedLengthFramer: Framer, Sendable {
    /// The length of every frame.
    public let length: Int

    /// A framer for records of `length` bytes (at least 1).
    public init(length: Int) {
        precondition(length > 0, "a fixed frame length must be positive")
        self.length = length
    }

    public var maxFrameLength: Int { length }

    public func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        buffer.byteCount >= length
            ? .frame(payload: 0..<length, frameLength: length)
            : .needMore(atLeast: length - buffer.byteCount)
    }

    public func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int {
        guard payload.byteCount == length else {
            throw .unframeablePayload("\(payload.byteCount) bytes, the fixed frame length is \(length)")
        }
        return 0
    }
}
