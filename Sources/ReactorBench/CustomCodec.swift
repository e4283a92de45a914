import ReactorCore
import ReactorFraming

/// `--protocol custom`: requests from templates (round-robin), framed by `Framing`
/// (length prefixes and netstrings wrap the template's bytes; delimiter framings append
/// the delimiter unless the template already ends with it), responses cut by the same
/// framing and matched by ``Match`` against their payload (without delimiter or length
/// prefix). Over UDP each request is one datagram and each datagram one response.
struct CustomCodec: BenchCodec {
    let spec: CustomSpec
    private var values: TemplateValues
    private var next = 0
    private let regex: Regex<AnyRegexOutput>?

    init(spec: CustomSpec, options: BenchOptions, connection: Int, seed: UInt64) {
        self.spec = spec
        values = TemplateValues(options: options, connection: connection, seed: seed)
        next = connection % spec.templates.count
        if case .regex(let pattern) = spec.match { regex = try? Regex(pattern) } else { regex = nil }
    }

    var maxRequestLength: Int { spec.maxRequestLength }

    func makeResponseFramer() -> any Framer { spec.framing.framer(maxFrameLength: spec.maxResponseLength) }

    mutating func encodeRequest(into request: inout BenchRequestBuffer, context: BenchRequestContext) {
        let template = spec.templates[next]
        next += 1
        if next == spec.templates.count { next = 0 }
        values.begin(context)
        template.write(into: &request, values: &values)
        let length = request.count
        switch spec.framing {
        case .fixed, .datagram:
            break
        case .delimiter(let delimiter):
            let ends = request.withWritten { bytes in
                bytes.count >= delimiter.count && delimiter.withUnsafeBytes { Bytes.equals(Bytes.slice(bytes, (bytes.count - delimiter.count)..<bytes.count), $0) }
            }
            if !ends { request.append(delimiter) }
        case .lengthPrefix(let width):
            for shift in stride(from: (width.rawValue - 1) * 8, through: 0, by: -8) {
                request.append(UInt8(truncatingIfNeeded: UInt64(length) &>> UInt64(shift)))
            }
            rotateHeader(&request, start: 0, length: length, header: width.rawValue)
        case .netstring:
            request.appendDecimal(length)
            request.append(UInt8(ascii: ":"))
            rotateHeader(&request, start: 0, length: length, header: request.count - length)
            request.append(UInt8(ascii: ","))
        }
    }

    mutating func check(response: RawSpan, request: RawSpan, tag: UInt64) -> BenchOutcome {
        response.withUnsafeBytes { payload -> BenchOutcome in
            switch spec.match {
            case .any:
                return .ok
            case .echo:
                let sent = request.withUnsafeBytes { spec.framing.payload(of: $0) }
                return Bytes.equals(payload, sent) ? .ok : .wrongResponse
            case .exact(let text):
                return text.withUnsafeBytes { Bytes.equals(payload, $0) } ? .ok : .wrongResponse
            case .prefix(let text):
                return payload.count >= text.count && text.withUnsafeBytes { Bytes.equals(Bytes.slice(payload, 0..<text.count), $0) }
                    ? .ok : .wrongResponse
            case .regex:
                // Swift's Regex matches Strings: this one allocates per response (docs/bench.md).
                let text = String(decoding: payload, as: UTF8.self)
                return (try? regex!.firstMatch(in: text)) != nil ? .ok : .wrongResponse
            }
        }
    }

    func datagram(_ datagram: RawSpan, answers request: RawSpan, tag: UInt64) -> Bool {
        guard case .echo = spec.match else { return true }
        return datagram.withUnsafeBytes { d in request.withUnsafeBytes { Bytes.equals(d, $0) } }
    }
}

/// A custom run's templates, framing and match, compiled once and shared.
struct CustomSpec: Sendable {
    /// How requests and responses are framed.
    enum Framing: Sendable, Equatable {
        case delimiter([UInt8])
        case lengthPrefix(LengthPrefixFramer.Width)
        case netstring
        case fixed(Int)
        /// UDP: a datagram is a frame.
        case datagram

        /// Parses `line`, `crlf`, `int8` ... `int64`, `netstring`, `fixed:N`, `delimiter:TEXT`.
        init(_ text: String) throws(BenchError) {
            switch text {
            case "line": self = .delimiter([10])
            case "crlf": self = .delimiter([13, 10])
            case "int8": self = .lengthPrefix(.one)
            case "int16": self = .lengthPrefix(.two)
            case "int32": self = .lengthPrefix(.four)
            case "int64": self = .lengthPrefix(.eight)
            case "netstring": self = .netstring
            case "datagram": self = .datagram
            default:
                if text.hasPrefix("fixed:"), let length = Int(text.dropFirst(6)), length > 0 {
                    self = .fixed(length)
                } else if text.hasPrefix("delimiter:") {
                    let delimiter = try RequestTemplate.parse(String(text.dropFirst(10)))
                    guard case .literal(let bytes) = delimiter.pieces.first, delimiter.pieces.count == 1 else {
                        throw BenchError("--response delimiter:TEXT needs a non-empty TEXT without variables")
                    }
                    self = .delimiter(bytes)
                } else {
                    throw BenchError("--response must be line, crlf, int8, int16, int32, int64, netstring, fixed:N or delimiter:TEXT, not '\(text)'")
                }
            }
        }

        func framer(maxFrameLength: Int) -> any Framer {
            switch self {
            case .delimiter(let delimiter): DelimiterFramer(delimiter: delimiter, maxFrameLength: maxFrameLength)
            case .lengthPrefix(let width): LengthPrefixFramer(width: width, maxFrameLength: maxFrameLength)
            case .netstring: NetstringFramer(maxFrameLength: maxFrameLength)
            case .fixed(let length): FixedLengthFramer(length: length)
            case .datagram: RawFramer()
            }
        }

        /// The template's bytes inside a framed request.
        func payload(of request: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
            switch self {
            case .fixed, .datagram:
                return request
            case .delimiter(let delimiter):
                return Bytes.slice(request, 0..<(request.count - delimiter.count))
            case .lengthPrefix(let width):
                return Bytes.slice(request, width.rawValue..<request.count)
            case .netstring:
                let colon = request.firstIndex(of: UInt8(ascii: ":"))!
                return Bytes.slice(request, (colon + 1)..<(request.count - 1))
            }
        }
    }

    /// What a response's payload must be.
    enum Match: Sendable, Equatable {
        case echo, any
        case exact([UInt8])
        case prefix([UInt8])
        case regex(String)

        /// Parses `echo`, `any`, `exact:TEXT`, `prefix:TEXT` (TEXT with the template
        /// escapes) or `regex:RE`.
        init(_ text: String) throws(BenchError) {
            func literal(_ text: Substring) throws(BenchError) -> [UInt8] {
                let template = try RequestTemplate.parse(String(text))
                var bytes: [UInt8] = []
                for piece in template.pieces {
                    guard case .literal(let part) = piece else { throw BenchError("--expect TEXT cannot hold variables") }
                    bytes += part
                }
                return bytes
            }
            switch text {
            case "echo": self = .echo
            case "any": self = .any
            default:
                if text.hasPrefix("exact:") {
                    self = .exact(try literal(text.dropFirst(6)))
                } else if text.hasPrefix("prefix:") {
                    self = .prefix(try literal(text.dropFirst(7)))
                } else if text.hasPrefix("regex:") {
                    let pattern = String(text.dropFirst(6))
                    do {
                        _ = try Regex(pattern)
                    } catch {
                        throw BenchError("--expect regex:\(pattern) is not a valid regular expression: \(error)")
                    }
                    self = .regex(pattern)
                } else {
                    throw BenchError("--expect must be echo, any, exact:TEXT, prefix:TEXT or regex:RE, not '\(text)'")
                }
            }
        }
    }

    let templates: [RequestTemplate]
    let framing: Framing
    let match: Match
    let maxRequestLength: Int
    let maxResponseLength: Int

    init(options: BenchOptions, isStream: Bool) throws(BenchError) {
        guard !options.requests.isEmpty else { throw BenchError("--protocol custom needs --request TEMPLATE or --request-file FILE") }
        var templates: [RequestTemplate] = []
        for text in options.requests { templates.append(try RequestTemplate.parse(text)) }
        self.templates = templates
        if isStream {
            guard let response = options.responseFraming else { throw BenchError("--protocol custom needs --response FRAMING over TCP") }
            framing = try Framing(response)
            guard framing != .datagram else { throw BenchError("--response datagram is for --transport udp") }
        } else {
            framing = try Framing(options.responseFraming ?? "datagram")
            guard framing == .datagram else { throw BenchError("over --transport udp a datagram is one response: leave out --response") }
        }
        match = try Match(options.expect)
        let limits = TemplateLimits(connections: options.connections, keyspace: options.keyspace, size: options.size)
        maxRequestLength = templates.map { $0.maxLength(limits: limits) }.max()! + 32
        maxResponseLength = Swift.max(FramerLimits.defaultMaxFrameLength, 4 * maxRequestLength)
    }
}

extension BenchRequestBuffer {
    /// Calls `body` with the bytes written so far.
    func withWritten<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        body(UnsafeRawBufferPointer(written(from: 0)))
    }
}
