import Glibc

/// An IPv4 or IPv6 address and port.
///
/// `SocketAddress(ip:port:)` takes numeric addresses only, so it never blocks;
/// ``resolve(host:port:)`` also accepts host names, through the system resolver, which
/// blocks: call it before starting the reactor, not inside its callbacks.
public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    /// The address family.
    public enum Family: Sendable, Hashable {
        /// IPv4 (`AF_INET`).
        case ipv4
        /// IPv6 (`AF_INET6`).
        case ipv6
    }

    @usableFromInline
    enum Storage: Sendable {
        case v4(sockaddr_in)
        case v6(sockaddr_in6)
    }

    @usableFromInline
    let storage: Storage

    /// Parses a numeric IPv4 (`127.0.0.1`) or IPv6 (`::1`, optionally in brackets) address.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/invalidAddress`` when `ip`
    ///   is not a numeric address or `port` is outside 0...65535.
    public init(ip: String, port: Int) throws(ReactorError) {
        guard (0...65535).contains(port) else {
            throw ReactorError(
                .invalidAddress, operation: .resolve, host: "\(ip):\(port)",
                hint: "a port is a number from 0 to 65535")
        }
        var text = ip
        let bracketed = text.hasPrefix("[") && text.hasSuffix("]")
        if bracketed { text = String(text.dropFirst().dropLast()) }
        var v4 = sockaddr_in()
        if !bracketed, inet_pton(AF_INET, text, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = in_port_t(UInt16(port).bigEndian)
            storage = .v4(v4)
            return
        }
        var v6 = sockaddr_in6()
        if inet_pton(AF_INET6, text, &v6.sin6_addr) == 1 {
            v6.sin6_family = sa_family_t(AF_INET6)
            v6.sin6_port = in_port_t(UInt16(port).bigEndian)
            storage = .v6(v6)
            return
        }
        throw ReactorError(
            .invalidAddress, operation: .resolve, host: ip,
            hint: "expected a numeric IPv4 or IPv6 address such as 127.0.0.1 or ::1")
    }

    /// Resolves a host name or numeric address (blocking), IPv4 results first.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/invalidAddress`` when the
    ///   name does not resolve.
    public static func resolve(host: String, port: Int) throws(ReactorError) -> [SocketAddress] {
        guard (0...65535).contains(port) else {
            throw ReactorError(
                .invalidAddress, operation: .resolve, host: "\(host):\(port)",
                hint: "a port is a number from 0 to 65535")
        }
        if let numeric = try? SocketAddress(ip: host, port: port) { return [numeric] }
        var hints = addrinfo()
        hints.ai_socktype = SocketType.stream.rawValue
        hints.ai_flags = AI_ADDRCONFIG
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &list)
        guard status == 0, let first = list else {
            let reason = status == 0 ? "no addresses" : String(cString: gai_strerror(status))
            throw ReactorError(
                .invalidAddress, operation: .resolve, host: host,
                hint: "cannot resolve host: \(reason.lowercased())")
        }
        defer { freeaddrinfo(list) }
        var results: [SocketAddress] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            if let address = current.pointee.ai_addr, let parsed = SocketAddress(address) {
                if !results.contains(parsed) { results.append(parsed) }
            }
            entry = current.pointee.ai_next
        }
        guard !results.isEmpty else {
            throw ReactorError(.invalidAddress, operation: .resolve, host: host, hint: "no IPv4 or IPv6 address")
        }
        return results.filter { $0.family == .ipv4 } + results.filter { $0.family == .ipv6 }
    }

    /// Reads a `sockaddr` filled in by the kernel; nil for families other than IPv4 and IPv6.
    init?(_ address: UnsafePointer<sockaddr>) {
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            storage = .v4(UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in.self))
        case AF_INET6:
            storage = .v6(UnsafeRawPointer(address).loadUnaligned(as: sockaddr_in6.self))
        default:
            return nil
        }
    }

    /// The address family.
    public var family: Family {
        switch storage {
        case .v4: .ipv4
        case .v6: .ipv6
        }
    }

    /// The port, in host byte order.
    // Inlinable: the UDP services' reply guard reads it per datagram, from another module.
    @inlinable
    public var port: Int {
        switch storage {
        case .v4(let address): Int(UInt16(bigEndian: address.sin_port))
        case .v6(let address): Int(UInt16(bigEndian: address.sin6_port))
        }
    }

    /// The numeric address without the port: `127.0.0.1` or `::1`.
    public var ip: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch storage {
        case .v4(var address):
            inet_ntop(AF_INET, &address.sin_addr, &text, socklen_t(text.count))
        case .v6(var address):
            inet_ntop(AF_INET6, &address.sin6_addr, &text, socklen_t(text.count))
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `127.0.0.1:7007` or `[::1]:7007`.
    public var description: String {
        switch storage {
        case .v4: "\(ip):\(port)"
        case .v6: "[\(ip)]:\(port)"
        }
    }

    /// The same address with another port.
    public func withPort(_ port: Int) -> SocketAddress {
        switch storage {
        case .v4(var address):
            address.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
            return SocketAddress(storage: .v4(address))
        case .v6(var address):
            address.sin6_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
            return SocketAddress(storage: .v6(address))
        }
    }

    private init(storage: Storage) { self.storage = storage }

    /// An IPv4 address from its four bytes in network order, as a PROXY v2 header carries it.
    init(ipv4 bytes: UnsafeRawBufferPointer, port: UInt16) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(port.bigEndian)
        withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix(4))) }
        storage = .v4(address)
    }

    /// An IPv6 address from its sixteen bytes in network order, as a PROXY v2 header carries it.
    init(ipv6 bytes: UnsafeRawBufferPointer, port: UInt16) {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = in_port_t(port.bigEndian)
        withUnsafeMutableBytes(of: &address.sin6_addr) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.prefix(16))) }
        storage = .v6(address)
    }

    var domain: Int32 {
        switch storage {
        case .v4: AF_INET
        case .v6: AF_INET6
        }
    }

    func withSockAddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        switch storage {
        case .v4(var address):
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .v6(var address):
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
            }
        }
    }

    /// The address a socket is bound to (getsockname) or connected to (getpeername).
    static func of(fd: Int32, peer: Bool) -> SocketAddress? {
        let (status, address) = filled { peer ? getpeername(fd, $0, $1) : getsockname(fd, $0, $1) }
        return status == 0 ? address : nil
    }

    /// Runs a system call that writes an address (accept, getsockname, getpeername) into
    /// room for any family; returns its result and the address it wrote, if IPv4 or IPv6.
    static func filled(
        by call: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
    ) -> (result: Int32, address: SocketAddress?) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call($0, &length) }
        }
        guard result >= 0 else { return (result, nil) }
        let address = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { SocketAddress($0) }
        }
        return (result, address)
    }

    /// Same family, port and address bytes. Compared as numbers, without formatting text:
    /// addresses key tables on per-datagram paths. Fields the kernel may fill in beside the
    /// endpoint (an IPv6 flow label and scope, padding) are left out, as the text form
    /// leaves them out.
    public static func == (lhs: SocketAddress, rhs: SocketAddress) -> Bool {
        switch (lhs.storage, rhs.storage) {
        case (.v4(let a), .v4(let b)):
            a.sin_port == b.sin_port && a.sin_addr.s_addr == b.sin_addr.s_addr
        case (.v6(let a), .v6(let b)):
            a.sin6_port == b.sin6_port && lhs.ipKey == rhs.ipKey
        default:
            false
        }
    }

    public func hash(into hasher: inout Hasher) {
        let key = ipKey
        hasher.combine(key.high)
        hasher.combine(key.low)
        hasher.combine(port)
        hasher.combine(family)
    }
}
