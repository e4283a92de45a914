/// No framing: each frame is whatever bytes have arrived (up to ``maxFrameLength``).
/// Useful after switching framers, for a body of known or unbounded length.
public struct RawFramer: Framer, Sendable {
    public let maxFrameLength: Int

    /// Delivers bytes as they come, in pieces of at most `maxFrameLength`.
    public init(maxFrameLength: Int = FramerLimits.defaultMaxFrameLength) {
        precondition(maxFrameLength > 0, "maxFrameLength must be positive")
        self.maxFrameLength = maxFrameLength
    }

    public func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        guard buffer.byteCount > 0 else { return .needMore(atLeast: 1) }
        let length = Swift.min(buffer.byteCount, maxFrameLength)
        return .frame(payload: 0..<length, frameLength: length)
    }

    public func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int {
        0
    }
}
