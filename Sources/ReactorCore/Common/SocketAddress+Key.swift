extension SocketAddress {
    /// The IP address without the port as two 64-bit words, the high one first: an IPv6
    /// address as is, an IPv4 address in its IPv4-mapped IPv6 form (`::ffff:a.b.c.d`).
    ///
    /// For keying tables by host (a per-source rate limit, for example) on a per-datagram
    /// path: unlike ``ip`` it formats no text and allocates nothing.
    package var ipKey: (high: UInt64, low: UInt64) {
        switch storage {
        case .v4(let address):
            (0, 0xFFFF_0000_0000 | UInt64(UInt32(bigEndian: address.sin_addr.s_addr)))
        case .v6(let address):
            withUnsafeBytes(of: address.sin6_addr) { bytes in
                (UInt64(bigEndian: bytes.loadUnaligned(as: UInt64.self)),
                 UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
            }
        }
    }
}
