import ReactorCore
import ReactorFraming

/// HTTP/1.1 with keep-alive: `METHOD PATH HTTP/1.1` with a `Host` header, the
/// ``BenchOptions/headers`` and, with a ``BenchOptions/body``, its `Content-Length`;
/// paths round-robin. Responses are framed by `Content-Length` or chunked encoding (no
/// body for `HEAD`, 1xx, 204 and 304); a response without either is a framing error.
///
/// Checks: the status is counted per code; 400 and above is `http_status`. A response
/// with `Connection: close` (or an HTTP/1.0 one without keep-alive) ends the connection:
/// the client reconnects, and that is not an error.
struct HTTPCodec: BenchCodec {
    let spec: HTTPSpec
    private var values: TemplateValues
    private var next = 0

    init(spec: HTTPSpec, options: BenchOptions, connection: Int, seed: UInt64) {
        self.spec = spec
        values = TemplateValues(options: options, connection: connection, seed: seed)
        next = connection % spec.heads.count
    }

    var maxRequestLength: Int { spec.maxRequestLength }

    func makeResponseFramer() -> any Framer { HTTPResponseFramer(noBody: spec.isHead) }

    mutating func encodeRequest(into request: inout BenchRequestBuffer, context: BenchRequestContext) {
        let head = spec.heads[next]
        next += 1
        if next == spec.heads.count { next = 0 }
        values.begin(context)
        head.write(into: &request, values: &values)
        guard let body = spec.body else {
            request.append("\r\n")
            return
        }
        let start = request.count
        body.write(into: &request, values: &values)
        let length = request.count - start
        request.append("Content-Length: ")
        request.appendDecimal(length)
        request.append("\r\n\r\n")
        rotateHeader(&request, start: start, length: length, header: request.count - start - length)
    }

    mutating func check(response: RawSpan, request: RawSpan, tag: UInt64) -> BenchOutcome {
        response.withUnsafeBytes { bytes -> BenchOutcome in
            // The framer has checked "HTTP/1.x NNN" and the head's end.
            let code = UInt16(bytes[9] - 48) * 100 + UInt16(bytes[10] - 48) * 10 + UInt16(bytes[11] - 48)
            var closes = bytes[7] == UInt8(ascii: "0")  // HTTP/1.0: closes unless it says keep-alive
            var lineStart = Bytes.findCRLF(bytes, from: 0)! + 2
            while let lineEnd = Bytes.findCRLF(bytes, from: lineStart), lineEnd > lineStart {
                let colon = lineStart + 10  // "Connection:"
                if lineEnd > colon, bytes[colon] == UInt8(ascii: ":"), Bytes.equalsIgnoringCase(bytes, lineStart..<colon, "connection") {
                    if Bytes.containsIgnoringCase(bytes, (colon + 1)..<lineEnd, "close") { closes = true }
                    if Bytes.containsIgnoringCase(bytes, (colon + 1)..<lineEnd, "keep-alive") { closes = false }
                }
                lineStart = lineEnd + 2
            }
            return BenchOutcome(verdict: code >= 400 ? .httpStatus : .ok, statusCode: code, closesConnection: closes)
        }
    }
}

/// An HTTP run's requests, compiled once and shared by every connection.
struct HTTPSpec: Sendable {
    /// Per path: the request line and headers, up to (not including) the blank line.
    let heads: [RequestTemplate]
    let body: RequestTemplate?
    let isHead: Bool
    let maxRequestLength: Int

    init(options: BenchOptions) throws(BenchError) {
        let method = options.method
        guard !method.isEmpty, method.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
            throw BenchError("--method must be a token such as GET, not '\(method)'")
        }
        var headers = "Host: \(options.host):\(options.port)\\r\\n"
        for header in options.headers {
            guard header.contains(":") else { throw BenchError("--header must be 'Name: value', not '\(header)'") }
            headers += header + "\\r\\n"
        }
        guard !options.paths.isEmpty else { throw BenchError("--path needs at least one path") }
        var heads: [RequestTemplate] = []
        for path in options.paths {
            guard path.hasPrefix("/") || path == "*" || path.hasPrefix("http") else {
                throw BenchError("--path must start with /, not '\(path)'")
            }
            heads.append(try RequestTemplate.parse("\(method) \(path) HTTP/1.1\\r\\n" + headers))
        }
        self.heads = heads
        body = try options.body.map { body throws(BenchError) in try RequestTemplate.parse(body) }
        isHead = method == "HEAD"
        let limits = TemplateLimits(connections: options.connections, keyspace: options.keyspace, size: options.size)
        maxRequestLength = heads.map { $0.maxLength(limits: limits) }.max()! + (body?.maxLength(limits: limits) ?? 0) + 64
    }
}

/// Cuts one HTTP/1.1 response out of the stream: the head, then a body of
/// `Content-Length` bytes or chunks up to the last. The frame is the whole response.
struct HTTPResponseFramer: Framer {
    /// The response to a HEAD request: never a body.
    let noBody: Bool
    let maxFrameLength = RESPFramer.defaultMaxReplyLength
    /// The largest head accepted.
    static let maxHeadLength = 64 * 1024

    func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        try buffer.withUnsafeBytes { bytes throws(FramingError) -> FrameSearch in
            guard bytes.count >= 12 else { return .needMore(atLeast: 12 - bytes.count) }
            guard Bytes.hasPrefix(bytes, "HTTP/1."), bytes[8] == UInt8(ascii: " "),
                (9...11).allSatisfy({ bytes[$0] >= 48 && bytes[$0] <= 57 })
            else { throw .malformedHeader("not an HTTP/1.x status line") }
            let code = Int(bytes[9] - 48) * 100 + Int(bytes[10] - 48) * 10 + Int(bytes[11] - 48)
            var contentLength: Int?
            var chunked = false
            guard var lineStart = Bytes.findCRLF(bytes, from: 0).map({ $0 + 2 }) else {
                guard bytes.count < HTTPResponseFramer.maxHeadLength else { throw .frameTooLong(length: nil, limit: HTTPResponseFramer.maxHeadLength) }
                return .needMore(atLeast: 1)
            }
            while true {
                guard let lineEnd = Bytes.findCRLF(bytes, from: lineStart) else {
                    guard bytes.count < HTTPResponseFramer.maxHeadLength else { throw .frameTooLong(length: nil, limit: HTTPResponseFramer.maxHeadLength) }
                    return .needMore(atLeast: 1)
                }
                if lineEnd == lineStart { break }
                if let colon = bytes[lineStart..<lineEnd].firstIndex(of: UInt8(ascii: ":")) {
                    var valueStart = colon + 1
                    while valueStart < lineEnd, bytes[valueStart] == UInt8(ascii: " ") || bytes[valueStart] == 9 { valueStart += 1 }
                    var valueEnd = lineEnd
                    while valueEnd > valueStart, bytes[valueEnd - 1] == UInt8(ascii: " ") || bytes[valueEnd - 1] == 9 { valueEnd -= 1 }
                    if Bytes.equalsIgnoringCase(bytes, lineStart..<colon, "content-length") {
                        guard let length = Bytes.decimal(bytes, valueStart..<valueEnd), length >= 0 else {
                            throw .malformedHeader("bad Content-Length")
                        }
                        contentLength = length
                    } else if Bytes.equalsIgnoringCase(bytes, lineStart..<colon, "transfer-encoding") {
                        chunked = Bytes.containsIgnoringCase(bytes, valueStart..<valueEnd, "chunked")
                    }
                }
                lineStart = lineEnd + 2
            }
            let bodyStart = lineStart + 2
            if noBody || code < 200 || code == 204 || code == 304 {
                return .frame(payload: 0..<bodyStart, frameLength: bodyStart)
            }
            if chunked {
                var position = bodyStart
                while true {
                    guard let sizeEnd = Bytes.findCRLF(bytes, from: position) else { return .needMore(atLeast: 1) }
                    var digitsEnd = position
                    var size = 0
                    while digitsEnd < sizeEnd, let digit = hexDigit(bytes[digitsEnd]) {
                        size = size * 16 + digit
                        digitsEnd += 1
                        guard size <= maxFrameLength else { throw .frameTooLong(length: size, limit: maxFrameLength) }
                    }
                    guard digitsEnd > position else { throw .malformedHeader("bad chunk size") }
                    position = sizeEnd + 2
                    if size == 0 {
                        // Trailers, then the blank line.
                        while true {
                            guard let end = Bytes.findCRLF(bytes, from: position) else { return .needMore(atLeast: 1) }
                            let blank = end == position
                            position = end + 2
                            if blank { return .frame(payload: 0..<position, frameLength: position) }
                        }
                    }
                    let end = position + size + 2
                    guard end <= maxFrameLength else { throw .frameTooLong(length: end, limit: maxFrameLength) }
                    guard end <= bytes.count else { return .needMore(atLeast: end - bytes.count) }
                    guard bytes[end - 2] == 13, bytes[end - 1] == 10 else { throw .malformedTrailer("chunk without \\r\\n") }
                    position = end
                }
            }
            guard let contentLength else {
                throw .malformedHeader("HTTP response without Content-Length or chunked encoding (a body to the close is not supported)")
            }
            let end = bodyStart + contentLength
            guard end <= maxFrameLength else { throw .frameTooLong(length: end, limit: maxFrameLength) }
            guard end <= bytes.count else { return .needMore(atLeast: end - bytes.count) }
            return .frame(payload: 0..<end, frameLength: end)
        }
    }

    private func hexDigit(_ byte: UInt8) -> Int? {
        switch byte {
        case 48...57: Int(byte - 48)
        case 65...70: Int(byte - 55)
        case 97...102: Int(byte - 87)
        default: nil
        }
    }

    func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int { 0 }
}
