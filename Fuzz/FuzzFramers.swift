// libFuzzer targets for the ReactorFraming decoders, one per decoder, chosen with the
// FUZZ_DECODER environment variable: delimiter, fixed, lengthprefix, netstring, raw.
// Built by Fuzz/run-fuzz.sh (`make fuzz`) together with the framer sources:
//
//   swiftc -sanitize=fuzzer,address -parse-as-library -O FuzzFramers.swift <framer sources>
//
// Input layout: byte 0 picks the configuration within the decoder (which delimiter,
// which width and byte order), byte 1 the limit, byte 2 seeds how the rest is cut into
// reads; the rest is the byte stream. Every check is a precondition, so a broken promise
// is a crash libFuzzer reports with the input:
// - decoding never crashes or loops (every loop is bounded by the bytes fed);
// - a frame lies inside the bytes given, its payload inside it, at most the limit;
// - needMore(atLeast: n) is honest: no frame before n more bytes;
// - between frames fewer than limit + header + trailer bytes are held back;
// - cutting the stream into reads changes nothing (frames, and whether it fails);
// - every frame decoded re-encodes to exactly the bytes it was decoded from;
// - any payload the encoder accepts decodes back to itself.

#if canImport(Glibc)
import Glibc
#endif

/// Like precondition, but says why in optimized builds too, then aborts for libFuzzer.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fail(message()) }
}

func fail(_ message: String) -> Never {
    var line = "CHECK FAILED: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    abort()
}

enum Decoder: String {
    case delimiter, fixed, lengthprefix, netstring, raw
}

let decoder: Decoder = {
    guard let name = getenv("FUZZ_DECODER").map({ String(cString: $0) }), let decoder = Decoder(rawValue: name) else {
        fatalError("set FUZZ_DECODER to one of: delimiter, fixed, lengthprefix, netstring, raw")
    }
    return decoder
}()

let limits = [0, 1, 2, 3, 5, 16, 100, 255, 256, 1000, 65535, 65536, Int.max - 1, Int.max]
let delimiters: [[UInt8]] = [[0x0A], [0x0D, 0x0A], Array("--END--".utf8), [0xFF, 0x00, 0xFF], Array("aba".utf8), [0x00]]

struct Config {
    var framer: any Framer
    var header: Int
    var trailer: Int
    var keepsBoundaries: Bool
}

func configure(_ pick: UInt8, _ limitPick: UInt8) -> Config {
    let limit = limits[Int(limitPick) % limits.count]
    switch decoder {
    case .delimiter:
        let delimiter = delimiters[Int(pick) % delimiters.count]
        return Config(framer: DelimiterFramer(delimiter: delimiter, maxFrameLength: limit), header: 0, trailer: delimiter.count, keepsBoundaries: true)
    case .fixed:
        let length = max(1, min(limit, 70_000))
        return Config(framer: FixedLengthFramer(length: length), header: 0, trailer: 0, keepsBoundaries: true)
    case .lengthprefix:
        let width = LengthPrefixFramer.Width.allCases[Int(pick) % 4]
        let order: LengthPrefixFramer.ByteOrder = (pick / 4) % 2 == 0 ? .bigEndian : .littleEndian
        return Config(framer: LengthPrefixFramer(width: width, byteOrder: order, maxFrameLength: limit), header: width.rawValue, trailer: 0, keepsBoundaries: true)
    case .netstring:
        return Config(framer: NetstringFramer(maxFrameLength: limit), header: String(limit).count + 1, trailer: 1, keepsBoundaries: true)
    case .raw:
        return Config(framer: RawFramer(maxFrameLength: max(1, limit)), header: 0, trailer: 0, keepsBoundaries: false)
    }
}

/// What feeding a stream produced.
struct Outcome {
    var frames: [[UInt8]] = []
    /// The bytes each frame was decoded from (header, payload, trailer).
    var wire: [[UInt8]] = []
    var failed = false
}

/// Feeds `stream` in reads cut by `cuts` (sizes, cycled) the way FramedConnection does.
func feed(_ stream: UnsafeRawBufferPointer, cuts: [Int], config: Config) -> Outcome {
    var framer = config.framer
    var outcome = Outcome()
    let bound = config.framer.maxFrameLength.addingReportingOverflow(config.header + config.trailer)
    let bufferBound = bound.overflow ? Int.max : bound.partialValue
    var start = 0  // first byte of the next frame
    var end = 0  // bytes received so far
    var cut = 0
    var promised: Int?
    while end < stream.count {
        end = min(stream.count, end + max(1, cuts.isEmpty ? stream.count : cuts[cut % cuts.count]))
        cut += 1
        var rounds = 0
        let maxRounds = end - start + 1  // every frame consumes at least one byte
        while start < end {
            rounds += 1
            check(rounds <= maxRounds, "more calls than bytes: the framer does not consume")
            let rest = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(rebasing: stream[start..<end]))
            let available = end - start
            let found: FrameSearch
            do {
                found = try framer.nextFrame(in: rest)
            } catch {
                outcome.failed = true
                return outcome
            }
            switch found {
            case .needMore(let atLeast):
                check(atLeast >= 1, "needMore(atLeast: \(atLeast))")
                check(available < bufferBound, "\(available) bytes held without a frame; bound \(bufferBound)")
                promised = available + atLeast
            case .frame(let payload, let frameLength):
                if let promised { check(available >= promised, "a frame with \(available) bytes after needMore promised \(promised)") }
                promised = nil
                check(frameLength > 0 && frameLength <= available, "frameLength \(frameLength) for \(available) bytes")
                check(payload.lowerBound >= 0 && payload.upperBound <= frameLength, "payload \(payload) in \(frameLength)")
                check(payload.count <= framer.maxFrameLength, "payload of \(payload.count) over \(framer.maxFrameLength)")
                outcome.frames.append(Array(stream[(start + payload.lowerBound)..<(start + payload.upperBound)]))
                outcome.wire.append(Array(stream[start..<(start + frameLength)]))
                start += frameLength
                continue
            }
            break
        }
    }
    return outcome
}

func encode(_ payload: [UInt8], _ framer: any Framer) -> [UInt8]? {
    var header = [UInt8](repeating: 0, count: FramerLimits.maxHeaderLength)
    let length: Int? = header.withUnsafeMutableBytes { room in
        payload.withUnsafeBytes { body in
            try? framer.encodeHeader(for: unsafe RawSpan(_unsafeBytes: body), into: room)
        }
    }
    guard let length else { return nil }
    return Array(header[..<length]) + payload + framer.trailer
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard size >= 3, let data else { return 0 }
    let input = UnsafeRawBufferPointer(start: data, count: size)
    let config = configure(input[0], input[1])
    var seed = UInt64(input[2]) &* 0x9E37_79B9_7F4A_7C15 | 1
    let stream = UnsafeRawBufferPointer(rebasing: input[3...])
    var cuts: [Int] = []
    for _ in 0..<8 {
        seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        cuts.append(Int(seed >> 59) + 1)  // reads of 1...32 bytes
    }

    let whole = feed(stream, cuts: [], config: config)
    let split = feed(stream, cuts: cuts, config: config)
    let single = feed(stream, cuts: [1], config: config)
    for other in [split, single] {
        check(other.failed == whole.failed, "failing depends on how the stream is cut")
        if config.keepsBoundaries {
            check(other.frames == whole.frames, "frames depend on how the stream is cut")
        } else {
            check(Array(other.frames.joined()) == Array(whole.frames.joined()), "bytes depend on how the stream is cut")
        }
    }
    // Every frame re-encodes to the bytes it came from.
    for (payload, wire) in zip(whole.frames, whole.wire) {
        guard let encoded = encode(payload, config.framer) else { fail("a decoded payload cannot be encoded: \(payload)") }
        check(encoded == wire, "re-encoding \(payload) gives \(encoded), not \(wire)")
    }
    // Any payload the encoder accepts round trips.
    let payload = Array(stream.prefix(4096))
    if let encoded = encode(payload, config.framer) {
        let decoded = encoded.withUnsafeBytes { feed($0, cuts: cuts, config: config) }
        check(!decoded.failed, "an encoded frame fails to decode")
        if config.keepsBoundaries {
            check(decoded.frames == [payload], "round trip of \(payload) gives \(decoded.frames)")
        } else {
            check(Array(decoded.frames.joined()) == payload, "raw round trip")
        }
    }
    return 0
}
