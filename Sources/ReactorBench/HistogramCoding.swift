import CZlib
import Foundation
import Histogram

/// HdrHistogram's compressed V2 encoding (the `HISTF...` base64 text of interval logs),
/// written and read here so that runs can carry their whole histogram in their JSON and
/// `reactor bench merge` can add them exactly, and so that HdrHistogram's own readers
/// (Java, Python's `hdrhistogram`, Go, Rust) decode our `--histogram-log`.
///
/// Layout, big-endian: a cookie and the length of what follows, then a zlib stream of a
/// 40-byte header (cookie, payload length, normalizing offset, significant digits, lowest
/// and highest trackable value, conversion ratio) and the counts array as ZigZag LEB128
/// varints, where a run of zero counts is one negative number.
public enum HistogramCoding {
    static let encodingCookie: UInt32 = 0x1c84_9303 | 0x10
    static let compressedCookie: UInt32 = 0x1c84_9304 | 0x10

    /// `histogram` encoded and compressed, as base64 text. `divisor` scales every value
    /// down first (1000: nanoseconds to the microseconds of a histogram log); the result
    /// then tracks up to `highestTrackable / divisor`.
    public static func encode(_ histogram: Histogram<UInt64>, divisor: UInt64 = 1) -> String {
        let highest = Swift.max(histogram.highestTrackableValue / divisor, 2)
        let layout = Layout(lowest: 1, highest: highest, digits: 3)
        var counts: [Int: UInt64] = [:]
        var largestIndex = -1
        for bucket in histogram.recordedValues() {
            let value = divisor == 1 ? bucket.value : (bucket.value + divisor / 2) / divisor
            let index = layout.index(of: Swift.min(value, highest))
            counts[index, default: 0] += UInt64(bucket.count)
            largestIndex = Swift.max(largestIndex, index)
        }
        var payload = [UInt8]()
        payload.reserveCapacity(40 + 4 * counts.count)
        append(encodingCookie, to: &payload)
        append(UInt32(0), to: &payload)  // the payload length, filled in below
        append(UInt32(0), to: &payload)  // normalizing index offset
        append(UInt32(layout.digits), to: &payload)
        append(layout.lowest, to: &payload)
        append(layout.highest, to: &payload)
        append((1.0 as Double).bitPattern, to: &payload)
        var index = 0
        while index <= largestIndex {
            let count = counts[index] ?? 0
            if count == 0 {
                var zeros = 1
                while index + zeros <= largestIndex, (counts[index + zeros] ?? 0) == 0 { zeros += 1 }
                appendZigZag(zeros > 1 ? -Int64(zeros) : 0, to: &payload)
                index += zeros
            } else {
                appendZigZag(Int64(count), to: &payload)
                index += 1
            }
        }
        let length = UInt32(payload.count - 40)
        payload.replaceSubrange(4..<8, with: bytes(of: length))

        var compressed = [UInt8](repeating: 0, count: Int(compressBound(uLong(payload.count))))
        var compressedLength = uLongf(compressed.count)
        let status = payload.withUnsafeBufferPointer { input in
            compressed.withUnsafeMutableBufferPointer { output in
                compress2(output.baseAddress, &compressedLength, input.baseAddress, uLong(input.count), Z_DEFAULT_COMPRESSION)
            }
        }
        precondition(status == Z_OK, "zlib deflate failed (\(status)) with room for its bound")
        var out = [UInt8]()
        append(compressedCookie, to: &out)
        append(UInt32(compressedLength), to: &out)
        out += compressed[0..<Int(compressedLength)]
        return Data(out).base64EncodedString()
    }

    /// Decodes what ``encode(_:divisor:)`` (or any HdrHistogram V2 compressed encoder)
    /// wrote, into a histogram with the encoded range; throws with a reason when the text
    /// is not one.
    ///
    /// The encoding keeps counts per bucket, not the exact smallest and largest values,
    /// which percentiles are clamped to: given them (`exactMin`, `exactMax`), the first
    /// and last buckets are recorded at them, and the decoded histogram reports exactly
    /// what the encoded one did.
    public static func decode(_ text: String, exactMin: UInt64? = nil, exactMax: UInt64? = nil) throws(BenchError) -> Histogram<UInt64> {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), data.count >= 8 else {
            throw BenchError("not a base64 HdrHistogram encoding")
        }
        let bytes = [UInt8](data)
        guard readUInt32(bytes, 0) == compressedCookie else { throw BenchError("not a compressed V2 HdrHistogram (cookie)") }
        let compressedLength = Int(readUInt32(bytes, 4))
        guard compressedLength == bytes.count - 8 else { throw BenchError("truncated HdrHistogram encoding") }
        // The header is inflated first to learn the counts array's size, which bounds the
        // whole payload (at most 9 bytes a count).
        var header = [UInt8](repeating: 0, count: 40)
        var payload = try inflate(bytes[8...], room: 40, partialOK: true, into: &header)
        guard payload.count == 40, readUInt32(payload, 0) == encodingCookie else {
            throw BenchError("not a V2 HdrHistogram payload")
        }
        let payloadLength = Int(readUInt32(payload, 4))
        let digits = Int(readUInt32(payload, 12))
        let lowest = readUInt64(payload, 16)
        let highest = readUInt64(payload, 24)
        guard (1...5).contains(digits), lowest >= 1, highest >= 2 * lowest,
              let significant = SignificantDigits(rawValue: Int8(digits)) else {
            throw BenchError("HdrHistogram header out of range (digits \(digits), range \(lowest)...\(highest))")
        }
        let layout = Layout(lowest: lowest, highest: highest, digits: digits)
        guard payloadLength <= 9 * layout.countsLength else { throw BenchError("HdrHistogram payload longer than its counts") }
        payload = [UInt8](repeating: 0, count: 40 + payloadLength)
        payload = try inflate(bytes[8...], room: payload.count, partialOK: false, into: &payload)
        guard payload.count == 40 + payloadLength else { throw BenchError("HdrHistogram payload shorter than its header says") }

        var histogram = Histogram<UInt64>(
            lowestDiscernibleValue: lowest, highestTrackableValue: highest, numberOfSignificantValueDigits: significant)
        guard readUInt32(payload, 8) == 0 else { throw BenchError("HdrHistogram with a normalizing index offset (not supported)") }
        var buckets: [(index: Int, count: UInt64)] = []
        var position = 40
        var index = 0
        while position < payload.count {
            let count = try readZigZag(payload, &position)
            if count < 0 {
                index += Int(-count)
            } else {
                guard index < layout.countsLength else { throw BenchError("HdrHistogram counts past its range") }
                if count > 0 { buckets.append((index, UInt64(count))) }
                index += 1
            }
        }
        for (position, bucket) in buckets.enumerated() {
            var value = layout.value(at: bucket.index)
            var count = bucket.count
            if position == 0, let exactMin, layout.index(of: exactMin) == bucket.index {
                _ = histogram.record(exactMin, count: 1)
                count -= 1
                value = exactMin
            }
            if position == buckets.count - 1, let exactMax, layout.index(of: exactMax) == bucket.index {
                value = exactMax
            }
            if count > 0 { _ = histogram.record(value, count: count) }
        }
        return histogram
    }

    /// A histogram as a run's JSON carries it: the encoding, and the exact smallest and
    /// largest values it lost.
    static func jsonObject(_ histogram: Histogram<UInt64>) -> [(String, Any?)] {
        [("encoded", encode(histogram)), ("min", Int(histogram.min)), ("max", Int(histogram.maxRecorded))]
    }

    /// Reads what ``jsonObject(_:)`` wrote.
    static func decode(jsonObject object: Any?) throws(BenchError) -> Histogram<UInt64>? {
        guard let object = object as? [String: Any] else { return nil }
        guard let encoded = object["encoded"] as? String else { throw BenchError("a histogram without its encoding") }
        return try decode(encoded, exactMin: (object["min"] as? Int).map(UInt64.init), exactMax: (object["max"] as? Int).map(UInt64.init))
    }

    private static func inflate(
        _ input: ArraySlice<UInt8>, room: Int, partialOK: Bool, into buffer: inout [UInt8]
    ) throws(BenchError) -> [UInt8] {
        var length = uLongf(room)
        let status = input.withUnsafeBufferPointer { source in
            buffer.withUnsafeMutableBufferPointer { target in
                uncompress(target.baseAddress, &length, source.baseAddress, uLong(source.count))
            }
        }
        // Z_BUF_ERROR: the room was filled before the end, which is all a header read wants.
        guard status == Z_OK || (partialOK && status == Z_BUF_ERROR) else {
            throw BenchError("HdrHistogram payload does not inflate (zlib \(status))")
        }
        return Array(buffer[0..<Int(length)])
    }

    /// HdrHistogram's counts array layout for a range and precision: which index a value
    /// counts in, and the value an index stands for, exactly as every implementation
    /// computes them (so that an encoding is read back into the same buckets).
    struct Layout {
        let lowest: UInt64
        let highest: UInt64
        let digits: Int
        let unitMagnitude: Int
        let subBucketHalfCountMagnitude: Int
        let subBucketHalfCount: Int
        let subBucketMask: UInt64
        let leadingZeroCountBase: Int
        let countsLength: Int

        init(lowest: UInt64, highest: UInt64, digits: Int) {
            self.lowest = lowest
            self.highest = highest
            self.digits = digits
            let largestSingleUnit = 2 * UInt64(Foundation.pow(10.0, Double(digits)))
            unitMagnitude = 63 - lowest.leadingZeroBitCount
            let subBucketCountMagnitude = Int(Foundation.ceil(Foundation.log2(Double(largestSingleUnit))))
            subBucketHalfCountMagnitude = Swift.max(subBucketCountMagnitude, 1) - 1
            let subBucketCount = 1 << subBucketCountMagnitude
            subBucketHalfCount = subBucketCount / 2
            subBucketMask = UInt64(subBucketCount - 1) << UInt64(unitMagnitude)
            leadingZeroCountBase = 64 - unitMagnitude - subBucketCountMagnitude
            var smallestUntrackable = UInt64(subBucketCount) << UInt64(unitMagnitude)
            var buckets = 1
            while smallestUntrackable <= highest {
                if smallestUntrackable > UInt64(Int64.max) / 2 {
                    buckets += 1
                    break
                }
                smallestUntrackable <<= 1
                buckets += 1
            }
            countsLength = (buckets + 1) * subBucketHalfCount
        }

        func index(of value: UInt64) -> Int {
            let bucket = leadingZeroCountBase - (value | subBucketMask).leadingZeroBitCount
            let subBucket = Int(value >> UInt64(bucket + unitMagnitude))
            return ((bucket + 1) << subBucketHalfCountMagnitude) + subBucket - subBucketHalfCount
        }

        func value(at index: Int) -> UInt64 {
            var bucket = (index >> subBucketHalfCountMagnitude) - 1
            var subBucket = (index & (subBucketHalfCount - 1)) + subBucketHalfCount
            if bucket < 0 {
                subBucket -= subBucketHalfCount
                bucket = 0
            }
            return UInt64(subBucket) << UInt64(bucket + unitMagnitude)
        }
    }

    // MARK: - Bytes

    private static func bytes<T: FixedWidthInteger>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        out += bytes(of: value)
    }

    private static func appendZigZag(_ value: Int64, to out: inout [UInt8]) {
        var bits = UInt64(bitPattern: (value << 1) ^ (value >> 63))
        // LEB128, except that a ninth byte carries 8 bits (HdrHistogram's variant).
        for _ in 0..<8 {
            if bits < 0x80 {
                out.append(UInt8(bits))
                return
            }
            out.append(UInt8(bits & 0x7f) | 0x80)
            bits >>= 7
        }
        out.append(UInt8(truncatingIfNeeded: bits))
    }

    private static func readZigZag(_ bytes: [UInt8], _ position: inout Int) throws(BenchError) -> Int64 {
        var bits: UInt64 = 0
        var shift: UInt64 = 0
        for byteIndex in 0..<9 {
            guard position < bytes.count else { throw BenchError("HdrHistogram counts end inside a number") }
            let byte = bytes[position]
            position += 1
            if byteIndex == 8 {
                bits |= UInt64(byte) << shift
                break
            }
            bits |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        return Int64(bitPattern: bits >> 1) ^ -Int64(bitPattern: bits & 1)
    }

    private static func readUInt32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
        bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }

    private static func readUInt64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        bytes[offset..<offset + 8].reduce(0) { $0 << 8 | UInt64($1) }
    }
}
