#if canImport(Glibc)
import Glibc
#endif

import ReactorCore
import ReactorFraming

/// Redis over RESP2: commands from templates, sent as arrays of bulk strings, mixed by
/// weight; replies parsed whole (simple string, error, integer, bulk, null, nested
/// arrays) up to ``RESPFramer/defaultMaxReplyLength``.
///
/// Checks: any `-` error reply is `server_error`. `PING` wants `+PONG`; a plain
/// `SET K V` wants `+OK`; `GET K` counts a null as a miss and a bulk as a hit, and when the
/// mix also has `SET K {value}` with the same key template, the bulk must be the value
/// that SET writes for that key (`wrong_response` otherwise). Other commands pass with
/// any reply that is not an error.
struct RedisCodec: BenchCodec {
    let spec: CommandMix
    private var values: TemplateValues
    private var next = 0

    init(spec: CommandMix, options: BenchOptions, connection: Int, seed: UInt64) {
        self.spec = spec
        values = TemplateValues(options: options, connection: connection, seed: seed)
        next = connection % spec.schedule.count
    }

    var maxRequestLength: Int { spec.maxRequestLength }

    func makeResponseFramer() -> any Framer { RESPFramer() }

    mutating func encodeRequest(into request: inout BenchRequestBuffer, context: BenchRequestContext) {
        let index = spec.schedule[next]
        next += 1
        if next == spec.schedule.count { next = 0 }
        values.begin(context)
        request.tag = UInt64(index) | UInt64(values.key) &<< 16
        let arguments = spec.commands[index].arguments
        request.append(UInt8(ascii: "*"))
        request.appendDecimal(arguments.count)
        request.append("\r\n")
        for argument in arguments {
            let start = request.count
            argument.write(into: &request, values: &values)
            let length = request.count - start
            // The length goes before the argument: write it, then move it in front.
            request.append(UInt8(ascii: "$"))
            request.appendDecimal(length)
            request.append("\r\n")
            let header = request.count - start - length
            rotateHeader(&request, start: start, length: length, header: header)
            request.append("\r\n")
        }
    }

    func check(response: RawSpan, request: RawSpan, tag: UInt64) -> BenchOutcome {
        let command = spec.commands[Int(tag & 0xFFFF)]
        return response.withUnsafeBytes { reply -> BenchOutcome in
            guard let first = reply.first else { return .wrongResponse }
            if first == UInt8(ascii: "-") { return .serverError }
            switch command.kind {
            case .ping: return Bytes.equals(reply, "+PONG\r\n") ? .ok : .wrongResponse
            case .set: return Bytes.equals(reply, "+OK\r\n") ? .ok : .wrongResponse
            case .get(let checkValue):
                if Bytes.equals(reply, "$-1\r\n") { return .miss }
                guard first == UInt8(ascii: "$"), let crlf = Bytes.findCRLF(reply, from: 1) else { return .wrongResponse }
                guard checkValue else { return .hit }
                let value = Bytes.slice(reply, (crlf + 2)..<(reply.count - 2))
                return TemplateValues.isValue(value, forKey: Int(tag &>> 16), size: spec.size, seed: spec.seed) ? .hit : .wrongResponse
            case .other: return .ok
            }
        }
    }
}

/// Moves `header` bytes written after an argument of `length` bytes at `start` to before
/// it: the header aside on the stack, the argument moved up, the header in front.
@inline(__always)
func rotateHeader(_ request: inout BenchRequestBuffer, start: Int, length: Int, header: Int) {
    guard length > 0, header > 0 else { return }
    let bytes = request.written(from: start)
    let base = bytes.baseAddress!
    withUnsafeTemporaryAllocation(byteCount: header, alignment: 1) { saved in
        saved.baseAddress!.copyMemory(from: base + length, byteCount: header)
        memmove(base + header, base, length)  // the two ranges overlap
        base.copyMemory(from: UnsafeRawPointer(saved.baseAddress!), byteCount: header)
    }
}

/// The commands of a Redis or memcached run, compiled once and shared by every connection.
struct CommandMix: Sendable {
    enum Kind: Sendable, Equatable {
        case ping, set, other
        /// A lookup; true when the value it finds can be checked against what a SET of
        /// the mix writes.
        case get(checkValue: Bool)
    }

    struct Command: Sendable {
        let name: String
        let arguments: [RequestTemplate]
        let kind: Kind
    }

    let commands: [Command]
    /// Command indices in the order they are sent: each appears as often as its weight,
    /// spread out (a smooth weighted round-robin), so the mix is exact over every cycle.
    let schedule: [Int]
    let maxRequestLength: Int
    let size: Int
    let seed: UInt64

    /// Compiles `commands` (`PING` when empty) for a protocol whose storage commands (a
    /// key and a value) are `setNames` and lookups `getNames`; `overhead` is the protocol's
    /// bytes around a command of N arguments (N) and around each argument (0).
    init(
        _ commands: [BenchOptions.Command], options: BenchOptions, setNames: Set<String>, getNames: Set<String>,
        overhead: (Int) -> Int
    ) throws(BenchError) {
        let given = commands.isEmpty ? [BenchOptions.Command("PING")] : commands
        var parsed: [(name: String, arguments: [RequestTemplate])] = []
        for command in given {
            guard command.weight > 0 else { throw BenchError("--weight must be positive (command '\(command.text)')") }
            let arguments = try RequestTemplate.parseArguments(command.text)
            parsed.append((arguments[0].text.uppercased(), arguments))
        }
        // Keys whose values the mix writes: the key template of each `SET K {value}`.
        let written = Set(parsed.filter { $0.name == "SET" && $0.arguments.count == 3 && $0.arguments[2].isValue }.map { $0.arguments[1].text })
        var compiled: [Command] = []
        for (name, arguments) in parsed {
            let kind: Kind
            if name == "PING" && arguments.count == 1 {
                kind = .ping
            } else if setNames.contains(name) && arguments.count == 3 {
                kind = .set
            } else if getNames.contains(name) && arguments.count == 2 {
                kind = .get(checkValue: written.contains(arguments[1].text))
            } else {
                kind = .other
            }
            compiled.append(Command(name: name, arguments: arguments, kind: kind))
        }
        self.commands = compiled
        let limits = TemplateLimits(connections: options.connections, keyspace: options.keyspace, size: options.size)
        maxRequestLength = compiled.map { command in
            command.arguments.reduce(overhead(command.arguments.count)) { $0 + $1.maxLength(limits: limits) + overhead(0) }
        }.max()! + 64
        let weights = given.map(\.weight)
        let total = weights.reduce(0, +)
        guard total <= 10_000 else { throw BenchError("the weights add up to \(total); keep them under 10000") }
        var current = [Int](repeating: 0, count: weights.count)
        var order: [Int] = []
        for _ in 0..<total {
            for index in weights.indices { current[index] += weights[index] }
            let pick = current.indices.max { current[$0] < current[$1] }!
            current[pick] -= total
            order.append(pick)
        }
        schedule = order
        size = options.size
        seed = options.seed
    }
}

/// Cuts one whole RESP2 reply out of the stream, nested arrays included.
struct RESPFramer: Framer {
    /// The largest reply accepted: 1 MiB.
    static let defaultMaxReplyLength = 1 << 20
    let maxFrameLength = RESPFramer.defaultMaxReplyLength

    func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        try buffer.withUnsafeBytes { bytes throws(FramingError) -> FrameSearch in
            var position = 0
            var pending = 1  // elements still to parse: an array header adds its count
            while pending > 0 {
                guard position < bytes.count else { return .needMore(atLeast: 1) }
                guard let crlf = Bytes.findCRLF(bytes, from: position) else {
                    if bytes.count - position > 64 * 1024, bytes[position] != UInt8(ascii: "$") {
                        throw .malformedHeader("RESP line longer than 64 KiB")
                    }
                    return .needMore(atLeast: 1)
                }
                let type = bytes[position]
                pending -= 1
                switch type {
                case UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: ":"):
                    position = crlf + 2
                case UInt8(ascii: "$"):
                    guard let length = Bytes.decimal(bytes, (position + 1)..<crlf), length >= -1 else {
                        throw .malformedHeader("bad RESP bulk length")
                    }
                    position = crlf + 2
                    if length >= 0 {
                        guard length <= maxFrameLength else { throw .frameTooLong(length: length, limit: maxFrameLength) }
                        let end = position + length + 2
                        guard end <= bytes.count else { return .needMore(atLeast: end - bytes.count) }
                        guard bytes[end - 2] == 13, bytes[end - 1] == 10 else { throw .malformedTrailer("RESP bulk without \\r\\n") }
                        position = end
                    }
                case UInt8(ascii: "*"):
                    guard let count = Bytes.decimal(bytes, (position + 1)..<crlf), count >= -1 else {
                        throw .malformedHeader("bad RESP array length")
                    }
                    guard count <= maxFrameLength / 4 else { throw .frameTooLong(length: count, limit: maxFrameLength) }
                    position = crlf + 2
                    if count > 0 { pending += count }
                default:
                    throw .malformedHeader("RESP reply starts with byte \(type)")
                }
                guard position <= maxFrameLength else { throw .frameTooLong(length: position, limit: maxFrameLength) }
            }
            return .frame(payload: 0..<position, frameLength: position)
        }
    }

    func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int { 0 }
}
