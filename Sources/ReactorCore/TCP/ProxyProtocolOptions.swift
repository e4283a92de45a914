/// Which PROXY protocol versions a listener takes.
public enum ProxyProtocolVersions: String, Sendable, Equatable, CaseIterable {
    /// The text line only.
    case v1
    /// The binary header only.
    case v2
    /// Either, told apart by the first byte (`P` or the v2 signature's CR). The header is
    /// still required: nothing guesses whether one is there.
    case any
}

/// A listener's PROXY protocol settings (``ListenerOptions/proxyProtocol``): every
/// connection must start with a valid header, read before its handler is made.
public struct ProxyProtocolOptions: Sendable, Equatable {
    /// The default cap on a v2 header: room for addresses and a few TLVs, an SSL one with
    /// its strings included; a client certificate passed along needs more.
    public static let defaultMaxV2Length = 4096

    /// The versions taken (default ``ProxyProtocolVersions/any``).
    public var versions: ProxyProtocolVersions
    /// Networks a header may come from; a connection from elsewhere is aborted before a
    /// byte is read (default nil: any source). The specification asks receivers to take
    /// headers from known balancers only, or anyone could claim any address.
    public var trustedSources: [IPNetwork]?
    /// The whole header must arrive within this long after accept (default 3 s, the
    /// specification's floor: one TCP retransmission).
    public var headerTimeout: Duration = .seconds(3)
    /// The largest v2 header taken, its 16 fixed bytes included (default 4096; at most
    /// 65,551, at least 232 so that a Unix-socket header fits).
    public var maxV2Length: Int = ProxyProtocolOptions.defaultMaxV2Length

    /// `versions` from any source, with the default timeout and cap.
    public init(_ versions: ProxyProtocolVersions = .any, trustedSources: [IPNetwork]? = nil) {
        self.versions = versions
        self.trustedSources = trustedSources
    }

    /// Checks the timeout, the cap and the trusted list.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/invalidOption``.
    public func validate() throws(ReactorError) {
        guard headerTimeout > .zero else {
            throw .invalidOption("proxyProtocol.headerTimeout", value: headerTimeout, hint: "it must be positive")
        }
        guard (232...(16 + 0xFFFF)).contains(maxV2Length) else {
            throw .invalidOption("proxyProtocol.maxV2Length", value: maxV2Length, hint: "it must be from 232 to 65551")
        }
        if let trustedSources, trustedSources.isEmpty {
            throw .invalidOption(
                "proxyProtocol.trustedSources", value: "[]", hint: "an empty list trusts nobody: give networks, or nil for any source")
        }
    }
}

/// An IPv4 or IPv6 network: an address and a prefix length, `10.0.0.0/8` or `fd00::/8`.
/// A bare address is one host (/32, /128). IPv4 networks also match IPv4-mapped IPv6
/// peers (`::ffff:10.1.2.3`), which a dual-stack listener reports.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    /// The network's first address (the host bits cleared).
    public let address: SocketAddress
    /// The prefix length: 0...32 for IPv4, 0...128 for IPv6.
    public let prefixLength: Int
    private let key: (high: UInt64, low: UInt64)
    private let keyBits: Int

    /// Parses `ADDRESS[/PREFIX]`.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/invalidAddress`` when the
    ///   address is not numeric or the prefix is out of range.
    public init(_ text: String) throws(ReactorError) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let parsed = try SocketAddress(ip: String(parts[0]), port: 0)
        let maxLength = parsed.family == .ipv4 ? 32 : 128
        var length = maxLength
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...maxLength).contains(value) else {
                throw ReactorError(
                    .invalidAddress, operation: .resolve, host: text,
                    hint: "a network is ADDRESS/PREFIX with a prefix from 0 to \(maxLength)")
            }
            length = value
        }
        prefixLength = length
        keyBits = parsed.family == .ipv4 ? 96 + length : length
        key = IPNetwork.masked(parsed.ipKey, bits: keyBits)
        var first = [UInt8](repeating: 0, count: 16)
        for index in 0..<8 {
            first[index] = UInt8(truncatingIfNeeded: key.high >> (56 - 8 * UInt64(index)))
            first[8 + index] = UInt8(truncatingIfNeeded: key.low >> (56 - 8 * UInt64(index)))
        }
        address = first.withUnsafeBytes { bytes in
            parsed.family == .ipv4
                ? SocketAddress(ipv4: UnsafeRawBufferPointer(rebasing: bytes[12...]), port: 0)
                : SocketAddress(ipv6: bytes, port: 0)
        }
    }

    /// Parses a comma-separated list (`10.0.0.0/8,192.168.1.10`).
    ///
    /// - Throws: ``ReactorError`` naming the first entry that does not parse.
    public static func list(_ text: String) throws(ReactorError) -> [IPNetwork] {
        var networks: [IPNetwork] = []
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            networks.append(try IPNetwork(entry.trimmingWhitespace()))
        }
        return networks
    }

    /// True when `peer`'s address (its port aside) is in the network.
    public func contains(_ peer: SocketAddress) -> Bool {
        let masked = IPNetwork.masked(peer.ipKey, bits: keyBits)
        return masked.high == key.high && masked.low == key.low
    }

    /// `10.0.0.0/8`, `fd00::/8`.
    public var description: String { "\(address.ip)/\(prefixLength)" }

    public static func == (lhs: IPNetwork, rhs: IPNetwork) -> Bool {
        lhs.keyBits == rhs.keyBits && lhs.key == rhs.key
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(keyBits)
        hasher.combine(key.high)
        hasher.combine(key.low)
    }

    private static func masked(_ key: (high: UInt64, low: UInt64), bits: Int) -> (high: UInt64, low: UInt64) {
        let highMask: UInt64 = bits >= 64 ? ~0 : bits == 0 ? 0 : ~0 << UInt64(64 - bits)
        let lowMask: UInt64 = bits >= 128 ? ~0 : bits <= 64 ? 0 : ~0 << UInt64(128 - bits)
        return (key.high & highMask, key.low & lowMask)
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
