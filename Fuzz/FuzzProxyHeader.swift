// libFuzzer target for the PROXY protocol header parser (ReactorCore's ProxyHeaderParser),
// built by Fuzz/run-fuzz-proxy.sh with the parser's sources and the address and error
// types it returns, the system-facing helpers those name stubbed below.
//
// Input layout: byte 0 picks the versions taken (v1, v2, any), byte 1 the v2 cap, byte 2
// seeds how the rest is cut into reads; the rest is the stream. Every check is a crash
// libFuzzer reports with the input:
// - parsing never crashes or loops, and never holds more than the largest header;
// - cutting the stream into reads changes nothing: the same header and length, or the
//   same kind of refusal, or still waiting;
// - a header is at most 107 bytes (v1) or the cap (v2), and parses again from its own
//   bytes alone to itself;
// - the bytes after a header are never counted as part of it.

#if canImport(Glibc)
import Glibc
#endif

/// Stand-ins for ReactorCore's system layer, which the parser never reaches.
enum System {
    static func errnoName(_ error: Int32) -> String? { nil }
}

enum SocketType {
    case stream
    var rawValue: Int32 { Int32(SOCK_STREAM.rawValue) }
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    guard !condition else { return }
    var line = "CHECK FAILED: \(message())\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    abort()
}

enum Outcome: Equatable {
    case needMore
    case header(ProxyHeader)
    case refused(ProxyHeaderError.Kind)
}

let caps = [232, 256, 300, 1000, 4096, 65551]

func parse(_ bytes: [UInt8], versions: ProxyProtocolVersions, cap: Int, cuts: [Int]) -> Outcome {
    var parser = ProxyHeaderParser(accepting: versions, maxV2Length: cap)
    var start = 0
    for end in cuts + [bytes.count] where end > start {
        let chunk = Array(bytes[start..<end])
        do {
            let progress = try parser.parse(chunk)
            check(parser.bufferedCount <= max(ProxyHeaderParser.maxV1Length, cap), "held \(parser.bufferedCount) bytes")
            if case .complete(let header, let consumed) = progress {
                check(consumed >= 0 && consumed <= chunk.count, "consumed \(consumed) of a \(chunk.count)-byte read")
                check(start + consumed == header.length, "header of \(header.length) bytes ended at \(start + consumed)")
                return .header(header)
            }
        } catch {
            return .refused(error.kind)
        }
        start = end
    }
    return .needMore
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 3 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let versions: ProxyProtocolVersions = [.v1, .v2, .any][Int(input[0]) % 3]
    let cap = caps[Int(input[1]) % caps.count]
    let stream = Array(input[3...])
    var seed = UInt64(input[2]) &* 0x9E37_79B9_7F4A_7C15 | 1
    var cuts: [Int] = []
    var at = 0
    while at < stream.count {
        seed ^= seed << 13
        seed ^= seed >> 7
        seed ^= seed << 17
        at += 1 + Int(seed % 40)
        if at < stream.count { cuts.append(at) }
    }
    let whole = parse(stream, versions: versions, cap: cap, cuts: [])
    let split = parse(stream, versions: versions, cap: cap, cuts: cuts)
    check(whole == split, "whole: \(whole), cut at \(cuts): \(split)")
    let single = parse(stream, versions: versions, cap: cap, cuts: Array(stride(from: 1, to: min(stream.count, 400), by: 1)))
    check(whole == single, "whole: \(whole), byte by byte: \(single)")
    if case .header(let header) = whole {
        check(header.length <= (header.version == .v1 ? ProxyHeaderParser.maxV1Length : cap), "header of \(header.length) bytes")
        check(parse(Array(stream[0..<header.length]), versions: versions, cap: cap, cuts: []) == whole, "its own bytes parse differently")
        if header.source != nil { check(header.command == .proxy && header.destination != nil, "addresses without PROXY") }
    }
    return 0
}
