// Deterministic test data: a pseudo-random byte pattern, seeded randomness, chargen's
// lines, scratch files, and expectations on streams that carried them.

import Foundation
import ReactorCore
import Testing

/// A deterministic pseudo-random byte stream: byte `i` of stream `seed`.
@inline(__always)
public func patternByte(_ index: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> UInt8 {
    var z = (UInt64(index >> 3) &+ seed) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    return UInt8(truncatingIfNeeded: z >> ((UInt64(index) & 7) * 8))
}

/// `count` bytes of the pattern starting at `offset`: ``patternByte(_:seed:)`` for each,
/// with one hash per 8 bytes, so that megabytes of it are quick to make even in a
/// sanitizer build.
public func pattern(count: Int, offset: Int = 0, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        var index = 0
        while index < count {
            let position = offset + index
            var z = (UInt64(position >> 3) &+ seed) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            var byte = position & 7
            while byte < 8, index < count {
                buffer[index] = UInt8(truncatingIfNeeded: z >> (UInt64(byte) * 8))
                byte += 1
                index += 1
            }
        }
        initialized = count
    }
}

/// The index of the first byte where `bytes` differs from the pattern, or nil.
public func firstPatternMismatch(_ bytes: [UInt8], offset: Int = 0, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> Int? {
    let expected = pattern(count: bytes.count, offset: offset, seed: seed)
    return bytes == expected ? nil : bytes.indices.first { bytes[$0] != expected[$0] }
}

// MARK: - Expectations

/// Expects a stream (as ``TestClient/receiveUntilEnd(timeout:)`` returns it) to have
/// carried exactly `text`, then end of file.
public func expectText(_ received: (bytes: [UInt8], end: StreamEnd), _ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(String(decoding: received.bytes, as: UTF8.self) == text, sourceLocation: sourceLocation)
    #expect(received.end == .endOfFile, sourceLocation: sourceLocation)
}

/// Expects a stream to have carried the first `count` bytes of the pattern, then end of file.
public func expectPattern(_ received: (bytes: [UInt8], end: StreamEnd), count: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(received.end == .endOfFile, sourceLocation: sourceLocation)
    #expect(received.bytes.count == count, sourceLocation: sourceLocation)
    #expect(firstPatternMismatch(received.bytes) == nil, sourceLocation: sourceLocation)
}

// MARK: - Seeded randomness

/// SplitMix64: small, fast, and the same sequence for the same seed on every run.
public struct SeededRandom: RandomNumberGenerator {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

// MARK: - Service data and files

/// The RFC 864 line `index` (0-based) as chargen sends it.
public func chargenLine(_ index: Int) -> [UInt8] {
    (0..<72).map { UInt8(0x20 + (index + $0) % 95) } + [13, 10]
}

/// Writes `text` to a new file in a scratch folder; returns its path.
public func temporaryFile(_ text: String, name: String = "quotes.txt") throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("reactor-services-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    let path = folder.appendingPathComponent(name).path
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}
