#if canImport(Glibc)
import Glibc
#endif

import ReactorCore
import ReactorFraming

/// The requests an echo client sends (see ``EchoCodec``), encoded once, in one allocation,
/// before the run: the steady state only copies them.
final class RequestSet {
    /// How many distinct requests the set holds.
    let count: Int
    /// Bytes of one encoded request (header, payload, trailer).
    let wireLength: Int
    /// Where the payload starts inside an encoded request.
    let payloadOffset: Int
    /// Payload bytes per request.
    let payloadLength: Int
    private let storage: UnsafeMutableRawBufferPointer

    /// Encodes `count` requests of `size` payload bytes each for `protocol`, with content
    /// drawn from `seed` (a different seed per client).
    init(protocol benchProtocol: BenchProtocol, size: Int, count: Int, seed: UInt64) {
        self.count = count
        payloadLength = size
        var header = [UInt8](repeating: 0, count: FramerLimits.maxHeaderLength)
        var headerLength = 0
        var trailer: [UInt8] = []
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: size)
        if let framer = benchProtocol.echoRequestFramer {
            // Header and trailer depend only on the length, so one sample encodes all.
            headerLength = header.withUnsafeMutableBytes { header in
                payload.withUnsafeBytes { body in
                    (try? framer.encodeHeader(for: RawSpan(_unsafeBytes: body), into: header)) ?? 0
                }
            }
            trailer = framer.trailer
        }
        payloadOffset = headerLength
        wireLength = headerLength + size + trailer.count
        storage = .allocate(byteCount: Swift.max(wireLength * count, 1), alignment: 8)
        var random = SplitMix64(seed: seed)
        for index in 0..<count {
            let base = index * wireLength
            for offset in 0..<headerLength { storage[base + offset] = header[offset] }
            for offset in 0..<size {
                storage[base + headerLength + offset] = RequestSet.alphabet[Int(random.next() % UInt64(RequestSet.alphabet.count))]
            }
            for (offset, byte) in trailer.enumerated() { storage[base + headerLength + size + offset] = byte }
        }
    }

    deinit {
        storage.deallocate()
    }

    private static let alphabet = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_".utf8)

    /// The whole encoded request `index`.
    @inline(__always)
    func wire(_ index: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage[(index * wireLength)..<((index + 1) * wireLength)])
    }
}

/// A small, fast, seedable generator (Steele, Lea and Flood's SplitMix64): request
/// content differs per client and per run seed, and is reproducible.
struct SplitMix64 {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z &>> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z &>> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z &>> 31)
    }
}
