/// Decodes one PROXY protocol header (v1, v2 or either) from the start of a stream, fed
/// as the bytes arrive: one at a time or all in one read with the payload behind them.
///
/// ```swift
/// var parser = ProxyHeaderParser(accepting: .v2)
/// switch try parser.parse(bytes) {
/// case .needMore: break                         // wait for the next read
/// case .complete(let header, let consumed): ... // bytes[consumed...] are the payload
/// }
/// ```
///
/// It refuses as early as it can tell: a byte that cannot start or continue a header, a
/// v1 line without CRLF in its first 107 bytes or ended by a bare CR or LF, a v2 length
/// over the cap, and (once complete) anything the specification does not allow. Bytes of
/// an unfinished header are kept (at most the limit); a header that arrives whole in one
/// read is decoded where it lies, without copying. One parser reads one header.
public struct ProxyHeaderParser: Sendable {
    /// What ``parse(_:)-(UnsafeRawBufferPointer)`` found.
    public enum Progress: Sendable, Equatable {
        /// A valid beginning, not yet the whole header.
        case needMore
        /// The header, and how many bytes of this call's input belong to it; the rest
        /// is payload.
        case complete(ProxyHeader, consumed: Int)
    }

    /// The longest v1 line, CRLF included (the specification's worst case, `UNKNOWN`
    /// with two full IPv6 addresses).
    public static let maxV1Length = 107
    /// The 12 bytes every v2 header starts with.
    public static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    private static let v1Prefix = Array("PROXY ".utf8)
    private static let cr: UInt8 = 0x0D
    private static let lf: UInt8 = 0x0A

    /// The versions taken.
    public let accepting: ProxyProtocolVersions
    /// The largest v2 header taken, 16 bytes plus its length field.
    public let maxV2Length: Int
    private var stored: [UInt8] = []

    /// A parser for one header of `accepting` versions, v2 ones at most `maxV2Length`
    /// bytes long (clamped to 16 + 65,535, the most the length field can say).
    public init(accepting: ProxyProtocolVersions = .any, maxV2Length: Int = ProxyProtocolOptions.defaultMaxV2Length) {
        self.accepting = accepting
        self.maxV2Length = min(maxV2Length, 16 + 0xFFFF)
    }

    /// Bytes of an unfinished header held from earlier calls.
    public var bufferedCount: Int { stored.count }

    /// Takes the next bytes of the stream.
    ///
    /// - Returns: ``Progress/needMore`` while the header is incomplete (every byte given
    ///   so far belongs to it), or the header and how many of `bytes` it used.
    /// - Throws: ``ProxyHeaderError`` (``ProxyHeaderError/Kind/malformed``,
    ///   ``ProxyHeaderError/Kind/tooLong`` or ``ProxyHeaderError/Kind/badChecksum``) as
    ///   soon as the bytes cannot be a valid header.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer) throws(ProxyHeaderError) -> Progress {
        if stored.isEmpty {
            guard let length = try measure(bytes) else {
                stored.append(contentsOf: bytes)
                return .needMore
            }
            let header = try decode(UnsafeRawBufferPointer(rebasing: bytes[0..<length]))
            return .complete(header, consumed: length)
        }
        let before = stored.count
        // Never hold more than the largest header: a longer run fails the measure below.
        let room = max(0, max(ProxyHeaderParser.maxV1Length, maxV2Length) - before)
        stored.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes.prefix(room)))
        // Array's closures do not carry typed throws: the outcome comes out as a Result.
        let measured = stored.withUnsafeBytes { all in Result { () throws(ProxyHeaderError) in try measure(all) } }
        guard let length = try measured.get() else { return .needMore }
        let header = stored.withUnsafeBytes { all in
            Result { () throws(ProxyHeaderError) in try decode(UnsafeRawBufferPointer(rebasing: all[0..<length])) }
        }
        return .complete(try header.get(), consumed: length - before)
    }

    /// ``parse(_:)-(UnsafeRawBufferPointer)`` on an array.
    public mutating func parse(_ bytes: [UInt8]) throws(ProxyHeaderError) -> Progress {
        var parser = self
        let progress = bytes.withUnsafeBytes { raw in Result { () throws(ProxyHeaderError) in try parser.parse(raw) } }
        self = parser
        return try progress.get()
    }

    // MARK: - How long the header is

    /// The header's full length once `bytes` hold all of it, nil while they are a valid
    /// beginning; throws as soon as they are not.
    private func measure(_ bytes: UnsafeRawBufferPointer) throws(ProxyHeaderError) -> Int? {
        guard let first = bytes.first else { return nil }
        switch first {
        case ProxyHeaderParser.v2Signature[0]:
            guard accepting != .v1 else {
                throw ProxyHeaderError(.malformed, "expected a version 1 line starting 'PROXY ', not version 2's signature")
            }
            return try measureV2(bytes)
        case ProxyHeaderParser.v1Prefix[0]:
            guard accepting != .v2 else {
                throw ProxyHeaderError(.malformed, "expected version 2's binary signature, not a version 1 line")
            }
            return try measureV1(bytes)
        default:
            throw ProxyHeaderError(.malformed, "not a PROXY protocol header (first byte \(hex(first)))")
        }
    }

    private func measureV1(_ bytes: UnsafeRawBufferPointer) throws(ProxyHeaderError) -> Int? {
        let prefix = ProxyHeaderParser.v1Prefix
        for index in 0..<min(bytes.count, prefix.count) where bytes[index] != prefix[index] {
            throw ProxyHeaderError(.malformed, "a version 1 line starts with 'PROXY '")
        }
        var index = prefix.count
        while index < min(bytes.count, ProxyHeaderParser.maxV1Length) {
            let byte = bytes[index]
            if byte == ProxyHeaderParser.cr {
                guard index + 2 <= ProxyHeaderParser.maxV1Length else {
                    throw ProxyHeaderError(.tooLong, "no CRLF within the first \(ProxyHeaderParser.maxV1Length) bytes of the version 1 line")
                }
                guard index + 1 < bytes.count else { return nil }
                guard bytes[index + 1] == ProxyHeaderParser.lf else {
                    throw ProxyHeaderError(.malformed, "a CR not followed by LF in the version 1 line (it must end in CRLF)")
                }
                return index + 2
            }
            guard byte != ProxyHeaderParser.lf else {
                throw ProxyHeaderError(.malformed, "a bare LF ends the version 1 line (it must end in CRLF)")
            }
            guard byte >= 0x20, byte < 0x7F else {
                throw ProxyHeaderError(.malformed, "byte \(hex(byte)) in the version 1 line, which is printable US-ASCII")
            }
            index += 1
        }
        if bytes.count >= ProxyHeaderParser.maxV1Length {
            throw ProxyHeaderError(.tooLong, "no CRLF within the first \(ProxyHeaderParser.maxV1Length) bytes of the version 1 line")
        }
        return nil
    }

    private func measureV2(_ bytes: UnsafeRawBufferPointer) throws(ProxyHeaderError) -> Int? {
        let signature = ProxyHeaderParser.v2Signature
        for index in 0..<min(bytes.count, signature.count) where bytes[index] != signature[index] {
            throw ProxyHeaderError(.malformed, "does not match version 2's 12-byte signature (byte \(index + 1) is \(hex(bytes[index])))")
        }
        if bytes.count > 12 {
            let versionAndCommand = bytes[12]
            guard versionAndCommand >> 4 == 2 else {
                throw ProxyHeaderError(.malformed, "version \(versionAndCommand >> 4) in a version 2 header (byte 13 is \(hex(versionAndCommand)))")
            }
            guard versionAndCommand & 0x0F <= 1 else {
                throw ProxyHeaderError(.malformed, "command \(versionAndCommand & 0x0F) is neither LOCAL (0) nor PROXY (1)")
            }
        }
        if bytes.count > 13 {
            guard ProxyHeaderParser.addressLength(bytes[13]) != nil else {
                throw ProxyHeaderError(.malformed, "address family and transport \(hex(bytes[13])) is none of 0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32")
            }
        }
        guard bytes.count >= 16 else { return nil }
        let total = 16 + (Int(bytes[14]) << 8 | Int(bytes[15]))
        guard total <= maxV2Length else {
            throw ProxyHeaderError(.tooLong, "version 2 header of \(total) bytes, over the limit of \(maxV2Length)")
        }
        return bytes.count >= total ? total : nil
    }

    /// The address block's size for a v2 family-and-transport byte; nil for the
    /// combinations the specification does not define.
    private static func addressLength(_ familyAndTransport: UInt8) -> Int? {
        switch familyAndTransport {
        case 0x00: 0
        case 0x11, 0x12: 12
        case 0x21, 0x22: 36
        case 0x31, 0x32: 216
        default: nil
        }
    }

    // MARK: - Decoding a whole header

    private func decode(_ header: UnsafeRawBufferPointer) throws(ProxyHeaderError) -> ProxyHeader {
        header[0] == ProxyHeaderParser.cr ? try decodeV2(header) : try decodeV1(header)
    }

    private func decodeV1(_ line: UnsafeRawBufferPointer) throws(ProxyHeaderError) -> ProxyHeader {
        let body = line[ProxyHeaderParser.v1Prefix.count..<(line.count - 2)]
        let fields = body.split(separator: 0x20, omittingEmptySubsequences: false)
        let proto = fields.first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        if proto == "UNKNOWN" {
            // The specification: the receiver ignores whatever follows UNKNOWN.
            return ProxyHeader(version: .v1, command: .proxy, family: .unspecified, transport: .unspecified, length: line.count)
        }
        guard proto == "TCP4" || proto == "TCP6" else {
            throw ProxyHeaderError(.malformed, "protocol '\(proto)' in the version 1 line is none of TCP4, TCP6, UNKNOWN")
        }
        guard fields.count == 5 else {
            throw ProxyHeaderError(
                .malformed, "expected 'PROXY \(proto) SOURCE DESTINATION SOURCE-PORT DESTINATION-PORT' with single spaces")
        }
        let ipv6 = proto == "TCP6"
        let sourcePort = try ProxyHeaderParser.port(fields[3])
        let destinationPort = try ProxyHeaderParser.port(fields[4])
        let source = try ProxyHeaderParser.address(fields[1], ipv6: ipv6, port: sourcePort)
        let destination = try ProxyHeaderParser.address(fields[2], ipv6: ipv6, port: destinationPort)
        return ProxyHeader(
            version: .v1, command: .proxy, family: ipv6 ? .ipv6 : .ipv4, transport: .stream,
            source: source, destination: destination, length: line.count)
    }

    /// A decimal port without leading zeros, 0...65535.
    private static func port(_ text: Slice<UnsafeRawBufferPointer>) throws(ProxyHeaderError) -> UInt16 {
        guard let value = decimal(text, maxDigits: 5), value <= 65535 else {
            throw ProxyHeaderError(.malformed, "port '\(String(decoding: text, as: UTF8.self))' is not a number from 0 to 65535 without leading zeros")
        }
        return UInt16(value)
    }

    /// Digits only, at most `maxDigits`, no leading zero unless the number is 0.
    private static func decimal(_ text: Slice<UnsafeRawBufferPointer>, maxDigits: Int) -> Int? {
        guard !text.isEmpty, text.count <= maxDigits, text.count == 1 || text.first != UInt8(ascii: "0") else { return nil }
        var value = 0
        for byte in text {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }

    private static func address(
        _ text: Slice<UnsafeRawBufferPointer>, ipv6: Bool, port: UInt16
    ) throws(ProxyHeaderError) -> SocketAddress {
        let refused = ProxyHeaderError(
            .malformed,
            "'\(String(decoding: text, as: UTF8.self))' is not an \(ipv6 ? "IPv6" : "IPv4") address in canonical form")
        if !ipv6 {
            let parts = text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
            guard parts.count == 4 else { throw refused }
            var bytes: [UInt8] = []
            for part in parts {
                guard let value = decimal(part, maxDigits: 3), value <= 255 else { throw refused }
                bytes.append(UInt8(value))
            }
            return bytes.withUnsafeBytes { SocketAddress(ipv4: $0, port: port) }
        }
        let allowed = text.allSatisfy { byte in
            byte == UInt8(ascii: ":") || byte == UInt8(ascii: ".") || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "f"))
        }
        guard allowed, text.contains(UInt8(ascii: ":")),
            let parsed = try? SocketAddress(ip: String(decoding: text, as: UTF8.self), port: Int(port)),
            parsed.family == .ipv6
        else { throw refused }
        return parsed
    }

    private func decodeV2(_ header: UnsafeRawBufferPointer) throws(ProxyHeaderError) -> ProxyHeader {
        let isProxy = header[12] & 0x0F == 1
        let familyAndTransport = header[13]
        let family: ProxyHeader.Family = switch familyAndTransport >> 4 {
        case 1: .ipv4
        case 2: .ipv6
        case 3: .unix
        default: .unspecified
        }
        let transport: ProxyHeader.Transport = switch familyAndTransport & 0x0F {
        case 1: .stream
        case 2: .datagram
        default: .unspecified
        }
        // measureV2 refused the undefined combinations.
        let addressLength = ProxyHeaderParser.addressLength(familyAndTransport) ?? 0
        guard header.count - 16 >= addressLength else {
            throw ProxyHeaderError(
                .malformed, "address block of \(header.count - 16) bytes, where family \(hex(familyAndTransport)) needs \(addressLength)")
        }
        var source: SocketAddress?
        var destination: SocketAddress?
        if isProxy, family == .ipv4 || family == .ipv6 {
            let size = family == .ipv4 ? 4 : 16
            let ports = 16 + 2 * size
            let sourcePort = UInt16(header[ports]) << 8 | UInt16(header[ports + 1])
            let destinationPort = UInt16(header[ports + 2]) << 8 | UInt16(header[ports + 3])
            let sourceBytes = UnsafeRawBufferPointer(rebasing: header[16..<(16 + size)])
            let destinationBytes = UnsafeRawBufferPointer(rebasing: header[(16 + size)..<(16 + 2 * size)])
            if family == .ipv4 {
                source = SocketAddress(ipv4: sourceBytes, port: sourcePort)
                destination = SocketAddress(ipv4: destinationBytes, port: destinationPort)
            } else {
                source = SocketAddress(ipv6: sourceBytes, port: sourcePort)
                destination = SocketAddress(ipv6: destinationBytes, port: destinationPort)
            }
        }
        let start = 16 + addressLength
        let tlvs = try ProxyHeaderParser.tlvs(in: header[start...])
        for tlv in tlvs {
            switch tlv.type {
            case ProxyHeader.TLVType.crc32c:
                guard tlv.value.count == 4 else {
                    throw ProxyHeaderError(.malformed, "CRC32C TLV of \(tlv.value.count) bytes, not 4")
                }
                try ProxyHeaderParser.checkCRC(header, start: start)
            case ProxyHeader.TLVType.uniqueID:
                guard tlv.value.count <= 128 else {
                    throw ProxyHeaderError(.malformed, "unique id TLV of \(tlv.value.count) bytes, over 128")
                }
            case ProxyHeader.TLVType.ssl:
                guard tlv.value.count >= 5, (try? ProxyHeaderParser.tlvs(in: tlv.value[5...])) != nil else {
                    throw ProxyHeaderError(.malformed, "SSL TLV whose client, verify and sub-TLV fields do not fit its length")
                }
            default:
                break
            }
        }
        return ProxyHeader(
            version: .v2, command: isProxy ? .proxy : .local, family: family, transport: transport,
            source: source, destination: destination, tlvs: tlvs, length: header.count)
    }

    /// The TLVs filling `bytes` exactly: type, 16-bit length, value, repeated.
    static func tlvs<Bytes: RandomAccessCollection>(in bytes: Bytes) throws(ProxyHeaderError) -> [ProxyHeader.TLV]
    where Bytes.Element == UInt8, Bytes.Index == Int {
        var entries: [ProxyHeader.TLV] = []
        var offset = bytes.startIndex
        while offset < bytes.endIndex {
            guard bytes.endIndex - offset >= 3 else {
                throw ProxyHeaderError(.malformed, "\(bytes.endIndex - offset) byte(s) after the last TLV, too few for a TLV's type and length")
            }
            let length = Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
            guard bytes.endIndex - offset - 3 >= length else {
                throw ProxyHeaderError(.malformed, "TLV \(hex(bytes[offset])) of \(length) bytes runs past the header's end")
            }
            entries.append(ProxyHeader.TLV(type: bytes[offset], value: Array(bytes[(offset + 3)..<(offset + 3 + length)])))
            offset += 3 + length
        }
        return entries
    }

    /// Checks the CRC32C TLV: the checksum of the whole header with the TLV's value zeroed
    /// must equal the value (RFC 4960 appendix B, as the specification says).
    private static func checkCRC(_ header: UnsafeRawBufferPointer, start: Int) throws(ProxyHeaderError) {
        var copy = Array(header)
        var offset = start
        var sent: UInt32 = 0
        while offset + 3 <= copy.count {
            let length = Int(copy[offset + 1]) << 8 | Int(copy[offset + 2])
            if copy[offset] == ProxyHeader.TLVType.crc32c {
                for index in (offset + 3)..<(offset + 7) {
                    sent = sent << 8 | UInt32(copy[index])
                    copy[index] = 0
                }
                break
            }
            offset += 3 + length
        }
        let computed = copy.withUnsafeBytes { CRC32C.checksum($0) }
        guard computed == sent else {
            throw ProxyHeaderError(.badChecksum, "CRC32C \(hex32(sent)) sent, \(hex32(computed)) computed")
        }
    }
}

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven: the checksum of
/// the PROXY v2 `PP2_TYPE_CRC32C` TLV. Once per header, never per read.
package enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 != 0 ? (value >> 1) ^ 0x82F6_3B78 : value >> 1 }
        return value
    }

    /// The CRC32C of `bytes` (`123456789` gives 0xE3069283).
    package static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}

private func hex(_ byte: UInt8) -> String {
    byte < 0x10 ? "0x0\(String(byte, radix: 16))" : "0x\(String(byte, radix: 16))"
}

private func hex32(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}
