// Public on purpose, though they extend a standard library type: a custom framer reads its
// header fields with these and a handler keeps or decodes a payload with them
// (docs/framing.md shows both). The loads are bounds-checked.
/// Reading the bytes a handler is lent: single bytes, big- and little-endian integers,
/// copies.
extension RawSpan {
    /// The byte at `offset`, bounds-checked.
    @inlinable
    public func byte(at offset: Int) -> UInt8 {
        precondition(offset >= 0 && offset < byteCount, "byte offset \(offset) out of range 0..<\(byteCount)")
        return unsafe unsafeLoad(fromByteOffset: offset, as: UInt8.self)
    }

    /// A big-endian integer stored at `offset` (any alignment), bounds-checked: the
    /// usual way to read a length or type field in a header.
    @inlinable
    public func loadBigEndian<T: FixedWidthInteger & BitwiseCopyable>(_ type: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= byteCount, "\(T.self) at offset \(offset) out of range 0..<\(byteCount)")
        return T(bigEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// A little-endian integer stored at `offset` (any alignment), bounds-checked.
    @inlinable
    public func loadLittleEndian<T: FixedWidthInteger & BitwiseCopyable>(_ type: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= byteCount, "\(T.self) at offset \(offset) out of range 0..<\(byteCount)")
        return T(littleEndian: unsafe unsafeLoadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// A copy of the bytes, for keeping beyond the callback that lent the span.
    @inlinable
    public func copyBytes() -> [UInt8] {
        withUnsafeBytes { Array($0) }
    }

    /// The bytes decoded as UTF-8 (invalid sequences become U+FFFD).
    @inlinable
    public func decodeUTF8() -> String {
        withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
    }
}
