// The PROXY protocol header parser against haproxy's doc/proxy-protocol.txt: its examples
// byte for byte, every split point, the v1 CR/LF rules and limits, v2 families, TLVs and
// CRC32C, and garbage.

import ReactorCore
import Testing

/// A v2 header: the signature, version 2 with `command`, `family`, the length, the
/// address block and the TLVs.
func proxyV2(command: UInt8 = 0x1, family: UInt8, addresses: [UInt8], tlvs: [UInt8] = []) -> [UInt8] {
    let length = addresses.count + tlvs.count
    return ProxyHeaderParser.v2Signature + [0x20 | command, family, UInt8(length >> 8), UInt8(length & 0xFF)] + addresses + tlvs
}

/// One TLV: type, 16-bit length, value.
func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] {
    [type, UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
}

/// The v2 IPv4 address block: 192.168.0.1:56324 -> 192.168.0.11:443, the v1 example's.
let exampleIPv4Block: [UInt8] = [192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB]

/// Feeds `bytes` in chunks cut at `cuts`; returns the header and the payload bytes after it.
func parseInChunks(
    _ bytes: [UInt8], cuts: [Int], accepting: ProxyProtocolVersions = .any
) throws(ProxyHeaderError) -> (header: ProxyHeader, payload: [UInt8])? {
    var parser = ProxyHeaderParser(accepting: accepting)
    var start = 0
    for end in cuts + [bytes.count] where end > start {
        let chunk = Array(bytes[start..<end])
        if case .complete(let header, let consumed) = try parser.parse(chunk) {
            return (header, Array(chunk[consumed...]) + Array(bytes[end...]))
        }
        start = end
    }
    return nil
}

func kind(of bytes: [UInt8], accepting: ProxyProtocolVersions = .any) -> ProxyHeaderError.Kind? {
    var parser = ProxyHeaderParser(accepting: accepting)
    do {
        _ = try parser.parse(bytes)
        return nil
    } catch {
        return error.kind
    }
}

@Suite("PROXY header parser")
struct ProxyHeaderParserTests {
    static let exampleLine = Array("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".utf8)
    static let exampleRequest = Array("GET / HTTP/1.1\r\nHost: 192.168.0.11\r\n\r\n".utf8)

    @Test("the specification's v1 example: the line is the header, the HTTP request the payload")
    func v1Example() throws {
        let bytes = Self.exampleLine + Self.exampleRequest
        var parser = ProxyHeaderParser(accepting: .v1)
        let progress = try parser.parse(bytes)
        guard case .complete(let header, let consumed) = progress else {
            Issue.record("not complete: \(progress)")
            return
        }
        #expect(consumed == Self.exampleLine.count)
        #expect(header.version == .v1)
        #expect(header.command == .proxy)
        #expect(header.family == .ipv4)
        #expect(header.transport == .stream)
        #expect(header.source == (try SocketAddress(ip: "192.168.0.1", port: 56324)))
        #expect(header.destination == (try SocketAddress(ip: "192.168.0.11", port: 443)))
        #expect(header.tlvs.isEmpty)
        #expect(header.length == Self.exampleLine.count)
        #expect(Array(bytes[consumed...]) == Self.exampleRequest)
    }

    @Test("the specification's longest lines: 56 (TCP4), 104 (TCP6), 15 (UNKNOWN) and 107 bytes (UNKNOWN, worst case)")
    func v1Lengths() throws {
        let full6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        let lines = [
            ("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n", 56),
            ("PROXY TCP6 \(full6) \(full6) 65535 65535\r\n", 104),
            ("PROXY UNKNOWN\r\n", 15),
            ("PROXY UNKNOWN \(full6) \(full6) 65535 65535\r\n", 107),
        ]
        for (line, length) in lines {
            let bytes = Array(line.utf8)
            #expect(bytes.count == length)
            let parsed = try #require(try parseInChunks(bytes + [0x41], cuts: []), "\(line)")
            #expect(parsed.header.length == length)
            #expect(parsed.payload == [0x41])
        }
        let tcp6 = try #require(try parseInChunks(Array(lines[1].0.utf8), cuts: []))
        #expect(tcp6.header.source == (try SocketAddress(ip: full6, port: 65535)))
        for unknown in [lines[2].0, lines[3].0] {
            let header = try #require(try parseInChunks(Array(unknown.utf8), cuts: [])).header
            #expect(header.family == .unspecified)
            #expect(header.source == nil, "UNKNOWN: the socket's own addresses apply")
        }
    }

    @Test("v1: bytes split at every point, and one at a time, give the same header and payload")
    func v1EverySplit() throws {
        let bytes = Self.exampleLine + Self.exampleRequest
        let whole = try #require(try parseInChunks(bytes, cuts: []))
        for cut in 1..<bytes.count {
            let split = try #require(try parseInChunks(bytes, cuts: [cut]), "cut at \(cut)")
            #expect(split.header == whole.header, "cut at \(cut)")
            #expect(split.payload == Self.exampleRequest, "cut at \(cut)")
        }
        let single = try #require(try parseInChunks(bytes, cuts: Array(1..<bytes.count)))
        #expect(single.header == whole.header)
        #expect(single.payload == Self.exampleRequest)
    }

    @Test("v1 line ends: a bare LF, a bare CR, CR then something else are refused; CRLF only")
    func v1LineEnds() {
        #expect(kind(of: Array("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".utf8)) == .malformed)
        #expect(kind(of: Array("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX".utf8)) == .malformed)
        #expect(kind(of: Array("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n".utf8)) == .malformed)
        #expect(kind(of: Array("PROXY UNKNOWN\n".utf8)) == .malformed)
        // A CR as the last byte so far waits for the next one.
        var parser = ProxyHeaderParser()
        #expect((try? parser.parse(Array("PROXY UNKNOWN\r".utf8))) == .needMore)
        #expect((try? parser.parse([0x0A])) == .complete(
            ProxyHeader(version: .v1, command: .proxy, family: .unspecified, transport: .unspecified, length: 15), consumed: 1))
    }

    @Test("v1 limit: no CRLF within 107 bytes is too long, refused at the 107th byte, fed whole or byte by byte")
    func v1TooLong() {
        let long = Array(("PROXY UNKNOWN " + String(repeating: "f", count: 200)).utf8)
        #expect(kind(of: Array(long.prefix(107))) == .tooLong)
        #expect(kind(of: Array(long.prefix(106))) == nil, "106 bytes may still end in CRLF at 107")
        // CR as the 107th byte: the LF would be the 108th.
        #expect(kind(of: Array(long.prefix(106)) + [0x0D]) == .tooLong)
        var parser = ProxyHeaderParser()
        var failure: ProxyHeaderError?
        var fed = 0
        for byte in long {
            do {
                _ = try parser.parse([byte])
                fed += 1
            } catch {
                failure = error
                break
            }
        }
        #expect(failure?.kind == .tooLong)
        #expect(fed == 106)
        #expect(parser.bufferedCount <= 107)
    }

    @Test("v1 fields: exactly the specification's format", arguments: [
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 0443\r\n",  // leading zero in a port
        "PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n",  // leading zero in an address
        "PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",  // two spaces
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 \r\n",  // trailing space
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",  // a field missing
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 65536\r\n",  // port out of range
        "PROXY TCP4 256.168.0.1 192.168.0.11 56324 443\r\n",  // octet out of range
        "PROXY TCP4 ::1 ::1 56324 443\r\n",  // IPv6 under TCP4
        "PROXY TCP6 192.168.0.1 192.168.0.11 56324 443\r\n",  // IPv4 under TCP6
        "PROXY TCP6 [::1] ::1 56324 443\r\n",  // brackets
        "PROXY TCP6 1:::2 ::1 56324 443\r\n",  // not IPv6
        "PROXY UDP4 192.168.0.1 192.168.0.11 56324 443\r\n",  // not a v1 protocol
        "PROXY  TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP4 192.168.0.1 192.168.0.11 +1 443\r\n",
        "PROXY\tTCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "proxy TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP4 192.168.0.1 192.168.0.11 56324 44\u{7F}\r\n",
    ])
    func v1Refused(line: String) {
        #expect(kind(of: Array(line.utf8)) == .malformed, "\(line.debugDescription)")
    }

    @Test("v2: the specification's TCP over IPv4 header, whole and split at every point")
    func v2IPv4EverySplit() throws {
        let header = proxyV2(family: 0x11, addresses: exampleIPv4Block)
        #expect(header.count == 28, "16 + 12 bytes")
        let payload = Array("ping\n".utf8)
        let bytes = header + payload
        let whole = try #require(try parseInChunks(bytes, cuts: [], accepting: .v2))
        #expect(whole.header.version == .v2)
        #expect(whole.header.command == .proxy)
        #expect(whole.header.family == .ipv4)
        #expect(whole.header.transport == .stream)
        #expect(whole.header.source == (try SocketAddress(ip: "192.168.0.1", port: 56324)))
        #expect(whole.header.destination == (try SocketAddress(ip: "192.168.0.11", port: 443)))
        #expect(whole.header.length == 28)
        #expect(whole.payload == payload)
        for cut in 1..<bytes.count {
            let split = try #require(try parseInChunks(bytes, cuts: [cut]), "cut at \(cut)")
            #expect(split.header == whole.header && split.payload == payload, "cut at \(cut)")
        }
        let single = try #require(try parseInChunks(bytes, cuts: Array(1..<bytes.count)))
        #expect(single.header == whole.header && single.payload == payload)
    }

    @Test("v2: TCP and UDP over IPv6, LOCAL, UNSPEC and Unix families")
    func v2Families() throws {
        let source: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1]
        let destination: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [2]
        for (family, transport) in [(UInt8(0x21), ProxyHeader.Transport.stream), (0x22, .datagram)] {
            let header = try #require(try parseInChunks(proxyV2(family: family, addresses: source + destination + [0x1F, 0x90, 0x00, 0x50]), cuts: [])).header
            #expect(header.family == .ipv6)
            #expect(header.transport == transport)
            #expect(header.source == (try SocketAddress(ip: "2001:db8::1", port: 8080)))
            #expect(header.destination == (try SocketAddress(ip: "2001:db8::2", port: 80)))
        }
        // LOCAL (a health check): addresses, if any, are skipped and not used.
        let local = try #require(try parseInChunks(proxyV2(command: 0, family: 0x00, addresses: []), cuts: [])).header
        #expect(local.command == .local)
        #expect(local.source == nil)
        let localWithAddresses = try #require(try parseInChunks(proxyV2(command: 0, family: 0x11, addresses: exampleIPv4Block), cuts: [])).header
        #expect(localWithAddresses.command == .local && localWithAddresses.source == nil && localWithAddresses.length == 28)
        // PROXY with UNSPEC: no addresses to use.
        let unspec = try #require(try parseInChunks(proxyV2(family: 0x00, addresses: []), cuts: [])).header
        #expect(unspec.family == .unspecified && unspec.source == nil)
        // Unix: 2 x 108 bytes of paths, skipped.
        let path = Array("/run/haproxy.sock".utf8)
        let block = path + [UInt8](repeating: 0, count: 108 - path.count) + path + [UInt8](repeating: 0, count: 108 - path.count)
        let unix = try #require(try parseInChunks(proxyV2(family: 0x31, addresses: block, tlvs: tlv(0x05, [7])), cuts: [])).header
        #expect(unix.family == .unix && unix.source == nil && unix.length == 16 + 216 + 4)
        #expect(unix.uniqueID == [7])
    }

    @Test("v2 TLVs: ALPN, authority, unique id, CRC32C, SSL with sub-TLVs, NETNS, NOOP and custom ones reach the handler")
    func v2TLVs() throws {
        let ssl = [0x07, 0, 0, 0, 0] + tlv(0x21, Array("TLSv1.3".utf8)) + tlv(0x22, Array("client.example".utf8))
            + tlv(0x23, Array("TLS_AES_128_GCM_SHA256".utf8))
        let tlvs = tlv(0x01, Array("h2".utf8)) + tlv(0x02, Array("example.com".utf8)) + tlv(0x05, [1, 2, 3, 4])
            + tlv(0x20, ssl) + tlv(0x30, Array("blue".utf8)) + tlv(0x04, [0, 0]) + tlv(0xE0, [0xAB])
        var bytes = proxyV2(family: 0x11, addresses: exampleIPv4Block, tlvs: tlvs + tlv(0x03, [0, 0, 0, 0]))
        let crc = bytes.withUnsafeBytes { CRC32C.checksum($0) }
        bytes.replaceSubrange((bytes.count - 4)..., with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        for cuts in [[], [20], [bytes.count - 2], Array(1..<bytes.count)] {
            let header = try #require(try parseInChunks(bytes, cuts: cuts)).header
            #expect(header.alpn == Array("h2".utf8))
            #expect(header.authority == "example.com")
            #expect(header.uniqueID == [1, 2, 3, 4])
            #expect(header.netns == "blue")
            #expect(header.crc32c == crc)
            #expect(header.value(of: 0xE0) == [0xAB])
            #expect(header.value(of: 0x04) == [0, 0])
            #expect(header.tlvs.map(\.type) == [0x01, 0x02, 0x05, 0x20, 0x30, 0x04, 0xE0, 0x03])
            let info = try #require(header.ssl)
            #expect(info.isTLS && info.verify == 0 && info.client == 0x07)
            #expect(info.version == "TLSv1.3" && info.commonName == "client.example" && info.cipher == "TLS_AES_128_GCM_SHA256")
        }
        // One bit off anywhere in the header fails the checksum.
        var corrupted = bytes
        corrupted[20] ^= 0x01
        #expect(kind(of: corrupted) == .badChecksum)
    }

    @Test("CRC32C matches RFC 3720's check value")
    func crcCheckValue() {
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32C.checksum($0) } == 0xE306_9283)
        #expect([UInt8](repeating: 0, count: 32).withUnsafeBytes { CRC32C.checksum($0) } == 0x8A91_36AA)
    }

    @Test("v2 refusals: signature, version, command, family, lengths, TLVs")
    func v2Refused() {
        var badSignature = proxyV2(family: 0x11, addresses: exampleIPv4Block)
        badSignature[6] = 0x0B
        #expect(kind(of: badSignature) == .malformed)
        #expect(kind(of: Array(badSignature.prefix(7))) == .malformed, "refused as soon as the signature breaks")
        var version1 = proxyV2(family: 0x11, addresses: exampleIPv4Block)
        version1[12] = 0x11
        #expect(kind(of: Array(version1.prefix(13))) == .malformed)
        #expect(kind(of: proxyV2(command: 2, family: 0x11, addresses: exampleIPv4Block)) == .malformed)
        for family: UInt8 in [0x01, 0x10, 0x13, 0x41, 0x23] {
            #expect(kind(of: Array(proxyV2(family: family, addresses: exampleIPv4Block).prefix(14))) == .malformed, "family \(family)")
        }
        #expect(kind(of: proxyV2(family: 0x11, addresses: Array(exampleIPv4Block.prefix(11)))) == .malformed, "address block short")
        #expect(kind(of: proxyV2(family: 0x11, addresses: exampleIPv4Block, tlvs: [0x01, 0x00])) == .malformed, "partial TLV")
        #expect(kind(of: proxyV2(family: 0x11, addresses: exampleIPv4Block, tlvs: [0x01, 0x00, 0x05, 1, 2])) == .malformed, "TLV past the end")
        #expect(kind(of: proxyV2(family: 0x11, addresses: exampleIPv4Block, tlvs: tlv(0x03, [0, 0]))) == .malformed, "CRC TLV not 4 bytes")
        #expect(kind(of: proxyV2(family: 0x11, addresses: exampleIPv4Block, tlvs: tlv(0x05, [UInt8](repeating: 1, count: 129)))) == .malformed)
        #expect(kind(of: proxyV2(family: 0x11, addresses: exampleIPv4Block, tlvs: tlv(0x20, [1, 0, 0]))) == .malformed, "SSL TLV short")
        // Length over the cap: refused from the 16 fixed bytes, before the rest arrives.
        let huge = ProxyHeaderParser.v2Signature + [0x21, 0x11, 0x10, 0x01]
        #expect(kind(of: huge) == .tooLong)
        var capped = ProxyHeaderParser(maxV2Length: 300)
        #expect(throws: ProxyHeaderError.self) {
            _ = try capped.parse(ProxyHeaderParser.v2Signature + [0x21, 0x11, 0x01, 0x1D])  // 16 + 285 = 301
        }
    }

    @Test("versions: a v1 listener refuses v2 and the other way round; anything else is refused at its first byte")
    func versions() {
        let v2 = proxyV2(family: 0x11, addresses: exampleIPv4Block)
        #expect(kind(of: Self.exampleLine, accepting: .v2) == .malformed)
        #expect(kind(of: v2, accepting: .v1) == .malformed)
        #expect(kind(of: Self.exampleLine, accepting: .v1) == nil)
        #expect(kind(of: v2, accepting: .v2) == nil)
        for first: UInt8 in [0x00, 0x16, UInt8(ascii: "G"), UInt8(ascii: "p"), 0xFF] {
            #expect(kind(of: [first]) == .malformed)
        }
        #expect(kind(of: Array("GET / HTTP/1.1\r\n".utf8)) == .malformed)
    }

    @Test("garbage: random bytes, whole or one at a time, never crash, never hold more than the limit")
    func garbage() {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<2000 {
            let count = Int.random(in: 1...300, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            // Start most of them like a header, so the parser gets past the first byte.
            switch round % 3 {
            case 0: bytes = Array("PROXY ".utf8) + bytes
            case 1: bytes = ProxyHeaderParser.v2Signature + [0x21] + bytes
            default: break
            }
            var parser = ProxyHeaderParser(maxV2Length: 232)
            for byte in bytes {
                guard (try? parser.parse([byte])) == .needMore else { break }
                #expect(parser.bufferedCount <= 232)
            }
        }
    }
}
