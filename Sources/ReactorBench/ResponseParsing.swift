#if canImport(Glibc)
import Glibc
#endif

/// Small byte scans shared by the protocol framers and checks, on borrowed bytes.
enum Bytes {
    /// The offset of the first `\r\n` at or after `from`, or nil.
    @inline(__always)
    static func findCRLF(_ bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        var position = start
        // Most lines are short (a reply's +OK, $32, :1): looked for in line first, not
        // through a call to memchr.
        let inlineEnd = Swift.min(bytes.count, start &+ 16)
        while position < inlineEnd {
            if bytes[position] == 10, position > start, bytes[position &- 1] == 13 { return position &- 1 }
            position &+= 1
        }
        while position < bytes.count {
            guard let found = memchr(bytes.baseAddress! + position, 10, bytes.count - position) else { return nil }
            let newline = UnsafeRawPointer(found) - UnsafeRawPointer(bytes.baseAddress!)
            if newline > start, bytes[newline - 1] == 13 { return newline - 1 }
            position = newline + 1
        }
        return nil
    }

    // The same scans on a span, read through its loads: a check that opened the span with
    // withUnsafeBytes paid a call of its own per response, its closure not inlined
    // (callgrind: RedisCodec.check 71 instructions per +OK that way, 48 this way).

    /// The byte at `offset` of `span`.
    @inline(__always)
    static func byte(_ span: RawSpan, _ offset: Int) -> UInt8 {
        span.unsafeLoad(fromByteOffset: offset, as: UInt8.self)
    }

    /// The byte at `offset` of `span`, which the caller has made sure lies inside it: no
    /// bounds check (callgrind: RESPFramer took 123 instructions per 32-byte bulk reply
    /// with the checks, 72 without).
    @inline(__always)
    static func byte(_ span: RawSpan, unchecked offset: Int) -> UInt8 {
        span.unsafeLoad(fromUncheckedByteOffset: offset, as: UInt8.self)
    }

    /// The offset of the first `\r\n` at or after `from` in `span`, or nil.
    @inline(__always)
    static func findCRLF(_ span: RawSpan, from start: Int) -> Int? {
        let count = span.byteCount
        var position = start
        let inlineEnd = Swift.min(count, start &+ 16)
        while position < inlineEnd {
            if byte(span, position) == 10, position > start, byte(span, position &- 1) == 13 { return position &- 1 }
            position &+= 1
        }
        guard position < count else { return nil }
        return span.withUnsafeBytes { findCRLF($0, from: start) }  // a long line: memchr
    }

    /// True when `span` equals `text`.
    @inline(__always)
    static func equals(_ span: RawSpan, _ text: StaticString) -> Bool {
        let count = text.utf8CodeUnitCount
        guard span.byteCount == count else { return false }
        for offset in 0..<count where byte(span, offset) != text.utf8Start[offset] { return false }
        return true
    }

    /// A decimal integer (optionally negative) in `bytes[range]`, or nil when it is not one.
    @inline(__always)
    static func decimal(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
        guard !range.isEmpty else { return nil }
        var index = range.lowerBound
        let negative = bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        guard index < range.upperBound, range.upperBound - index <= 18 else { return nil }
        var value = 0
        while index < range.upperBound {
            let digit = Int(bytes[index]) - 48
            guard digit >= 0, digit <= 9 else { return nil }
            value = value * 10 + digit
            index += 1
        }
        return negative ? -value : value
    }

    /// True when `bytes` starts with `prefix`.
    @inline(__always)
    static func hasPrefix(_ bytes: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
        let count = prefix.utf8CodeUnitCount
        guard bytes.count >= count else { return false }
        // A short constant (a reply such as +OK) compares in line, unrolled: no call.
        guard count <= 8 else { return memcmp(bytes.baseAddress!, prefix.utf8Start, count) == 0 }
        for offset in 0..<count where bytes[offset] != prefix.utf8Start[offset] { return false }
        return true
    }

    /// True when `bytes` equals `text`.
    @inline(__always)
    static func equals(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
        bytes.count == text.utf8CodeUnitCount && hasPrefix(bytes, text)
    }

    /// True when the two are equal.
    @inline(__always)
    static func equals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == b.count && (a.isEmpty || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }

    /// `bytes[range]`.
    @inline(__always)
    static func slice(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[range])
    }

    /// ASCII lowercase of one byte.
    @inline(__always)
    static func lower(_ byte: UInt8) -> UInt8 {
        byte >= 65 && byte <= 90 ? byte | 0x20 : byte
    }

    /// True when `bytes[range]` equals `lowercase` ignoring ASCII case.
    static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercase: StaticString) -> Bool {
        guard range.count == lowercase.utf8CodeUnitCount else { return false }
        for offset in 0..<range.count where lower(bytes[range.lowerBound + offset]) != lowercase.utf8Start[offset] { return false }
        return true
    }

    /// True when `bytes[range]` contains `lowercase` ignoring ASCII case.
    static func containsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercase: StaticString) -> Bool {
        let length = lowercase.utf8CodeUnitCount
        guard range.count >= length else { return false }
        var start = range.lowerBound
        while start + length <= range.upperBound {
            if equalsIgnoringCase(bytes, start..<(start + length), lowercase) { return true }
            start += 1
        }
        return false
    }
}
