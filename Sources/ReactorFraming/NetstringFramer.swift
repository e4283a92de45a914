import ReactorCore

/// D. J. Bernstein's netstrings: `<length>:<payload>,` with the length in decimal, e.g.
/// `5:hello,` and `0:,`. Strict: digits only (no sign, no spaces), no leading zeros,
/// the comma required, and no more digits than ``maxFrameLength`` needs, so a peer
/// cannot make the framer read an endless header.
public struct NetstringFramer: Framer, Sendable {
    public let maxFrameLength: Int
    private let maxDigits: Int

    /// A netstring framer refusing payloads over `maxFrameLength` bytes.
    public init(maxFrameLength: Int = FramerLimits.defaultMaxFrameLength) {
        precondition(maxFrameLength >= 0, "maxFrameLength cannot be negative")
        self.maxFrameLength = maxFrameLength
        self.maxDigits = String(maxFrameLength).count
    }

    /// The comma after every payload, stored so sending a frame does not allocate it.
    public let trailer: [UInt8] = [UInt8(ascii: ",")]

    public func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        var length = 0
        var digits = 0
        while true {
            guard digits < buffer.byteCount else { return .needMore(atLeast: 1) }
            let byte = buffer.byte(at: digits)
            if byte == UInt8(ascii: ":") { break }
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else {
                throw .malformedHeader("netstring length has a non-digit byte 0x\(String(byte, radix: 16))")
            }
            if digits == 1, length == 0 { throw .malformedHeader("netstring length has a leading zero") }
            digits += 1
            guard digits <= maxDigits else { throw .frameTooLong(length: nil, limit: maxFrameLength) }
            // Overflow-checked: with a limit near Int.max, 19 digits can exceed Int.
            let (tens, overflowed) = length.multipliedReportingOverflow(by: 10)
            let (next, carried) = tens.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            guard !overflowed, !carried, next <= maxFrameLength else {
                throw .frameTooLong(length: overflowed || carried ? nil : next, limit: maxFrameLength)
            }
            length = next
        }
        guard digits > 0 else { throw .malformedHeader("netstring length is empty") }
        let payloadStart = digits + 1
        let (frameLength, overflow) = (payloadStart + 1).addingReportingOverflow(length)
        guard !overflow else { throw .frameTooLong(length: length, limit: maxFrameLength) }
        guard buffer.byteCount >= frameLength else { return .needMore(atLeast: frameLength - buffer.byteCount) }
        guard buffer.byte(at: frameLength - 1) == UInt8(ascii: ",") else {
            throw .malformedTrailer("netstring payload is not followed by ','")
        }
        return .frame(payload: payloadStart..<(payloadStart + length), frameLength: frameLength)
    }

    public func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int {
        var length = payload.byteCount
        guard length <= maxFrameLength else { throw .frameTooLong(length: length, limit: maxFrameLength) }
        var digits = 1
        var scale = 10
        while length >= scale {
            digits += 1
            scale *= 10
        }
        header[digits] = UInt8(ascii: ":")
        for index in stride(from: digits - 1, through: 0, by: -1) {
            header[index] = UInt8(ascii: "0") + UInt8(length % 10)
            length /= 10
        }
        return digits + 1
    }
}
