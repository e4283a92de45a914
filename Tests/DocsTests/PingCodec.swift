import ReactorBench
import ReactorCore
import ReactorFraming

/// Loads a line server that answers `PING <n>` with `PONG <n>`: each request carries its
/// sequence number, and a response passes only when it carries the same one back.
struct PingCodec: BenchCodec {
    // Room for "PING ", 20 digits and "\n".
    let maxRequestLength = 32

    func makeResponseFramer() -> any Framer {
        DelimiterFramer.line(maxFrameLength: 64)
    }

    mutating func encodeRequest(into request: inout BenchRequestBuffer, context: BenchRequestContext) {
        request.append("PING ")
        request.appendDecimal(context.sequence)
        request.append("\n")
        request.tag = UInt64(context.sequence)
    }

    func check(response: RawSpan, request: RawSpan, tag: UInt64) -> BenchOutcome {
        // The frame is the line without its "\n": "PONG <n>".
        guard response.byteCount > 5 else { return .wrongResponse }
        var number: UInt64 = 0
        for offset in 5..<response.byteCount {
            let digit = response.byte(at: offset) &- UInt8(ascii: "0")
            guard digit < 10 else { return .wrongResponse }
            number = number * 10 + UInt64(digit)
        }
        let isPong = response.byte(at: 0) == UInt8(ascii: "P") && response.byte(at: 1) == UInt8(ascii: "O")
        return isPong && number == tag ? .ok : .wrongResponse
    }
}

/// Runs `PingCodec` against the server on `port`: 10 connections, 1 s.
func benchPingServer(port: Int) throws -> BenchResult {
    var options = BenchOptions()
    options.port = port
    options.connections = 10
    options.duration = .seconds(1)
    options.warmup = .milliseconds(200)
    options.codec = BenchCodecFactory(name: "ping") { _ in PingCodec() }
    return try BenchRunner.run(options)
}
