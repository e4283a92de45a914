// The framers under test, each with the facts the tests need about it (what a header
// and trailer cost, whether frame boundaries survive, which bytes make payloads
// interesting), and a test-only driver that feeds a framer the way FramedConnection
// does: buffer what arrived, call nextFrame from the start of the next frame, consume.

import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

/// One framer configuration, as a test argument.
struct FramerCase: Sendable, CustomTestStringConvertible, CustomStringConvertible {
    enum Kind: Sendable {
        case delimiter([UInt8])
        case fixed(Int)
        case lengthPrefix(LengthPrefixFramer.Width, LengthPrefixFramer.ByteOrder)
        case netstring
        case raw
    }

    let name: String
    let kind: Kind
    /// The limit the tests use (small, so frames of exactly the limit are common).
    let maxFrameLength: Int
    /// Bytes payloads are drawn from: the framing's own special bytes plus filler.
    let alphabet: [UInt8]

    var description: String { name }
    var testDescription: String { name }

    func makeFramer(maxFrameLength: Int? = nil) -> any Framer {
        let limit = maxFrameLength ?? self.maxFrameLength
        switch kind {
        case .delimiter(let delimiter): return DelimiterFramer(delimiter: delimiter, maxFrameLength: limit)
        case .fixed(let length): return FixedLengthFramer(length: length)
        case .lengthPrefix(let width, let order): return LengthPrefixFramer(width: width, byteOrder: order, maxFrameLength: limit)
        case .netstring: return NetstringFramer(maxFrameLength: limit)
        case .raw: return RawFramer(maxFrameLength: limit)
        }
    }

    /// The longest header this framing puts before a payload of at most the limit.
    func headerLength(maxFrameLength: Int? = nil) -> Int {
        let limit = maxFrameLength ?? self.maxFrameLength
        switch kind {
        case .delimiter, .fixed, .raw: return 0
        case .lengthPrefix(let width, _): return width.rawValue
        case .netstring: return String(limit).count + 1
        }
    }

    var trailer: [UInt8] {
        switch kind {
        case .delimiter(let delimiter): delimiter
        case .netstring: [UInt8(ascii: ",")]
        default: []
        }
    }

    /// The most bytes a correct framer may hold back between frames: less than one
    /// maximum frame with its header and trailer.
    func bufferBound(maxFrameLength: Int? = nil) -> Int {
        (maxFrameLength ?? self.maxFrameLength) + headerLength(maxFrameLength: maxFrameLength) + trailer.count
    }

    var allowsEmptyFrames: Bool {
        switch kind {
        case .fixed, .raw: false
        default: true
        }
    }

    /// False for raw, which delivers bytes as they come.
    var preservesBoundaries: Bool {
        if case .raw = kind { return false }
        return true
    }

    var fixedLength: Int? {
        if case .fixed(let length) = kind { return length }
        return nil
    }

    /// The lengths a payload may have.
    var payloadLengths: ClosedRange<Int> {
        if let fixedLength { return fixedLength...fixedLength }
        if case .raw = kind { return 1...maxFrameLength }
        return 0...maxFrameLength
    }

    /// Whether the framer agrees to frame `payload`.
    func canFrame(_ payload: [UInt8], maxFrameLength: Int? = nil) -> Bool {
        (try? (makeFramer(maxFrameLength: maxFrameLength)).encodedFrame(payload)) != nil
    }

    /// A payload the framer accepts: `payload` cut back until the framer agrees
    /// (a delimiter framer refuses payloads containing the delimiter).
    func frameable(_ payload: [UInt8]) -> [UInt8] {
        var payload = payload
        if let fixedLength {
            // A fixed frame cannot be shortened: cut or pad to the length.
            payload = Array(payload.prefix(fixedLength))
            payload += [UInt8](repeating: alphabet.last!, count: fixedLength - payload.count)
        }
        if !allowsEmptyFrames, payload.isEmpty { payload = [alphabet.last!] }
        while !canFrame(payload) { payload.removeLast() }
        if !allowsEmptyFrames, payload.isEmpty { return [alphabet.last!] }
        return payload
    }

    /// Encodes frames with the framer's own encoder.
    func encode(_ payloads: [[UInt8]], maxFrameLength: Int? = nil) throws(FramingError) -> [UInt8] {
        let framer = makeFramer(maxFrameLength: maxFrameLength)
        var stream: [UInt8] = []
        for payload in payloads { stream += try framer.encodedFrame(payload) }
        return stream
    }

    // MARK: - The cases

    static let line = FramerCase(
        name: "line \\n", kind: .delimiter([0x0A]), maxFrameLength: 48, alphabet: [0x0A, 0x0D, 0x00, 0xFF, 0x61])
    static let crlf = FramerCase(
        name: "crlf \\r\\n", kind: .delimiter([0x0D, 0x0A]), maxFrameLength: 48, alphabet: [0x0D, 0x0A, 0x61, 0x62])
    static let endMarker = FramerCase(
        name: "delimiter --END--", kind: .delimiter(Array("--END--".utf8)), maxFrameLength: 48,
        alphabet: Array("-END-x".utf8))
    static let binaryDelimiter = FramerCase(
        name: "delimiter FF 00 FF", kind: .delimiter([0xFF, 0x00, 0xFF]), maxFrameLength: 48,
        alphabet: [0xFF, 0x00, 0x41])
    static let fixed7 = FramerCase(name: "fixed 7", kind: .fixed(7), maxFrameLength: 7, alphabet: [0x00, 0x0A, 0xFF, 0x61])
    static let fixed1 = FramerCase(name: "fixed 1", kind: .fixed(1), maxFrameLength: 1, alphabet: [0x00, 0x0A, 0xFF, 0x61])
    static let netstring = FramerCase(
        name: "netstring", kind: .netstring, maxFrameLength: 120, alphabet: Array("0123456789:,-a".utf8))
    static let raw = FramerCase(name: "raw", kind: .raw, maxFrameLength: 16, alphabet: [0x00, 0x0A, 0xFF, 0x61])

    static func lengthPrefix(_ width: LengthPrefixFramer.Width, _ order: LengthPrefixFramer.ByteOrder) -> FramerCase {
        FramerCase(
            name: "length prefix \(width.rawValue * 8)-bit \(order == .bigEndian ? "big" : "little") endian",
            kind: .lengthPrefix(width, order),
            // Under what one byte holds for int8, so max+1 can be written in the header.
            maxFrameLength: width == .one ? 100 : 300,
            alphabet: [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A])
    }

    static let lengthPrefixes: [FramerCase] = LengthPrefixFramer.Width.allCases.flatMap { width in
        [lengthPrefix(width, .bigEndian), lengthPrefix(width, .littleEndian)]
    }

    static let delimiters: [FramerCase] = [line, crlf, endMarker, binaryDelimiter]

    /// Every framer that keeps frame boundaries.
    static let framing: [FramerCase] = delimiters + [fixed7, fixed1] + lengthPrefixes + [netstring]

    /// Every framer.
    static let all: [FramerCase] = framing + [raw]
}

// MARK: - The driver

/// Feeds a framer the way ``FramedConnection`` does and records what comes out, checking
/// the framer's promises on every call:
/// - a frame lies within the bytes given, is not empty, and its payload within it;
/// - no payload is over the limit;
/// - `needMore(atLeast: n)` is honest: no frame appears before n more bytes arrived;
/// - between frames it holds back fewer than ``FramerCase/bufferBound(maxFrameLength:)`` bytes.
/// Every loop is bounded by the bytes fed, so a framer that never consumes cannot hang it.
struct FramerDriver {
    var framer: any Framer
    let bufferBound: Int
    private(set) var frames: [[UInt8]] = []
    private(set) var error: FramingError?
    private(set) var violations: [String] = []
    private(set) var maxBuffered = 0
    /// Every needMore answer, for tests about when a framer decides.
    private(set) var calls = 0
    private var buffer: [UInt8] = []
    private var start = 0
    private var promised: Int?

    init(_ framer: any Framer, bufferBound: Int) {
        self.framer = framer
        self.bufferBound = bufferBound
    }

    init(_ framerCase: FramerCase, maxFrameLength: Int? = nil) {
        self.init(
            framerCase.makeFramer(maxFrameLength: maxFrameLength),
            bufferBound: framerCase.bufferBound(maxFrameLength: maxFrameLength))
    }

    /// Bytes received and not yet framed.
    var buffered: Int { buffer.count - start }

    mutating func feed(_ chunk: some Collection<UInt8>) {
        guard error == nil else { return }
        buffer.append(contentsOf: chunk)
        var rounds = 0
        let maxRounds = buffered + 1  // every frame consumes at least one byte
        while error == nil, buffered > 0 {
            rounds += 1
            if rounds > maxRounds {
                violations.append("more calls than bytes: the framer does not consume")
                return
            }
            let bytes = buffer
            let from = start
            var framer = self.framer
            let result: Result<FrameSearch, FramingError> = bytes.withUnsafeBytes { raw in
                let rest = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(rebasing: raw[from...]))
                do throws(FramingError) {
                    return .success(try framer.nextFrame(in: rest))
                } catch {
                    return .failure(error)
                }
            }
            self.framer = framer
            calls += 1
            let available = buffered
            switch result {
            case .failure(let failure):
                error = failure
                return
            case .success(.needMore(let atLeast)):
                if atLeast < 1 { violations.append("needMore(atLeast: \(atLeast)) with \(available) bytes") }
                promised = available + max(atLeast, 1)
                if available >= bufferBound {
                    violations.append("holds \(available) bytes without a frame; bound \(bufferBound)")
                }
                maxBuffered = max(maxBuffered, available)
                compact()
                return
            case .success(.frame(let payload, let frameLength)):
                if let promised, available < promised {
                    violations.append("a frame with \(available) bytes after needMore promised \(promised)")
                }
                promised = nil
                guard frameLength > 0, frameLength <= available, payload.lowerBound >= 0, payload.upperBound <= frameLength else {
                    violations.append("frame(payload: \(payload), frameLength: \(frameLength)) for \(available) bytes")
                    return
                }
                if payload.count > framer.maxFrameLength {
                    violations.append("a \(payload.count)-byte payload over the limit \(framer.maxFrameLength)")
                }
                frames.append(Array(buffer[(start + payload.lowerBound)..<(start + payload.upperBound)]))
                start += frameLength
            }
        }
        compact()
    }

    /// Feeds `stream` cut into pieces of the given sizes (cycled; sizes below 1 count as 1).
    mutating func feed(_ stream: [UInt8], pieces: [Int]) {
        var offset = 0
        var index = 0
        while offset < stream.count {
            let size = pieces.isEmpty ? stream.count : max(1, pieces[index % pieces.count])
            index += 1
            let end = min(stream.count, offset + size)
            feed(stream[offset..<end])
            offset = end
        }
    }

    private mutating func compact() {
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 4096, start * 2 > buffer.count {
            buffer.removeFirst(start)
            start = 0
        }
    }
}

/// Decodes `stream` fed in pieces and returns the driver.
func decode(_ stream: [UInt8], with framerCase: FramerCase, pieces: [Int] = [], maxFrameLength: Int? = nil) -> FramerDriver {
    var driver = FramerDriver(framerCase, maxFrameLength: maxFrameLength)
    driver.feed(stream, pieces: pieces)
    return driver
}

/// Checks what a driver decoded against the payloads that were encoded.
func expectDecoded(
    _ driver: FramerDriver, _ payloads: [[UInt8]], _ framerCase: FramerCase, _ context: @autoclosure () -> String = "",
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(driver.violations == [], "\(context())", sourceLocation: sourceLocation)
    #expect(driver.error == nil, "\(context())", sourceLocation: sourceLocation)
    if framerCase.preservesBoundaries {
        #expect(driver.frames == payloads, "\(context())", sourceLocation: sourceLocation)
    } else {
        #expect(driver.frames.joined().elementsEqual(payloads.joined()), "\(context())", sourceLocation: sourceLocation)
        #expect(driver.frames.allSatisfy { !$0.isEmpty && $0.count <= framerCase.maxFrameLength }, sourceLocation: sourceLocation)
    }
    #expect(driver.buffered == 0, "\(context()): \(driver.buffered) bytes left over", sourceLocation: sourceLocation)
}

extension FramerCase {
    /// A random payload the framer accepts, with lengths biased to 0, 1 and the limit.
    func randomPayload(using random: inout SeededRandom) -> [UInt8] {
        let range = payloadLengths
        let length: Int = switch Int.random(in: 0..<10, using: &random) {
        case 0: range.lowerBound
        case 1: range.upperBound
        case 2: min(range.upperBound, range.lowerBound + 1)
        default: Int.random(in: range, using: &random)
        }
        let payload = (0..<length).map { _ in
            // Mostly filler, sometimes the framing's own special bytes.
            Bool.random(using: &random) ? alphabet.randomElement(using: &random)! : UInt8.random(in: 0x20...0x7E, using: &random)
        }
        return frameable(payload)
    }

    /// The payloads the deterministic tests use: empty, one byte, the limit, special
    /// bytes at the edges, and a few random ones.
    var samplePayloads: [[UInt8]] {
        var random = SeededRandom(seed: 0xF1A3)
        var payloads: [[UInt8]] = []
        if allowsEmptyFrames { payloads.append([]) }
        let limit = payloadLengths.upperBound
        payloads.append(frameable([UInt8](repeating: 0x61, count: limit)))
        payloads.append(frameable([alphabet[0]]))
        if allowsEmptyFrames { payloads += [[], []] }
        // Every alphabet byte alone and at both ends of an otherwise plain payload.
        for byte in alphabet {
            payloads.append(frameable([byte] + [UInt8](repeating: 0x62, count: min(3, limit))))
            payloads.append(frameable([UInt8](repeating: 0x63, count: min(3, limit)) + [byte]))
        }
        for _ in 0..<6 { payloads.append(randomPayload(using: &random)) }
        payloads.append(frameable([UInt8](repeating: 0x64, count: limit)))
        return payloads
    }
}
