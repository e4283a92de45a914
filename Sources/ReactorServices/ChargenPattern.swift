/// The RFC 864 character generator's stream: lines of 72 printable ASCII characters
/// followed by CRLF, taken from the 95 characters `' '` (0x20) to `'~'` (0x7E) in order,
/// each line starting one character later than the one before. After 95 lines the
/// pattern repeats.
///
/// The whole cycle is built once, followed by enough of its own start that any chunk of
/// up to ``maxChunk`` bytes from any position is one contiguous slice: the handlers send
/// straight from it, never building a line per reply.
enum ChargenPattern {
    /// Characters on a line, before CRLF.
    static let charactersPerLine = 72
    /// A line with its CRLF.
    static let lineLength = charactersPerLine + 2
    /// Printable ASCII characters: 0x20 through 0x7E.
    static let printableCount = 95
    /// Bytes before the pattern repeats: 95 lines.
    static let cycleLength = printableCount * lineLength
    /// The longest slice ``withBytes(from:count:_:)`` can lend.
    static let maxChunk = 16 * 1024

    private static let bytes: [UInt8] = {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(cycleLength + maxChunk)
        while bytes.count < cycleLength + maxChunk {
            let line = bytes.count / lineLength % printableCount
            for column in 0..<charactersPerLine {
                bytes.append(UInt8(0x20 + (line + column) % printableCount))
            }
            bytes += [13, 10]
        }
        return bytes
    }()

    /// Lends `count` bytes of the stream starting `offset` bytes into the cycle
    /// (`0 ..< cycleLength`, `count ... maxChunk`).
    @discardableResult
    static func withBytes<R>(from offset: Int, count: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        precondition(offset >= 0 && offset < cycleLength && count >= 0 && count <= maxChunk)
        return bytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[offset..<offset + count])) }
    }
}
