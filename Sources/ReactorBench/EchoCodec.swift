#if canImport(Glibc)
import Glibc
#endif

import ReactorCore
import ReactorFraming

/// The echo protocols (`raw`, `line`, `crlf`, `int32`, `netstring`, `udp`): the response
/// must equal the request's payload byte for byte.
///
/// A connection cycles through `2 x depth + 1` different requests, encoded once before
/// the run, so a response that repeats an earlier request, or arrives out of order, does
/// not match. Payloads are printable ASCII without `\r` or `\n`, valid for every framing.
/// A UDP request carries the client's sequence number in its first 8 bytes: a datagram
/// answered after its request was counted lost names a request no longer in flight and
/// is ignored rather than matched to the wrong one.
struct EchoCodec: BenchCodec {
    private let requests: RequestSet
    private let framing: BenchProtocol
    private let size: Int
    private var next = 0

    init(protocol framing: BenchProtocol, size: Int, depth: Int, seed: UInt64) {
        self.framing = framing
        self.size = size
        requests = RequestSet(protocol: framing, size: size, count: 2 * depth + 1, seed: seed)
    }

    var maxRequestLength: Int { requests.wireLength }

    func makeResponseFramer() -> any Framer {
        framing.echoResponseFramer(size: size)
    }

    @inline(__always)
    mutating func encodeRequest(into request: inout BenchRequestBuffer, context: BenchRequestContext) {
        request.append(requests.wire(next))
        next += 1
        if next == requests.count { next = 0 }
        if framing == .udp {
            withUnsafeBytes(of: UInt64(truncatingIfNeeded: context.sequence).littleEndian) { request.overwrite(at: 0, with: $0) }
        }
    }

    @inline(__always)
    mutating func check(response: RawSpan, request: RawSpan, tag: UInt64) -> BenchOutcome {
        let offset = requests.payloadOffset
        let length = requests.payloadLength
        let matches = response.withUnsafeBytes { response in
            request.withUnsafeBytes { request in
                response.count == length && (length == 0 || memcmp(response.baseAddress!, request.baseAddress! + offset, length) == 0)
            }
        }
        return matches ? .ok : .wrongResponse
    }

    @inline(__always)
    func datagram(_ datagram: RawSpan, answers request: RawSpan, tag: UInt64) -> Bool {
        datagram.byteCount >= 8 && datagram.loadLittleEndian(UInt64.self, at: 0) == request.loadLittleEndian(UInt64.self, at: 0)
    }
}
