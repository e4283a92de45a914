/// A PROXY protocol header (haproxy's doc/proxy-protocol.txt, versions 1 and 2): what a
/// load balancer in front of the listener says about the connection it relays.
///
/// A listener with ``ListenerOptions/proxyProtocol`` on reads one from the start of every
/// connection before the handler exists; the handler finds it in
/// ``Connection/proxyInfo``. ``ProxyHeaderParser`` decodes one from bytes.
public struct ProxyHeader: Sendable, Equatable {
    /// The format the header came in.
    public enum Version: Sendable, Equatable {
        /// The text line: `PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n`.
        case v1
        /// The binary block with its 12-byte signature, which may carry TLVs.
        case v2
    }

    /// What the balancer did.
    public enum Command: Sendable, Equatable {
        /// Relayed a client's connection; ``ProxyHeader/source`` is the client when its
        /// family is one the reactor speaks (v1 `TCP4`/`TCP6`, v2 `PROXY`).
        case proxy
        /// Opened the connection on its own behalf, a health check say (v2 `LOCAL`): the
        /// addresses are the socket's own. v1 `UNKNOWN` is a ``proxy`` with family
        /// ``Family/unspecified``.
        case local
    }

    /// The relayed connection's address family.
    public enum Family: Sendable, Equatable {
        /// Not said (v2 `AF_UNSPEC`, v1 `UNKNOWN`): the socket's own addresses apply.
        case unspecified
        /// IPv4.
        case ipv4
        /// IPv6.
        case ipv6
        /// A Unix-domain socket: its 108-byte paths are skipped; the socket's own
        /// addresses apply.
        case unix
    }

    /// The relayed connection's transport.
    public enum Transport: Sendable, Equatable {
        /// Not said.
        case unspecified
        /// TCP (or a Unix stream socket).
        case stream
        /// UDP (or a Unix datagram socket).
        case datagram
    }

    /// One v2 type-length-value entry, as sent.
    public struct TLV: Sendable, Equatable {
        /// The type byte (``ProxyHeader/TLVType`` names the registered ones).
        public var type: UInt8
        /// The value bytes.
        public var value: [UInt8]

        /// An entry of `type` holding `value`.
        public init(type: UInt8, value: [UInt8]) {
            self.type = type
            self.value = value
        }
    }

    /// The registered v2 TLV types (section 2.2 of the specification).
    public enum TLVType {
        /// Application-Layer Protocol Negotiation: the upper-layer protocol, as in TLS ALPN.
        public static let alpn: UInt8 = 0x01
        /// The host name the client asked for (TLS SNI, UTF-8).
        public static let authority: UInt8 = 0x02
        /// CRC32C of the whole header with this field zeroed; checked by the parser.
        public static let crc32c: UInt8 = 0x03
        /// Padding, to be ignored.
        public static let noop: UInt8 = 0x04
        /// An opaque identifier of the connection, up to 128 bytes.
        public static let uniqueID: UInt8 = 0x05
        /// TLS details: client flags, verification result and sub-TLVs.
        public static let ssl: UInt8 = 0x20
        /// The network namespace's name (US-ASCII).
        public static let netns: UInt8 = 0x30
    }

    /// The `PP2_TYPE_SSL` value: whether and how the client spoke TLS to the balancer.
    public struct SSL: Sendable, Equatable {
        /// `PP2_CLIENT_SSL` (0x01), `PP2_CLIENT_CERT_CONN` (0x02), `PP2_CLIENT_CERT_SESS` (0x04).
        public var client: UInt8
        /// Zero when the client presented a certificate that was verified.
        public var verify: UInt32
        /// The sub-TLVs: version 0x21, CN 0x22, cipher 0x23, signature algorithm 0x24,
        /// key algorithm 0x25, group 0x26, signature scheme 0x27, client certificate 0x28.
        public var entries: [TLV]

        /// True when the client connected over TLS.
        public var isTLS: Bool { client & 0x01 != 0 }

        /// The US-ASCII TLS version (`PP2_SUBTYPE_SSL_VERSION`), if sent.
        public var version: String? { text(0x21) }
        /// The client certificate's common name (`PP2_SUBTYPE_SSL_CN`), if sent.
        public var commonName: String? { text(0x22) }
        /// The cipher's name (`PP2_SUBTYPE_SSL_CIPHER`), if sent.
        public var cipher: String? { text(0x23) }

        private func text(_ type: UInt8) -> String? {
            entries.first { $0.type == type }.map { String(decoding: $0.value, as: UTF8.self) }
        }
    }

    /// v1 or v2.
    public var version: Version
    /// PROXY or LOCAL.
    public var command: Command
    /// The relayed connection's family.
    public var family: Family
    /// The relayed connection's transport.
    public var transport: Transport
    /// The client's address and port, when the header gives one the reactor speaks
    /// (command ``Command/proxy``, family IPv4 or IPv6); nil otherwise.
    public var source: SocketAddress?
    /// The address and port the client connected to, on the balancer, under the same rule.
    public var destination: SocketAddress?
    /// Every v2 TLV in the order sent (the CRC32C one included, once checked); empty for v1.
    public var tlvs: [TLV]
    /// The header's length on the wire, in bytes.
    public var length: Int

    /// A header with these fields; the parser makes them, tests and senders may too.
    public init(
        version: Version, command: Command, family: Family, transport: Transport,
        source: SocketAddress? = nil, destination: SocketAddress? = nil, tlvs: [TLV] = [], length: Int
    ) {
        self.version = version
        self.command = command
        self.family = family
        self.transport = transport
        self.source = source
        self.destination = destination
        self.tlvs = tlvs
        self.length = length
    }

    /// The value of the first TLV of `type`, if sent.
    public func value(of type: UInt8) -> [UInt8]? {
        tlvs.first { $0.type == type }?.value
    }

    /// The ALPN bytes (`PP2_TYPE_ALPN`), if sent.
    public var alpn: [UInt8]? { value(of: TLVType.alpn) }

    /// The authority (`PP2_TYPE_AUTHORITY`, the TLS SNI host name), if sent as UTF-8.
    public var authority: String? {
        value(of: TLVType.authority).flatMap { String(validating: $0, as: UTF8.self) }
    }

    /// The unique connection id (`PP2_TYPE_UNIQUE_ID`), if sent.
    public var uniqueID: [UInt8]? { value(of: TLVType.uniqueID) }

    /// The CRC32C the sender put in (`PP2_TYPE_CRC32C`), already checked against the header.
    public var crc32c: UInt32? {
        guard let bytes = value(of: TLVType.crc32c), bytes.count == 4 else { return nil }
        return bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// The network namespace (`PP2_TYPE_NETNS`), if sent.
    public var netns: String? {
        value(of: TLVType.netns).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The TLS details (`PP2_TYPE_SSL`), if sent (the parser has checked their layout).
    public var ssl: SSL? {
        guard let bytes = value(of: TLVType.ssl), bytes.count >= 5,
            let entries = try? ProxyHeaderParser.tlvs(in: bytes[5...])
        else { return nil }
        let verify = bytes[1...4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return SSL(client: bytes[0], verify: verify, entries: entries)
    }
}

/// What a connection accepted behind a PROXY-protocol balancer knows about it
/// (``Connection/proxyInfo``).
public final class ProxyInfo: Sendable {
    /// The header the balancer sent.
    public let header: ProxyHeader
    /// The TCP peer of the accepted socket: the balancer (or whatever sent the header).
    public let balancer: SocketAddress

    init(header: ProxyHeader, balancer: SocketAddress) {
        self.header = header
        self.balancer = balancer
    }
}

/// Why a connection's PROXY header was refused. The listener aborts only that connection,
/// counts it by ``kind`` (``TCPListener/proxyCounters``) and logs it, at most once a second.
public struct ProxyHeaderError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of refusal.
    public enum Kind: Sendable, Equatable {
        /// Bytes that do not match the specification (or another version than allowed).
        case malformed
        /// Longer than the limit: 107 bytes for v1, ``ProxyProtocolOptions/maxV2Length`` for v2.
        case tooLong
        /// A v2 CRC32C TLV that does not match the header.
        case badChecksum
        /// The peer closed before the header was complete.
        case truncated
        /// The header was not complete within ``ProxyProtocolOptions/headerTimeout``.
        case timedOut
        /// The connection came from outside ``ProxyProtocolOptions/trustedSources``.
        case untrusted
    }

    /// The kind of refusal.
    public var kind: Kind
    /// What was wrong, for a person.
    public var detail: String

    /// An error of `kind` saying `detail`.
    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    /// `PROXY header: <detail>`.
    public var description: String { "PROXY header: \(detail)" }
}
