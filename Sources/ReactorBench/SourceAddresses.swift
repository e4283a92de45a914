import Foundation
import ReactorCore

extension BenchOptions {
    /// The most addresses `--source` may name.
    public static let maxSourceAddresses = 65_536

    /// Parses `--source`: numeric addresses and inclusive IPv4 ranges, separated by commas
    /// (`127.0.0.2-127.0.0.101`, `10.0.0.5,10.0.0.6`, `::1`), all of one family. Each is a
    /// local address the connections bind to, with the port left to the kernel.
    public static func parseSourceAddresses(_ text: String) throws(BenchError) -> [SocketAddress] {
        var addresses: [SocketAddress] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let item = item.trimmingCharacters(in: .whitespaces)
            guard !item.isEmpty else { throw BenchError("--source has an empty item in '\(text)'") }
            let bounds = item.split(separator: "-", maxSplits: 1).map(String.init)
            if bounds.count == 2 {
                guard let low = ipv4Number(bounds[0]), let high = ipv4Number(bounds[1]) else {
                    throw BenchError("--source range '\(item)' must be two IPv4 addresses, such as 127.0.0.2-127.0.0.101")
                }
                guard low <= high else { throw BenchError("--source range '\(item)' ends before it starts") }
                guard Int(high - low) < maxSourceAddresses - addresses.count else {
                    throw BenchError("--source names more than \(maxSourceAddresses) addresses")
                }
                for number in low...high { addresses.append(try address(ipv4Text(number))) }
            } else {
                guard addresses.count < maxSourceAddresses else {
                    throw BenchError("--source names more than \(maxSourceAddresses) addresses")
                }
                addresses.append(try address(item))
            }
        }
        try checkOneFamily(addresses)
        return addresses
    }

    /// Source addresses must share a family (the target's, checked once it is resolved).
    static func checkOneFamily(_ addresses: [SocketAddress]) throws(BenchError) {
        if let family = addresses.first?.family, addresses.contains(where: { $0.family != family }) {
            throw BenchError("--source mixes IPv4 and IPv6 addresses: use one family, the target's")
        }
    }

    private static func address(_ ip: String) throws(BenchError) -> SocketAddress {
        do {
            return try SocketAddress(ip: ip, port: 0)
        } catch {
            throw BenchError("--source '\(ip)' is not a numeric IPv4 or IPv6 address")
        }
    }

    private static func ipv4Number(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var number: UInt32 = 0
        for part in parts {
            guard part.count <= 3, let byte = UInt8(part) else { return nil }
            number = number << 8 | UInt32(byte)
        }
        return number
    }

    private static func ipv4Text(_ number: UInt32) -> String {
        "\(number >> 24).\(number >> 16 & 0xFF).\(number >> 8 & 0xFF).\(number & 0xFF)"
    }
}
