// Seeded random-input tests for every decoder, run with the suite (the libFuzzer targets
// in Fuzz/ go further outside it, `make fuzz`): random bytes and mutated valid streams,
// cut into random reads, through the test driver and through FramedConnection. Never a
// crash, never a hang (every loop is bounded), never more than a maximum frame with its
// header and trailer held between frames, never a frame over the limit; cutting the
// stream differently never changes the outcome.

import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

/// One decoder configuration for fuzzing: a framer maker and its bounds.
struct FuzzTarget: Sendable, CustomTestStringConvertible {
    let name: String
    let make: @Sendable () -> any Framer
    let header: Int
    let trailer: Int
    let keepsBoundaries: Bool
    /// A valid stream to mutate.
    let valid: [UInt8]

    var testDescription: String { name }

    var limit: Int { make().maxFrameLength }
    var bufferBound: Int {
        let (sum, overflow) = limit.addingReportingOverflow(header + trailer)
        return overflow ? Int.max : sum
    }

    static func delimiter(_ delimiter: [UInt8], limit: Int) -> FuzzTarget {
        let framer = DelimiterFramer(delimiter: delimiter, maxFrameLength: limit)
        return FuzzTarget(
            name: "delimiter \(delimiter) limit \(limit)", make: { framer }, header: 0, trailer: delimiter.count,
            keepsBoundaries: true, valid: validStream(framer))
    }

    static func lengthPrefix(_ width: LengthPrefixFramer.Width, _ order: LengthPrefixFramer.ByteOrder, limit: Int) -> FuzzTarget {
        let framer = LengthPrefixFramer(width: width, byteOrder: order, maxFrameLength: limit)
        return FuzzTarget(
            name: "length prefix \(width.rawValue * 8) \(order) limit \(limit)", make: { framer }, header: width.rawValue,
            trailer: 0, keepsBoundaries: true, valid: validStream(framer))
    }

    static func netstring(limit: Int) -> FuzzTarget {
        let framer = NetstringFramer(maxFrameLength: limit)
        return FuzzTarget(
            name: "netstring limit \(limit)", make: { framer }, header: String(limit).count + 1, trailer: 1,
            keepsBoundaries: true, valid: validStream(framer))
    }

    static func fixed(_ length: Int) -> FuzzTarget {
        let framer = FixedLengthFramer(length: length)
        return FuzzTarget(name: "fixed \(length)", make: { framer }, header: 0, trailer: 0, keepsBoundaries: true, valid: validStream(framer))
    }

    static func raw(limit: Int) -> FuzzTarget {
        let framer = RawFramer(maxFrameLength: limit)
        return FuzzTarget(name: "raw limit \(limit)", make: { framer }, header: 0, trailer: 0, keepsBoundaries: false, valid: validStream(framer))
    }

    /// A stream of frames the framer accepts: empty, small, up to the limit (or 300).
    static func validStream(_ framer: any Framer) -> [UInt8] {
        var random = SeededRandom(seed: 0x5EED)
        var stream: [UInt8] = []
        for length in [0, 1, 2, 7, 30, min(framer.maxFrameLength, 300), 3, 0] {
            var payload = (0..<length).map { _ in UInt8.random(in: 0x30...0x7A, using: &random) }
            if let fixed = framer as? FixedLengthFramer { payload = [UInt8](repeating: 0x41, count: fixed.length) }
            if let encoded = try? framer.encodedFrame(payload) { stream += encoded }
        }
        return stream
    }

    static let all: [FuzzTarget] = [
        .delimiter([0x0A], limit: 64), .delimiter([0x0D, 0x0A], limit: 64), .delimiter(Array("--END--".utf8), limit: 40),
        .delimiter([0xFF, 0x00, 0xFF], limit: 40), .delimiter(Array("aba".utf8), limit: 5), .delimiter([0x0A], limit: 0),
        .delimiter([0x0A], limit: Int.max),
        .fixed(1), .fixed(5), .fixed(300),
        .lengthPrefix(.one, .bigEndian, limit: 255), .lengthPrefix(.two, .bigEndian, limit: 100),
        .lengthPrefix(.two, .littleEndian, limit: 100), .lengthPrefix(.four, .bigEndian, limit: 1000),
        .lengthPrefix(.four, .littleEndian, limit: 0), .lengthPrefix(.eight, .bigEndian, limit: 1000),
        .lengthPrefix(.eight, .littleEndian, limit: 65536), .lengthPrefix(.eight, .bigEndian, limit: Int.max),
        .lengthPrefix(.eight, .littleEndian, limit: Int.max - 1),
        .netstring(limit: 0), .netstring(limit: 9), .netstring(limit: 10), .netstring(limit: 120), .netstring(limit: 99999),
        .netstring(limit: Int.max),
        .raw(limit: 1), .raw(limit: 16), .raw(limit: Int.max),
    ]
}

/// Inputs for one target: random bytes over a small alphabet that includes the
/// framing's special bytes, random bytes over all values, and mutations of a valid stream.
func fuzzInputs(for target: FuzzTarget, count: Int, seed: UInt64) -> [[UInt8]] {
    var random = SeededRandom(seed: seed)
    let special: [UInt8] = Array("0123456789:,-+ \r\n".utf8) + [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x2D, 0x45, 0x4E, 0x44, 0x61, 0x62]
    return (0..<count).map { index in
        switch index % 3 {
        case 0:
            return (0..<Int.random(in: 0...400, using: &random)).map { _ in special.randomElement(using: &random)! }
        case 1:
            return (0..<Int.random(in: 0...400, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
        default:
            var bytes = target.valid
            for _ in 0..<Int.random(in: 1...6, using: &random) {
                let at = Int.random(in: 0...bytes.count, using: &random)
                switch Int.random(in: 0..<5, using: &random) {
                case 0 where at < bytes.count: bytes[at] = UInt8.random(in: 0...255, using: &random)  // flip a byte
                case 1 where at < bytes.count: bytes.remove(at: at)  // drop one
                case 2: bytes.insert(special.randomElement(using: &random)!, at: at)  // insert a special byte
                case 3: bytes.insert(contentsOf: bytes[at...].prefix(20), at: at)  // duplicate a run
                default: bytes = Array(bytes[..<at])  // truncate
                }
            }
            return bytes
        }
    }
}

/// Random read sizes for one input.
func randomPieces(_ random: inout SeededRandom) -> [Int] {
    switch Int.random(in: 0..<4, using: &random) {
    case 0: [1]
    case 1: [Int.random(in: 1...3, using: &random), Int.random(in: 1...3, using: &random)]
    default: (0..<8).map { _ in Int.random(in: 1...64, using: &random) }
    }
}

@Suite("Seeded fuzzing", .timeLimit(.minutes(1)))
struct FramingFuzzTests {
    @Test("random and mutated input through the driver", arguments: FuzzTarget.all)
    func throughDriver(_ target: FuzzTarget) {
        var random = SeededRandom(seed: 0xF022 &+ UInt64(target.name.utf8.count))
        var problems: [String] = []
        var frames = 0
        for (index, input) in fuzzInputs(for: target, count: 600, seed: 0xBADF00D).enumerated() {
            var whole = FramerDriver(target.make(), bufferBound: target.bufferBound)
            whole.feed(input)
            let pieces = randomPieces(&random)
            var split = FramerDriver(target.make(), bufferBound: target.bufferBound)
            split.feed(input, pieces: pieces)
            frames += whole.frames.count
            for driver in [whole, split] where !driver.violations.isEmpty {
                problems.append("input #\(index) \(input): \(driver.violations)")
            }
            let sameFrames = target.keepsBoundaries
                ? whole.frames == split.frames
                : whole.frames.joined().elementsEqual(split.frames.joined())
            if !sameFrames || (whole.error == nil) != (split.error == nil) {
                problems.append("input #\(index) \(input) pieces \(pieces): whole \(whole.frames.count) frames \(String(describing: whole.error)), split \(split.frames.count) frames \(String(describing: split.error))")
            }
            if problems.count > 5 { break }
        }
        #expect(problems == [])
        #expect(frames > 0, "the inputs produced some frames")
    }

    @Test("random and mutated input through FramedConnection", arguments: FuzzTarget.all)
    func throughAdapter(_ target: FuzzTarget) async throws {
        try await withDirectRig { rig in
            let problems = try await rig.run { _, connection -> [String] in
                var random = SeededRandom(seed: 0xADA &+ UInt64(target.name.utf8.count))
                var problems: [String] = []
                for (index, input) in fuzzInputs(for: target, count: 300, seed: 0xC0FFEE).enumerated() {
                    let recorder = Recorder()
                    let limit = target.limit
                    recorder.onFrame = { frame, _, _ in
                        if frame.byteCount > limit { problems.append("input #\(index): a \(frame.byteCount)-byte frame over \(limit)") }
                    }
                    let framed = attach(target.make(), recorder, to: connection)
                    var offset = 0
                    let pieces = randomPieces(&random)
                    var piece = 0
                    while offset < input.count {
                        let end = min(input.count, offset + pieces[piece % pieces.count])
                        piece += 1
                        feed(framed, input[offset..<end], on: connection)
                        offset = end
                        if framed.bufferedInputBytes >= target.bufferBound {
                            problems.append("input #\(index): \(framed.bufferedInputBytes) bytes buffered, bound \(target.bufferBound)")
                        }
                    }
                    // The same input through the driver gives the same frames and failure.
                    var driver = FramerDriver(target.make(), bufferBound: target.bufferBound)
                    driver.feed(input)
                    let seen = recorder.record.value
                    let same = target.keepsBoundaries ? seen.frames == driver.frames : seen.frames.joined().elementsEqual(driver.frames.joined())
                    if !same || seen.errors.isEmpty != (driver.error == nil) || seen.errors.count > 1 {
                        problems.append("input #\(index) \(input): adapter \(seen.frames.count) frames \(seen.errors), driver \(driver.frames.count) frames \(String(describing: driver.error))")
                    }
                    framed.closed(connection, reason: .closed)
                    if problems.count > 5 { break }
                }
                return problems
            }
            #expect(problems == [])
        }
    }

    @Test("huge lengths in headers never overflow", arguments: [Int.max, Int.max - 1, Int.max - 20, 1 << 62])
    func hugeLengths(_ limit: Int) {
        // Length fields and digit strings at and past the limit, for limits near Int.max.
        var inputs: [[UInt8]] = []
        for value in [UInt64(limit), UInt64(Int.max), UInt64.max, UInt64(Int.max) - 8, UInt64(Int.max) + 1] {
            inputs.append((0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * (7 - UInt64($0)))) } + [1, 2, 3])
            inputs.append((0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) } + [1, 2, 3])
            inputs.append(Array("\(value):abc,".utf8))
        }
        inputs.append(Array("99999999999999999999999:x,".utf8))
        inputs.append(Array("9223372036854775807:x,".utf8))
        inputs.append(Array("9223372036854775808:x,".utf8))
        let framers: [any Framer] = [
            LengthPrefixFramer(width: .eight, byteOrder: .bigEndian, maxFrameLength: limit),
            LengthPrefixFramer(width: .eight, byteOrder: .littleEndian, maxFrameLength: limit),
            NetstringFramer(maxFrameLength: limit),
        ]
        for framer in framers {
            for input in inputs {
                for pieces in [[], [1]] {
                    var driver = FramerDriver(framer, bufferBound: Int.max)
                    driver.feed(input, pieces: pieces)
                    #expect(driver.violations == [], "\(type(of: framer)) \(input)")
                    #expect(driver.frames.isEmpty || driver.frames.allSatisfy { $0.count <= 3 })
                }
            }
        }
    }
}
