import Glibc
import Prometheus
import ReactorCore

/// Serves a Prometheus registry's text exposition at `/metrics` over HTTP/1.1, from a
/// listener on the reactor itself: `reactor serve --metrics HOST:PORT` is one.
///
/// The HTTP side is a small `ConnectionHandler` of its own (GET and HEAD,
/// persistent connections and pipelining, no request bodies), an example of a protocol
/// on the framework. Every limit has a default: a request head over
/// ``maxRequestHeadLength`` is answered 431 and the connection closed, a request with a
/// body 400, an unknown path 404, another method 405; a connection idle for
/// ``idleTimeout`` is closed; at most ``maxConnections`` are open. Before each response
/// the ``ReactorMetrics`` given flushes, so a scrape sees the counts of that moment. The
/// endpoint's own connections count in the reactor's metrics like any other.
public final class PrometheusEndpoint {
    /// The largest request head accepted (request line and headers): 8 KiB.
    public static let maxRequestHeadLength = 8192
    /// How long a connection may idle between requests: 30 s.
    public static let idleTimeout: Duration = .seconds(30)
    /// The most connections open at once: 64.
    public static let maxConnections = 64

    /// The listener; its address has the real port when port 0 was asked for.
    public let listener: TCPListener
    /// The registry served.
    public let registry: PrometheusCollectorRegistry
    /// Flushed before each response, when given.
    public let metrics: ReactorMetrics?

    /// Listens on `host` and `port` on `reactor` and serves `registry`.
    ///
    /// - Throws: `ReactorError` when the listener cannot be opened
    ///   (address in use, bad host, ...).
    public init(
        reactor: Reactor, host: String, port: Int, registry: PrometheusCollectorRegistry, metrics: ReactorMetrics? = nil
    ) throws(ReactorError) {
        self.registry = registry
        self.metrics = metrics
        var options = ListenerOptions()
        options.maxConnections = Self.maxConnections
        var connectionOptions = ConnectionOptions()
        connectionOptions.idleTimeout = Self.idleTimeout
        let exposition = Exposition(registry: registry, metrics: metrics)
        listener = try reactor.listen(host: host, port: port, options: options, connectionOptions: connectionOptions) { _ in
            MetricsHTTPHandler(exposition: exposition)
        }
    }

    /// Stops listening; connections already open finish their requests.
    public func close() {
        listener.close()
    }
}

/// What a scrape gets: the registry's text after a flush.
struct Exposition {
    let registry: PrometheusCollectorRegistry
    let metrics: ReactorMetrics?

    func render() -> [UInt8] {
        metrics?.flush()
        return registry.emitToBuffer()
    }
}

/// One HTTP/1.1 connection to the endpoint: request heads are gathered (bounded), each
/// answered in order; output above the high watermark pauses reading until it drains.
final class MetricsHTTPHandler: ConnectionHandler {
    private let exposition: Exposition
    private var head: [UInt8] = []

    init(exposition: Exposition) {
        self.exposition = exposition
    }

    func received(_ bytes: RawSpan, on connection: Connection) {
        bytes.withUnsafeBytes { head.append(contentsOf: $0) }
        answer(on: connection)
    }

    func writabilityChanged(_ connection: Connection) {
        guard connection.isWritable else { return }
        connection.resumeReading()
        answer(on: connection)
    }

    /// Answers every whole request head buffered, while the connection takes output.
    private func answer(on connection: Connection) {
        while connection.phase == .open {
            guard connection.isWritable else {
                connection.pauseReading()
                return
            }
            guard let end = headEnd() else {
                if head.count > PrometheusEndpoint.maxRequestHeadLength {
                    respond(431, "Request Header Fields Too Large", close: true, on: connection)
                }
                return
            }
            guard end <= PrometheusEndpoint.maxRequestHeadLength else {
                respond(431, "Request Header Fields Too Large", close: true, on: connection)
                return
            }
            let request = HTTPRequestHead(parsing: head[..<end])
            head.removeFirst(end + 4)
            handle(request, on: connection)
        }
    }

    /// The offset of the CRLF CRLF that ends the first request head, if it has come.
    private func headEnd() -> Int? {
        guard head.count >= 4 else { return nil }
        for index in 0...(head.count - 4)
        where head[index] == 13 && head[index + 1] == 10 && head[index + 2] == 13 && head[index + 3] == 10 {
            return index
        }
        return nil
    }

    private func handle(_ request: HTTPRequestHead?, on connection: Connection) {
        guard let request else {
            respond(400, "Bad Request", close: true, on: connection)
            return
        }
        guard !request.hasBody else {
            // Nothing here takes a body, and skipping one safely would mean parsing it.
            respond(400, "Bad Request", close: true, on: connection)
            return
        }
        let close = request.wantsClose
        guard request.method == "GET" || request.method == "HEAD" else {
            respond(405, "Method Not Allowed", extraHeaders: "Allow: GET, HEAD\r\n", close: close, on: connection)
            return
        }
        let path = request.target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard path == "/metrics" else {
            respond(404, "Not Found", close: close, on: connection)
            return
        }
        let body = exposition.render()
        var response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        response += "Content-Length: \(body.count)\r\n"
        if close { response += "Connection: close\r\n" }
        response += "\r\n"
        connection.withBatchedWrites {
            connection.write(response)
            if request.method == "GET" { connection.write(body) }
        }
        if close { connection.close() }
    }

    private func respond(_ status: Int, _ reason: String, extraHeaders: String = "", close: Bool, on connection: Connection) {
        let body = "\(status) \(reason)\n"
        var response = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: text/plain; charset=utf-8\r\n"
        response += "Content-Length: \(body.utf8.count)\r\n\(extraHeaders)"
        if close { response += "Connection: close\r\n" }
        response += "\r\n\(body)"
        connection.write(response)
        if close {
            head.removeAll()
            connection.close()
        }
    }
}

/// The parts of an HTTP/1.x request head the endpoint needs.
struct HTTPRequestHead {
    var method: String
    var target: String
    var version: String
    /// Connection: close, or HTTP/1.0 without keep-alive.
    var wantsClose: Bool
    /// A Content-Length above 0 or any Transfer-Encoding.
    var hasBody: Bool

    /// Parses a head without its final CRLF CRLF; nil when it is not HTTP/1.0 or 1.1.
    init?(parsing bytes: ArraySlice<UInt8>) {
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let requestLine = lines.first?.split(separator: " ", omittingEmptySubsequences: false) ?? []
        guard requestLine.count == 3, !requestLine[0].isEmpty, requestLine[1].hasPrefix("/"),
              requestLine[2] == "HTTP/1.1" || requestLine[2] == "HTTP/1.0"
        else { return nil }
        method = String(requestLine[0])
        target = String(requestLine[1])
        version = String(requestLine[2])
        var connectionTokens: [String] = []
        hasBody = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else { return nil }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingSpaces
            switch name {
            case "connection":
                connectionTokens += value.lowercased().split(separator: ",").map { String($0).trimmingSpaces }
            case "content-length":
                guard let length = Int(value), length >= 0 else { return nil }
                if length > 0 { hasBody = true }
            case "transfer-encoding":
                hasBody = true
            default:
                break
            }
        }
        wantsClose = connectionTokens.contains("close") || (version == "HTTP/1.0" && !connectionTokens.contains("keep-alive"))
    }
}

extension StringProtocol {
    fileprivate var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
