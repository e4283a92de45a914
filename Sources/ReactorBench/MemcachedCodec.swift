import ReactorCore
import ReactorFraming

/// memcached's text protocol. `set K V` (and `add`, `replace`, `append`, `prepend`) is
/// sent as `set K 0 0 LEN\r\nV\r\n`; every other command as its words and `\r\n`.
///
/// Checks: `ERROR`, `CLIENT_ERROR ...` and `SERVER_ERROR ...` are `server_error`. `set`
/// wants `STORED` (the others also accept `NOT_STORED`). `get K` and `gets K`: a bare `END`
/// is a miss; `VALUE K ...` a hit, and its key must be the one asked for, and when the mix
/// also has `set K {value}` with the same key template, its data must be what that set
/// writes (`wrong_response` otherwise). Other commands pass with any reply that is not an
/// error.
struct MemcachedCodec: BenchCodec {
    let spec: CommandMix
    private var values: TemplateValues
    private var next = 0

    static let storageCommands: Set<String> = ["SET", "ADD", "REPLACE", "APPEND", "PREPEND"]

    init(spec: CommandMix, options: BenchOptions, connection: Int, seed: UInt64) {
        self.spec = spec
        values = TemplateValues(options: options, connection: connection, seed: seed)
        next = connection % spec.schedule.count
    }

    var maxRequestLength: Int { spec.maxRequestLength }

    func makeResponseFramer() -> any Framer { MemcachedFramer() }

    mutating func encodeRequest(into request: inout BenchRequestBuffer, context: BenchRequestContext) {
        let index = spec.command(advancing: &next)
        let command = spec.commands[index]
        values.begin(context)
        request.tag = UInt64(index) | UInt64(values.key) &<< 16
        if command.isStorage {
            command.arguments[0].write(into: &request, values: &values)
            request.append(UInt8(ascii: " "))
            command.arguments[1].write(into: &request, values: &values)
            request.append(" 0 0 ")
            let start = request.count
            command.arguments[2].write(into: &request, values: &values)
            let length = request.count - start
            request.appendDecimal(length)
            request.append("\r\n")
            rotateHeader(&request, start: start, length: length, header: request.count - start - length)
        } else {
            for (position, argument) in command.arguments.enumerated() {
                if position > 0 { request.append(UInt8(ascii: " ")) }
                argument.write(into: &request, values: &values)
            }
        }
        request.append("\r\n")
    }

    mutating func check(response: RawSpan, request: RawSpan, tag: UInt64) -> BenchOutcome {
        let command = spec.commands[Int(tag & 0xFFFF)]
        return response.withUnsafeBytes { reply -> BenchOutcome in
            if Bytes.equals(reply, "ERROR\r\n") || Bytes.hasPrefix(reply, "CLIENT_ERROR") || Bytes.hasPrefix(reply, "SERVER_ERROR") {
                return .serverError
            }
            switch command.kind {
            case .set:
                if Bytes.equals(reply, "STORED\r\n") { return .ok }
                return command.name != "SET" && Bytes.equals(reply, "NOT_STORED\r\n") ? .ok : .wrongResponse
            case .get(let checkValue):
                if Bytes.equals(reply, "END\r\n") { return .miss }
                guard Bytes.hasPrefix(reply, "VALUE "), let lineEnd = Bytes.findCRLF(reply, from: 6) else { return .wrongResponse }
                // The key asked for: the request is `get KEY\r\n`.
                let asked = request.withUnsafeBytes { Bytes.slice($0, (command.name.utf8.count + 1)..<($0.count - 2)) }
                guard let keyEnd = reply[6..<lineEnd].firstIndex(of: UInt8(ascii: " ")),
                    Bytes.equals(Bytes.slice(reply, 6..<keyEnd), asked)
                else { return .wrongResponse }
                guard checkValue else { return .hit }
                let dataEnd = reply.count - 7  // "\r\nEND\r\n"
                guard dataEnd >= lineEnd + 2 else { return .wrongResponse }
                let data = Bytes.slice(reply, (lineEnd + 2)..<dataEnd)
                return values.isValue(data, forKey: Int(tag &>> 16)) ? .hit : .wrongResponse
            case .ping, .other:
                return .ok
            }
        }
    }
}

extension CommandMix.Command {
    /// A memcached storage command with its key and value: sent with a length line.
    var isStorage: Bool { kind == .set && MemcachedCodec.storageCommands.contains(name) }
}

/// Cuts one memcached reply out of the stream: a line, or `VALUE` blocks up to `END`.
struct MemcachedFramer: Framer {
    let maxFrameLength = RESPFramer.defaultMaxReplyLength

    func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        try buffer.withUnsafeBytes { bytes throws(FramingError) -> FrameSearch in
            var position = 0
            while true {
                guard let crlf = Bytes.findCRLF(bytes, from: position) else {
                    if bytes.count - position > 8 * 1024 { throw .malformedHeader("memcached line longer than 8 KiB") }
                    return .needMore(atLeast: 1)
                }
                let line = Bytes.slice(bytes, position..<crlf)
                guard Bytes.hasPrefix(line, "VALUE ") else {
                    // A single-line reply, or the END after VALUE blocks.
                    guard position == 0 || Bytes.equals(line, "END") else { throw .malformedTrailer("memcached VALUE block not followed by END") }
                    return .frame(payload: 0..<(crlf + 2), frameLength: crlf + 2)
                }
                // VALUE <key> <flags> <bytes> [<cas>]
                var fields = 0
                var start = 6
                var length: Int?
                for index in 6...line.count where index == line.count || line[index] == UInt8(ascii: " ") {
                    if fields == 2 { length = Bytes.decimal(line, start..<index) }
                    fields += 1
                    start = index + 1
                }
                guard let length, length >= 0 else { throw .malformedHeader("memcached VALUE line without a length") }
                guard length <= maxFrameLength else { throw .frameTooLong(length: length, limit: maxFrameLength) }
                let end = crlf + 2 + length + 2
                guard end <= bytes.count else { return .needMore(atLeast: end - bytes.count) }
                guard bytes[end - 2] == 13, bytes[end - 1] == 10 else { throw .malformedTrailer("memcached data without \\r\\n") }
                position = end
                guard position <= maxFrameLength else { throw .frameTooLong(length: position, limit: maxFrameLength) }
            }
        }
    }

    func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int { 0 }
}
