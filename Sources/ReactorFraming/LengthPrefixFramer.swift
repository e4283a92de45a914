import ReactorCore

/// Frames that start with the payload's length as a 1, 2, 4 or 8-byte unsigned integer.
///
/// Big-endian (the default) is byte-compatible with Twisted's Int8StringReceiver,
/// Int16StringReceiver and Int32StringReceiver, and with SwiftNIO's
/// `LengthFieldBasedFrameDecoder`/`LengthFieldPrepender` with their default settings
/// (the length counts the payload only). A length over ``maxFrameLength`` is refused as
/// soon as the header arrives, without waiting for the payload.
public struct LengthPrefixFramer: Framer, Sendable {
    /// The size of the length field.
    public enum Width: Int, Sendable, CaseIterable {
        /// One byte: payloads up to 255 bytes.
        case one = 1
        /// Two bytes: up to 65,535.
        case two = 2
        /// Four bytes (Twisted's Int32StringReceiver, most RPC framings).
        case four = 4
        /// Eight bytes.
        case eight = 8
    }

    /// Byte order of the length field.
    public enum ByteOrder: Sendable {
        /// Most significant byte first (network order).
        case bigEndian
        /// Least significant byte first.
        case littleEndian
    }

    /// The size of the length field.
    public let width: Width
    /// Byte order of the length field.
    public let byteOrder: ByteOrder
    public let maxFrameLength: Int

    /// A framer with a `width`-byte length field. The limit defaults to 64 KiB, or to the
    /// largest length the field can hold when that is smaller.
    public init(width: Width, byteOrder: ByteOrder = .bigEndian, maxFrameLength: Int = FramerLimits.defaultMaxFrameLength) {
        precondition(maxFrameLength >= 0, "maxFrameLength cannot be negative")
        self.width = width
        self.byteOrder = byteOrder
        let fieldMax = width == .eight ? Int.max : (1 << (8 * width.rawValue)) - 1
        self.maxFrameLength = Swift.min(maxFrameLength, fieldMax)
    }

    public func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        let headerLength = width.rawValue
        guard buffer.byteCount >= headerLength else { return .needMore(atLeast: headerLength - buffer.byteCount) }
        let length: UInt64 = switch (width, byteOrder) {
        case (.one, _): UInt64(buffer.byte(at: 0))
        case (.two, .bigEndian): UInt64(buffer.loadBigEndian(UInt16.self, at: 0))
        case (.two, .littleEndian): UInt64(buffer.loadLittleEndian(UInt16.self, at: 0))
        case (.four, .bigEndian): UInt64(buffer.loadBigEndian(UInt32.self, at: 0))
        case (.four, .littleEndian): UInt64(buffer.loadLittleEndian(UInt32.self, at: 0))
        case (.eight, .bigEndian): buffer.loadBigEndian(UInt64.self, at: 0)
        case (.eight, .littleEndian): buffer.loadLittleEndian(UInt64.self, at: 0)
        }
        guard length <= UInt64(maxFrameLength) else {
            throw .frameTooLong(length: length <= UInt64(Int.max) ? Int(length) : nil, limit: maxFrameLength)
        }
        // With a limit near Int.max, header + length can overflow: no such frame fits in memory.
        let (frameLength, overflow) = headerLength.addingReportingOverflow(Int(length))
        guard !overflow else { throw .frameTooLong(length: Int(length), limit: maxFrameLength) }
        guard buffer.byteCount >= frameLength else { return .needMore(atLeast: frameLength - buffer.byteCount) }
        return .frame(payload: headerLength..<frameLength, frameLength: frameLength)
    }

    public func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int {
        let length = payload.byteCount
        guard length <= maxFrameLength else { throw .frameTooLong(length: length, limit: maxFrameLength) }
        switch (width, byteOrder) {
        case (.one, _): header.storeBytes(of: UInt8(length), as: UInt8.self)
        case (.two, .bigEndian): header.storeBytes(of: UInt16(length).bigEndian, as: UInt16.self)
        case (.two, .littleEndian): header.storeBytes(of: UInt16(length).littleEndian, as: UInt16.self)
        case (.four, .bigEndian): header.storeBytes(of: UInt32(length).bigEndian, as: UInt32.self)
        case (.four, .littleEndian): header.storeBytes(of: UInt32(length).littleEndian, as: UInt32.self)
        case (.eight, .bigEndian): header.storeBytes(of: UInt64(length).bigEndian, as: UInt64.self)
        case (.eight, .littleEndian): header.storeBytes(of: UInt64(length).littleEndian, as: UInt64.self)
        }
        return width.rawValue
    }
}
