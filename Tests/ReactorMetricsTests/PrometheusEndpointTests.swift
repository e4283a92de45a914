// PrometheusEndpoint's HTTP/1.1 over real sockets: what a scrape gets, persistent
// connections and pipelining, HEAD, and every refusal (404, 405, 400, 431) closing only
// the offending connection.

import Prometheus
import ReactorCore
import ReactorMetrics
import ReactorTestSupport
import Testing

/// Starts an endpoint on a reactor of its own for `body`, the registry fed by a ReactorMetrics.
func withEndpoint(_ body: (SocketAddress) throws -> Void) throws {
    try withReactor(setup: { reactor in
        let registry = PrometheusCollectorRegistry()
        let metrics = ReactorMetrics(reactor: reactor, factory: PrometheusMetricsFactory(registry: registry))
        return try PrometheusEndpoint(reactor: reactor, host: "127.0.0.1", port: 0, registry: registry, metrics: metrics).listener.address
    }) { _, address in try body(address) }
}

/// Reads one response: its head (status line and headers) and a body of Content-Length bytes.
func readResponse(_ client: TestClient, bodyExpected: Bool = true) throws -> (head: String, body: String) {
    var received: [UInt8] = []
    let deadline = Deadline(.seconds(10))
    var headEnd: Int?
    while headEnd == nil, !deadline.hasPassed {
        let (bytes, end) = client.receiveSome(max: 1, timeout: .seconds(1))
        received += bytes
        if let end, end != .timedOut { throw TestFailure("closed (\(end)) after \(String(decoding: received, as: UTF8.self))") }
        headEnd = received.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound
    }
    let head = String(decoding: received[..<(try #require(headEnd))], as: UTF8.self)
    let length = head.split(separator: "\r\n").first { $0.hasPrefix("Content-Length: ") }.flatMap { Int($0.dropFirst(16)) } ?? 0
    let body = bodyExpected ? try client.receive(count: length) : []
    return (head, String(decoding: body, as: UTF8.self))
}

@Suite("PrometheusEndpoint: HTTP/1.1 on the reactor", .timeLimit(.minutes(1)))
struct PrometheusEndpointTests {
    @Test("GET /metrics: the exposition, counting the scrape's own connection; pipelined and kept alive")
    func scrapes() throws {
        try withEndpoint { address in
            let client = try TestClient(connectingTo: address)
            let request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
            try client.send(request + request)
            for _ in 0..<2 {
                let (head, body) = try readResponse(client)
                #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n"))
                #expect(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
                #expect(body.contains("reactor_connections_accepted{network_transport=\"tcp\"} 1\n"), "\(body)")
                #expect(body.contains("reactor_connections_active{network_transport=\"tcp\"} 1.0\n"))
                #expect(body.contains("# TYPE reactor_loop_latency histogram\n"))
            }
            try client.send("HEAD /metrics?x=1 HTTP/1.1\r\n\r\n")
            let (head, _) = try readResponse(client, bodyExpected: false)
            #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n") && head.contains("Content-Length: "))
            try client.send("GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
            let (last, _) = try readResponse(client)
            #expect(last.contains("Connection: close\r\n"))
            #expect(client.receiveUntilEnd(timeout: .seconds(5)).end == .endOfFile)
        }
    }

    @Test("404 and 405 keep the connection; a body, a bad request line or a head over 8 KiB get 400 or 431 and a close")
    func refusals() throws {
        try withEndpoint { address in
            let client = try TestClient(connectingTo: address)
            try client.send("GET /other HTTP/1.1\r\n\r\n")
            #expect(try readResponse(client).head.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
            try client.send("DELETE /metrics HTTP/1.1\r\n\r\n")
            let refused = try readResponse(client).head
            #expect(refused.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n") && refused.contains("Allow: GET, HEAD\r\n"))
            try client.send("GET /metrics HTTP/1.1\r\n\r\n")
            #expect(try readResponse(client).head.hasPrefix("HTTP/1.1 200 OK\r\n"))

            for (request, status) in [
                ("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "400 Bad Request"),
                ("hello\r\n\r\n", "400 Bad Request"),
                ("GET /metrics HTTP/2.0\r\n\r\n", "400 Bad Request"),
                ("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000), "431 Request Header Fields Too Large"),
            ] {
                let offender = try TestClient(connectingTo: address)
                try offender.send(request)
                let head = try readResponse(offender).head
                #expect(head.hasPrefix("HTTP/1.1 \(status)\r\n") && head.contains("Connection: close\r\n"), "\(head)")
                #expect(offender.receiveUntilEnd(timeout: .seconds(5)).end == .endOfFile)
            }
            // The first connection was never touched by the others' refusals.
            try client.send("GET /metrics HTTP/1.1\r\n\r\n")
            #expect(try readResponse(client).head.hasPrefix("HTTP/1.1 200 OK\r\n"))
        }
    }
}
