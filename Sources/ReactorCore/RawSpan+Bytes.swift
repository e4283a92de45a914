extension RawSpan {
    /// A copy of the bytes, for keeping beyond the callback that lent the span.
    public func copyBytes() -> [UInt8] {
        withUnsafeBytes { Array($0) }
    }

    /// The bytes decoded as UTF-8 (invalid sequences become U+FFFD).
    public func decodeUTF8() -> String {
        withUnsafeBytes { String(decoding: $0, as: UTF8.self) }
    }
}
