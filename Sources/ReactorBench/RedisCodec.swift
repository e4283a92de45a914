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
    // Compiled RESP, read per request through pointers: no retain or release of the
    // mix's arrays per request (callgrind: the template walk with its header moved in
    // front of each argument cost more than the rest of the request together).
    private let plan: RESPPlan
    /// The bytes of a bulk reply holding a `{value}`, and where the value starts in it.
    private let valueReplyLength: Int
    private let valueOffset: Int

    init(spec: CommandMix, options: BenchOptions, connection: Int, seed: UInt64) {
        self.spec = spec
        values = TemplateValues(options: options, connection: connection, seed: seed)
        next = connection % spec.schedule.count
        plan = RESPPlan(spec, size: options.size, keyspace: options.keyspace)
        valueOffset = 1 + String(options.size).utf8.count + 2
        valueReplyLength = valueOffset + options.size + 2
    }

    var maxRequestLength: Int { spec.maxRequestLength }

    func makeResponseFramer() -> any Framer { RESPFramer() }

    mutating func encodeRequest(into request: inout BenchRequestBuffer, context: BenchRequestContext) {
        let index = spec.command(advancing: &next)
        values.begin(context)
        request.tag = UInt64(index) | UInt64(values.key) &<< 16
        // Counted once: the key's digits pick the command's plan for keys of that many
        // digits (its lengths written out already) and are written with the key.
        let key = UInt(values.key)
        let keyDigits = BenchRequestBuffer.decimalDigits(key)
        precondition(keyDigits <= plan.keyDigitCounts, "RedisCodec: key \(key) outside the keyspace")
        let planIndex = index &* plan.keyDigitCounts &+ keyDigits &- 1
        let length = plan.lengths[planIndex]
        guard length >= 0 else {
            encodeWithVariables(into: &request, steps: plan.commandSteps[planIndex], key: key, keyDigits: keyDigits)
            return
        }
        // Literal runs, the key and the value only, `length` bytes in all: the room is
        // checked once and the bytes written through a pointer (callgrind, GET: 314
        // instructions per request appended piece by piece, each with its check, 258 so).
        precondition(length <= request.remaining, "BenchRequestBuffer: request longer than maxRequestLength")
        // Plain pointers, not the plan: nothing to retain while the values change.
        let steps = plan.steps
        let literals = UnsafeRawPointer(plan.literals.baseAddress!)
        var out = request.end
        for position in plan.commandSteps[planIndex] {
            let step = steps[position]
            BenchRequestBuffer.copy(step.count, from: literals + step.start, to: out)
            out += step.count
            switch step.then {
            case .key:
                BenchRequestBuffer.writeDecimal(key, digits: keyDigits, to: out)
                out += keyDigits
            case .value:
                let value = values.value
                BenchRequestBuffer.copy(value.count, from: value.baseAddress!, to: out)
                out += value.count
            default: break  // .none: the last literal run
            }
        }
        request.wrote(length)
    }

    /// A request with `{seq}`, `{conn}` or `{rand:A-B}`, whose length is known only once
    /// written: each piece appended with its own check of the room. Out of line, so that
    /// its registers and stack are not the common requests' cost.
    @inline(never)
    private mutating func encodeWithVariables(into request: inout BenchRequestBuffer, steps range: Range<Int>, key: UInt, keyDigits: Int) {
        let steps = plan.steps
        let literals = UnsafeRawPointer(plan.literals.baseAddress!)
        for position in range {
            let step = steps[position]
            request.append(UnsafeRawBufferPointer(start: literals + step.start, count: step.count))
            switch step.then {
            case .none: break
            case .length(let fixed, let sequences, let connections):
                request.appendDecimal(fixed &+ digits(sequences: sequences, connections: connections))
            case .key: request.appendDecimal(key, digits: keyDigits)
            case .value: values.writeValue(into: &request)
            case .sequence: request.appendDecimal(values.context.sequence)
            case .connection: request.appendDecimal(values.context.connection)
            case .measured(let command, let argument):
                let start = request.count
                spec.commands[command].arguments[argument].write(into: &request, values: &values)
                let length = request.count - start
                // The length goes before the argument: write it, then move it in front.
                request.append(UInt8(ascii: "$"))
                request.appendDecimal(length)
                request.append("\r\n")
                rotateHeader(&request, start: start, length: length, header: request.count - start - length)
            }
        }
    }

    /// The digits `{seq}` and `{conn}` add to an argument's length. Out of line: inlined,
    /// the compiler counted both numbers' digits for every request, needed or not.
    @inline(never)
    private func digits(sequences: Int, connections: Int) -> Int {
        sequences * BenchRequestBuffer.decimalDigits(values.context.sequence.magnitude)
            + connections * BenchRequestBuffer.decimalDigits(values.context.connection.magnitude)
    }

    // `mutating` although it changes nothing, as in every built-in codec: the client then
    // calls it on its codec in place, where a non-mutating call copied the whole codec
    // (192 bytes, a memcpy call) per response (callgrind). Inlined into the client's
    // framing loop (callgrind, GET: the client's handling of a read 703 instructions per
    // response with the call, 665 without).
    @inline(__always)
    mutating func check(response: RawSpan, request: RawSpan, tag: UInt64) -> BenchOutcome {
        let kind = plan.kinds[Int(tag & 0xFFFF)]
        guard !response.isEmpty else { return .wrongResponse }
        let first = Bytes.byte(response, 0)
        if first == UInt8(ascii: "-") { return .serverError }
        switch kind {
        case .ping: return Bytes.equals(response, "+PONG\r\n") ? .ok : .wrongResponse
        case .set: return Bytes.equals(response, "+OK\r\n") ? .ok : .wrongResponse
        case .get(let checkValue):
            // A whole reply from RESPFramer, which has checked a bulk's length digits, that
            // many bytes and both CRLFs (callgrind: looking for the first CRLF again here,
            // the check cost 73 instructions per GET; 33 without).
            guard first == UInt8(ascii: "$") else { return .wrongResponse }
            if Bytes.equals(response, "$-1\r\n") { return .miss }
            guard checkValue else { return .hit }
            return holdsValue(response, forKey: Int(tag &>> 16)) ? .hit : .wrongResponse
        case .other: return .ok
        }
    }

    /// True when a bulk reply is `$<size>\r\n<value>\r\n` with the value SET writes for
    /// `key`. Out of line, so that the common checks stay small. A reply of that length
    /// whose length digits say otherwise holds fewer bytes of data (RESPFramer has checked
    /// the digits against the bytes), so the bytes compared take in the header's \n, which
    /// no value holds.
    @inline(never)
    private func holdsValue(_ response: RawSpan, forKey key: Int) -> Bool {
        guard response.byteCount == valueReplyLength else { return false }
        return response.withUnsafeBytes { reply in
            values.isValue(Bytes.slice(reply, valueOffset..<(valueReplyLength - 2)), forKey: key)
        }
    }
}

/// A mix's commands compiled to RESP once per connection: every byte known before the run
/// (the array header, literal arguments, the `$N\r\n` of arguments whose length is fixed)
/// merged into a few literal runs, so a request is those runs with its key and value
/// between them. Each command is compiled once for each digit count a key of the
/// keyspace can have: with the key's digits known, the length of an argument made of
/// literals, `{key}` and `{value}` is a literal too (callgrind, GET: the encoding from 398
/// instructions per request to 314). Only `{seq}` and `{conn}` leave a length to count
/// per request; with `{rand:A-B}` the argument is written first and its header moved in
/// front.
final class RESPPlan {
    /// `literals[start ..< start + count]`, then `then`: a literal run and the variable
    /// after it in one step (SET's seven steps were a seventh of its encoding, callgrind).
    struct Step: Equatable {
        var start: Int
        var count: Int
        var then: Variable
    }

    enum Variable: Equatable {
        /// Nothing: the command's last literal run.
        case none
        /// The decimal length of an argument of `fixed` bytes (its keys' digits included)
        /// and the `{seq}` and `{conn}` counted.
        case length(fixed: Int, sequences: Int, connections: Int)
        case key, value, sequence, connection
        /// A whole argument (header, bytes) written from its template, header moved in front.
        case measured(command: Int, argument: Int)
    }

    let literals: UnsafeMutableRawBufferPointer
    let steps: UnsafeMutableBufferPointer<Step>
    /// How many digit counts each command is compiled for: those of 0 ..< keyspace.
    let keyDigitCounts: Int
    /// The steps of each command for keys of each digit count: command `c` with a key of
    /// `d` digits at `c * keyDigitCounts + d - 1`.
    let commandSteps: UnsafeMutableBufferPointer<Range<Int>>
    /// The bytes of each of those plans' requests, or -1 for a plan with `{seq}`, `{conn}`
    /// or `{rand:A-B}`, whose length changes from request to request.
    let lengths: UnsafeMutableBufferPointer<Int>
    /// Each command's kind, by command index (for the reply check).
    let kinds: UnsafeMutableBufferPointer<CommandMix.Kind>

    init(_ mix: CommandMix, size: Int, keyspace: Int) {
        keyDigitCounts = BenchRequestBuffer.decimalDigits(UInt(Swift.max(keyspace, 1) - 1))
        var literals: [UInt8] = []
        var steps: [Step] = []
        var pending: [UInt8] = []
        var ranges: [Range<Int>] = []
        var lengths: [Int] = []
        func step(_ then: Variable) {
            steps.append(Step(start: literals.count, count: pending.count, then: then))
            literals += pending
            pending = []
        }
        for (commandIndex, command) in mix.commands.enumerated() {
            for keyDigits in 1...keyDigitCounts {
                let first = steps.count
                pending += Array("*\(command.arguments.count)\r\n".utf8)
                for (argumentIndex, argument) in command.arguments.enumerated() {
                    var fixed = 0, sequences = 0, connections = 0, measured = false
                    for piece in argument.pieces {
                        switch piece {
                        case .literal(let bytes): fixed += bytes.count
                        case .value: fixed += size
                        case .key: fixed += keyDigits
                        case .sequence: sequences += 1
                        case .connection: connections += 1
                        case .random: measured = true
                        }
                    }
                    if measured {
                        step(.measured(command: commandIndex, argument: argumentIndex))
                    } else {
                        pending.append(UInt8(ascii: "$"))
                        if sequences + connections == 0 {
                            pending += Array(String(fixed).utf8)
                        } else {
                            step(.length(fixed: fixed, sequences: sequences, connections: connections))
                        }
                        pending += Array("\r\n".utf8)
                        for piece in argument.pieces {
                            switch piece {
                            case .literal(let bytes): pending += bytes
                            case .value: step(.value)
                            case .key: step(.key)
                            case .sequence: step(.sequence)
                            case .connection: step(.connection)
                            case .random: preconditionFailure("measured above")
                            }
                        }
                    }
                    pending += Array("\r\n".utf8)
                }
                if !pending.isEmpty { step(.none) }
                ranges.append(first..<steps.count)
                var length: Int? = 0
                for step in steps[first...] {
                    switch step.then {
                    case .none: length? += step.count
                    case .key: length? += step.count + keyDigits
                    case .value: length? += step.count + size
                    case .length, .sequence, .connection, .measured: length = nil
                    }
                }
                lengths.append(length ?? -1)
            }
        }
        self.literals = .allocate(byteCount: max(literals.count, 1), alignment: 1)
        self.literals.copyBytes(from: literals)
        self.steps = .allocate(capacity: steps.count)
        _ = self.steps.initialize(from: steps)
        commandSteps = .allocate(capacity: ranges.count)
        _ = commandSteps.initialize(from: ranges)
        self.lengths = .allocate(capacity: lengths.count)
        _ = self.lengths.initialize(from: lengths)
        kinds = .allocate(capacity: mix.commands.count)
        _ = kinds.initialize(from: mix.commands.map(\.kind))
    }

    deinit {
        literals.deallocate()
        steps.deallocate()
        commandSteps.deallocate()
        lengths.deallocate()
        kinds.deallocate()
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

    /// The command at `cursor` in the schedule, moving the cursor on (round and round);
    /// the Redis and memcached codecs each keep one cursor per connection.
    func command(advancing cursor: inout Int) -> Int {
        let index = schedule[cursor]
        cursor += 1
        if cursor == schedule.count { cursor = 0 }
        return index
    }

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
    }
}

/// Cuts one whole RESP2 reply out of the stream, nested arrays included.
struct RESPFramer: Framer {
    /// The largest reply accepted: 1 MiB.
    static let defaultMaxReplyLength = 1 << 20
    let maxFrameLength = RESPFramer.defaultMaxReplyLength

    // The general parse through withUnsafeBytes, not the span's loads: their bounds checks
    // made it dearer than the call of the closure (callgrind: 143 instructions per +OK
    // against 105).
    func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        // The commonest replies, whole in the buffer, through the span's loads without the
        // call of the closure below (callgrind: 105 instructions per +OK that way, 64 this way):
        // a one-line reply (+OK, -ERR ..., :1) whose line ends within 16 bytes, and a bulk
        // string of up to ten length digits. Anything else, or short, is the general parse's.
        let count = buffer.byteCount
        if count >= 3 {
            // Every offset read below is under `count`, by the loop bounds and the checks
            // before it.
            let type = Bytes.byte(buffer, unchecked: 0)
            if type == UInt8(ascii: "+") || type == UInt8(ascii: "-") || type == UInt8(ascii: ":") {
                let end = Swift.min(count, 16)
                var position = 1
                while position < end {
                    if Bytes.byte(buffer, unchecked: position) == 10 {
                        if Bytes.byte(buffer, unchecked: position &- 1) == 13 { return .frame(payload: 0..<(position &+ 1), frameLength: position &+ 1) }
                        break  // a bare \n inside the line
                    }
                    position &+= 1
                }
            } else if type == UInt8(ascii: "$") {
                var position = 1
                var length = 0
                let digitsEnd = Swift.min(count, 11)
                while position < digitsEnd {
                    let digit = Int(Bytes.byte(buffer, unchecked: position)) &- 48
                    guard digit >= 0, digit <= 9 else { break }
                    length = length &* 10 &+ digit
                    position &+= 1
                }
                if position > 1, position &+ 1 < count, length <= maxFrameLength,
                    Bytes.byte(buffer, unchecked: position) == 13, Bytes.byte(buffer, unchecked: position &+ 1) == 10
                {
                    let end = position &+ 4 &+ length
                    if end <= count, Bytes.byte(buffer, unchecked: end &- 2) == 13, Bytes.byte(buffer, unchecked: end &- 1) == 10 {
                        return .frame(payload: 0..<end, frameLength: end)
                    }
                }
            }
        }
        return try buffer.withUnsafeBytes { bytes throws(FramingError) -> FrameSearch in
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
