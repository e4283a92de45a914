import Histogram
import Testing

@testable import ReactorBench

extension BenchTests {
    /// The pieces a request is written with, against their plain definitions: decimal
    /// digits, small copies, value bytes, and the ring the requests wait in.
    @Suite struct EncodingTests {
        /// Writes into a fresh buffer of `room` bytes and returns what `body` wrote.
        private func written(room: Int = 64, _ body: (inout BenchRequestBuffer) -> Void) -> [UInt8] {
            let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: room, alignment: 8)
            defer { storage.deallocate() }
            var buffer = BenchRequestBuffer(storage: storage)
            body(&buffer)
            return Array(storage[..<buffer.count])
        }

        @Test func decimalsMatchTheirDescription() {
            var values: [Int] = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 12_345, 99_999, 100_000, -1, -10, -12_345, .max, .min + 1]
            var power = 1
            for _ in 0..<18 {
                power *= 10
                values += [power - 1, power, power + 1]
            }
            for value in values {
                #expect(written { $0.appendDecimal(value) } == Array(String(value).utf8), "\(value)")
                #expect(BenchRequestBuffer.decimalDigits(value.magnitude) == String(value.magnitude).utf8.count, "\(value)")
            }
            for value: UInt in [.max, 10_000_000_000_000_000_000, 9_999_999_999_999_999_999] {
                let digits = BenchRequestBuffer.decimalDigits(value)
                #expect(digits == String(value).utf8.count, "\(value)")
                #expect(written { $0.appendDecimal(value, digits: digits) } == Array(String(value).utf8), "\(value)")
            }
        }

        /// The per-request latency counts, added to a histogram, leave it as the
        /// histogram's own record would: every count, the total, the exact minimum and
        /// maximum, over values in every bucket, 0 and the highest trackable, across
        /// several additions.
        @Test func latencyCountsAddUpToTheHistogramsOwnRecord() {
            let highest = LatencyRecorder(highestTrackable: 80_000_000_000).highestTrackable
            var direct = LatencyRecorder(highestTrackable: highest).corrected
            var viaCounts = direct
            var counts = LatencyCounts(highestTrackable: highest)
            defer { counts.deallocate() }
            var generator = SplitMix64(seed: 11)
            var values: [UInt64] = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, highest - 1, highest]
            for _ in 0..<20_000 {
                // Spread over the magnitudes: a random number of bits, then random bits.
                let bits = generator.next() % 37
                values.append(generator.next() & ((1 << bits) - 1))
            }
            for (offset, value) in values.enumerated() {
                direct.record(value)
                counts.record(value)
                if offset % 5_000 == 4_999 { counts.add(to: &viaCounts) }
            }
            counts.add(to: &viaCounts)
            counts.add(to: &viaCounts)  // nothing counted since: no change
            #expect(viaCounts == direct)
            #expect(viaCounts.totalCount == UInt64(values.count))
            #expect(viaCounts.min == direct.min && viaCounts.maxRecorded == direct.maxRecorded && viaCounts.maxRecorded == highest)
            for index in [0, 1023, 1024, 2047, 2048, 5000, 30_000] {
                let value = LatencyCounts.value(at: index)
                #expect(LatencyCounts.index(of: value) == index, "\(index)")
                #expect(direct.lowestEquivalentForValue(value) == value, "\(index)")
            }
        }

        @Test func smallCopiesCopyEveryByte() {
            let source = (0..<40).map { UInt8($0 + 1) }
            for count in 0...40 {
                let copied = source.withUnsafeBytes { bytes in written { $0.append(UnsafeRawBufferPointer(rebasing: bytes[..<count])) } }
                #expect(copied == Array(source[..<count]), "\(count) bytes")
            }
        }

        @Test func valueBytesAreTheAlphabetsLetters() {
            let alphabet = Array(UnsafeBufferPointer(start: TemplateValues.alphabet.utf8Start, count: TemplateValues.alphabet.utf8CodeUnitCount))
            #expect(alphabet.count == 64)
            for x in 0..<64 {
                // Every byte of the word the same six bits, the two high bits set or not.
                for high: UInt64 in [0, 0x40, 0x80, 0xC0] {
                    let word = (UInt64(x) | high) &* 0x0101_0101_0101_0101
                    let letters = withUnsafeBytes(of: TemplateValues.printable(word).littleEndian) { Array($0) }
                    #expect(letters == [UInt8](repeating: alphabet[x], count: 8), "x = \(x), high bits \(high)")
                }
            }
            // Mixed bytes: each byte maps on its own.
            let word: UInt64 = 0x3F3E_3D34_331A_1900
            let letters = withUnsafeBytes(of: TemplateValues.printable(word).littleEndian) { Array($0) }
            #expect(letters == [0x00, 0x19, 0x1A, 0x33, 0x34, 0x3D, 0x3E, 0x3F].map { alphabet[$0] })
        }

        @Test func valuesDependOnTheKeyAndTheSeedOnly() {
            let letters = Set(Array(UnsafeBufferPointer(start: TemplateValues.alphabet.utf8Start, count: 64)))
            for size in [0, 1, 7, 8, 9, 32, 33, 1000] {
                let pool = ValuePool(seed: 7, size: size)
                let again = ValuePool(seed: 7, size: size)
                let other = ValuePool(seed: 8, size: size)
                #expect(ValuePool.shared(seed: 7, size: size) === ValuePool.shared(seed: 7, size: size))
                for key in [0, 1, 2, 42, 99_999, 1 << 40] {
                    let value = Array(pool.value(forKey: key))
                    #expect(value.count == size)
                    #expect(value.allSatisfy(letters.contains), "printable letters only")
                    #expect(value == Array(again.value(forKey: key)), "the same seed: the same value")
                    if size >= 8 {
                        #expect(value != Array(other.value(forKey: key)), "another seed, size \(size), key \(key)")
                        #expect(value != Array(pool.value(forKey: key + 1)), "another key, size \(size), key \(key)")
                    }
                }
            }
        }

        @Test func aValueChecksAgainstItsKeyOnly() {
            var options = BenchOptions()
            options.size = 32
            let values = TemplateValues(options: options, connection: 0, seed: 1)
            let value = written { buffer in
                var writer = TemplateValues(options: options, connection: 1, seed: 2)
                writer.begin(BenchRequestContext(connection: 1, sequence: 0))
                writer.writeValue(into: &buffer)
            }
            var key = 0
            var scratch = TemplateValues(options: options, connection: 1, seed: 2)
            scratch.begin(BenchRequestContext(connection: 1, sequence: 0))
            key = scratch.key
            #expect(value.withUnsafeBytes { values.isValue($0, forKey: key) }, "any connection's values check the value of the key")
            #expect(!value.withUnsafeBytes { values.isValue($0, forKey: key + 1) })
            #expect(!value.withUnsafeBytes { values.isValue(UnsafeRawBufferPointer(rebasing: $0[1...]), forKey: key) }, "too short")
            for offset in 0..<value.count {
                var changed = value
                changed[offset] = UInt8(ascii: " ")
                #expect(!changed.withUnsafeBytes { values.isValue($0, forKey: key) }, "byte \(offset)")
            }
        }

        @Test func crlfIsFoundWhereverItIs() {
            // Against the plain definition, on every line of up to 40 bytes of \r, \n and a
            // few others from a fixed random stream, from every start: inside the part
            // scanned in line (16 bytes) and beyond it.
            var generator = SplitMix64(seed: 11)
            let letters: [UInt8] = [13, 10, 97, 13, 98]
            for length in 0...40 {
                for _ in 0..<20 {
                    let line = (0..<length).map { _ in letters[Int(generator.next() % 5)] }
                    for start in 0...length {
                        let expected = (start..<Swift.max(start, length - 1)).first { line[$0] == 13 && line[$0 + 1] == 10 }
                        let found = line.withUnsafeBytes { Bytes.findCRLF($0, from: start) }
                        #expect(found == expected, "\(line) from \(start)")
                        let foundInSpan = line.withUnsafeBytes { Bytes.findCRLF(RawSpan(_unsafeBytes: $0), from: start) }
                        #expect(foundInSpan == expected, "span: \(line) from \(start)")
                    }
                }
            }
        }

        /// Requests of varying lengths through a ring of 4: what is taken is what was
        /// committed, in order and in one call even where it wraps around the ring, each
        /// request's bytes intact while it is in flight. As on a connection, only requests
        /// taken (written) are answered.
        @Test func inFlightRequestsLeaveInOrderAndStayIntact() {
            var queue = InFlightQueue(capacity: 4, requestRoom: 16)
            defer { queue.deallocate() }
            var inFlight: [[UInt8]] = []
            var committed: [UInt8] = []
            var taken: [UInt8] = []
            var takes = 0
            var wrapped = 0
            var number = 0
            var answered = 0
            var written = 0
            for round in 0..<200 {
                // Fill to a varying depth, take (not every round), then answer a varying number.
                for _ in 0..<(round % 5) where !queue.isFull {
                    let length = (number * 7) % 17  // 0 ... 16: empty and full rooms too
                    let bytes = (0..<length).map { UInt8(truncatingIfNeeded: number &* 31 &+ $0) }
                    var (slot, buffer) = queue.append(intended: UInt64(number), sent: UInt64(number))
                    bytes.withUnsafeBytes { buffer.append($0) }
                    queue.commit(slot, length: buffer.count, tag: UInt64(number))
                    inFlight.append(bytes)
                    committed += bytes
                    number += 1
                }
                if round % 3 != 1 {
                    let takesBefore = takes
                    let before = taken.count
                    queue.takeUnsent { first, second in
                        takes += 1
                        if !second.isEmpty { wrapped += 1 }
                        taken += Array(first) + Array(second)
                    }
                    // One call per write that has something to send, never one for nothing.
                    #expect((taken.count > before) == (takes > takesBefore), "round \(round)")
                    #expect(taken == committed, "round \(round)")
                    written = number
                }
                for _ in 0..<((round * 5) % 4) where queue.count > 0 && answered < written {
                    let (bytes, tag) = queue.request(queue.oldest)
                    #expect(tag == UInt64(answered))
                    #expect(Array(bytes) == inFlight.first!, "request \(tag)")
                    queue.removeOldest()
                    inFlight.removeFirst()
                    answered += 1
                }
            }
            #expect(number > 100)
            #expect(takes > 0)
            #expect(wrapped > 0, "no write wrapped around the ring: the two-piece case went untested")
        }
    }
}
