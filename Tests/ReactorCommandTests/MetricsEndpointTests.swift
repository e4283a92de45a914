// `reactor serve --metrics HOST:PORT`: known TCP and UDP traffic through a spawned server,
// then its /metrics scraped over HTTP/1.1 and read with a Prometheus text parser we did not
// write (prometheus_client's, from PyPI, through Tests/Interop/parse_prometheus.py), every
// number checked against what was sent.
//
// prometheus_client comes from pip (`make test` installs it). Without it the test is
// skipped, except under CI, where a missing prometheus_client fails it.

import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// A kept-alive HTTP/1.1 connection to a metrics endpoint that counts what it sent and got.
final class ScrapeConnection {
    let client: TestClient
    /// Bytes of every request sent so far.
    private(set) var requestBytes = 0
    /// Bytes of every response received so far (heads and bodies).
    private(set) var responseBytes = 0
    /// Bytes of the last response.
    private(set) var lastResponseBytes = 0

    init(_ address: SocketAddress) throws {
        client = try TestClient(connectingTo: address)
    }

    /// GETs `path`; returns the status and the body.
    func get(_ path: String) throws -> (status: Int, body: [UInt8]) {
        let request = Array("GET \(path) HTTP/1.1\r\nHost: test\r\nAccept: text/plain\r\n\r\n".utf8)
        try client.send(request)
        requestBytes += request.count
        var received: [UInt8] = []
        let deadline = Deadline(.seconds(10))
        var headEnd: Int?
        while headEnd == nil {
            guard !deadline.hasPassed else { throw TestFailure("no response head within 10 s: \(received)") }
            let (bytes, end) = client.receiveSome(timeout: .seconds(1))
            received += bytes
            if let end, end != .timedOut { throw TestFailure("the endpoint closed (\(end)) before answering") }
            headEnd = received.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound
        }
        let head = String(decoding: received[..<headEnd!], as: UTF8.self)
        let lines = head.split(separator: "\r\n")
        let status = try #require(Int(lines.first?.split(separator: " ").dropFirst().first ?? ""), "status line: \(head)")
        let length = try #require(
            lines.first { $0.lowercased().hasPrefix("content-length:") }.flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) },
            "no Content-Length in \(head)")
        var body = Array(received[headEnd!...])
        if body.count < length { body += try client.receive(count: length - body.count) }
        lastResponseBytes = headEnd! + body.count
        responseBytes += lastResponseBytes
        return (status, body)
    }
}

/// What parse_prometheus.py made of an exposition.
struct ParsedMetrics {
    let families: [String: String]
    let samples: [(name: String, labels: [String: String], value: Double)]

    static let script = packageRoot.appendingPathComponent("Tests/Interop/parse_prometheus.py").path

    init(parsing text: [UInt8]) async throws {
        let path = try temporaryFile(String(decoding: text, as: UTF8.self), name: "metrics.txt")
        let parser = try ChildProcess("/usr/bin/env", ["python3", Self.script, path])
        let status = await parser.waitForExit(timeout: .seconds(30))
        guard status == 0 else {
            throw TestFailure("prometheus_client refused the exposition (\(String(describing: status))): \(parser.standardError)\n\(String(decoding: text, as: UTF8.self))")
        }
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(parser.standardOutput.utf8)) as? [String: Any], "not JSON: \(parser.standardOutput)")
        families = try #require(json["families"] as? [String: String])
        samples = try #require(json["samples"] as? [[Any]]).map { sample in
            (sample[0] as! String, sample[1] as! [String: String], (sample[2] as! NSNumber).doubleValue)
        }
    }

    /// The value of the sample with exactly these labels, or nil.
    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}

@Suite(
    "reactor serve --metrics: the Prometheus endpoint after known traffic", .timeLimit(.minutes(1)),
    .disabled(
        if: !prometheusClientAvailable && !runningInCI,
        "prometheus_client is not installed: `python3 -m pip install prometheus_client` (make test does) to run it"))
struct MetricsEndpointTests {
    @Test("counts of TCP line echo and rate-limited UDP echo, read by prometheus_client, match the traffic")
    func scrapeAfterTraffic() async throws {
        guard prometheusClientAvailable else {
            Issue.record("CI is set but python3 cannot import prometheus_client; install it with `python3 -m pip install prometheus_client` (make test does)")
            return
        }
        // A reply limit no burst of this test outlasts: two answers, then none.
        let served = try await Served.start(
            ["echo", "--port", "0", "--framing", "line", "--udp-rate", "0.001", "--udp-burst", "2", "--metrics", "127.0.0.1:0"],
            lineCount: 3)
        let metricsAddress = try served.address("http", "metrics")

        var tcpBytes = 0
        for client in 0..<2 {
            let connection = try TestClient(connectingTo: try served.address("tcp", "echo"))
            var expected: [UInt8] = []
            for line in 0..<10 {
                let text = Array("connection \(client), line \(line)\n".utf8)
                expected += text
                try connection.send(text)
            }
            tcpBytes += expected.count
            #expect(try connection.receive(count: expected.count) == expected)
            connection.shutdownWrite()
            #expect(connection.receiveUntilEnd(timeout: .seconds(5)).end == .endOfFile)
        }
        let datagrams = try UDPTestClient()
        for index in 0..<5 { try datagrams.send(Array(repeating: UInt8(index), count: 32), to: try served.address("udp", "echo")) }
        #expect(datagrams.receiveAll(quiet: .milliseconds(300)).count == 2)

        let scrape = try ScrapeConnection(metricsAddress)
        // Closes finish after the peers' FINs, and the loop latency needs one flush-timer
        // firing (1 s): scrape until both show, each scrape itself counted.
        let deadline = Deadline(.seconds(15))
        var parsed: ParsedMetrics
        repeat {
            let (status, body) = try scrape.get("/metrics")
            try #require(status == 200)
            parsed = try await ParsedMetrics(parsing: body)
            if parsed.value("reactor_connections_closed_total", ["network_transport": "tcp", "reactor_close_reason": "normal"]) == 2,
               (parsed.value("reactor_loop_latency_count") ?? 0) >= 1 { break }
            try await Task.sleep(for: .milliseconds(200))
        } while !deadline.hasPassed
        let tcp = ["network_transport": "tcp"]
        let udp = ["network_transport": "udp"]
        // The parser names a counter's samples NAME_total, whatever the exposition says.
        #expect(parsed.families["reactor_connections_accepted"] == "counter")
        #expect(parsed.families["reactor_connections_active"] == "gauge")
        #expect(parsed.families["reactor_loop_latency"] == "histogram")
        #expect(parsed.value("reactor_connections_accepted_total", tcp) == 3)  // two echo clients and the scrape
        #expect(parsed.value("reactor_connections_active", tcp) == 1)  // the scrape
        for reason in ["reset", "idle_timeout", "close_timeout", "limit", "framing_error", "output_budget", "aborted", "error"] {
            #expect(parsed.value("reactor_connections_closed_total", tcp.merging(["reactor_close_reason": reason]) { $1 }) == 0, "\(reason)")
        }
        // A request is counted when read, before its response is rendered; the response is
        // counted once sent, so the last one is not in its own body.
        #expect(parsed.value("reactor_network_io_total", tcp.merging(["network_io_direction": "receive"]) { $1 }) == Double(tcpBytes + scrape.requestBytes))
        let transmitted = try #require(parsed.value("reactor_network_io_total", tcp.merging(["network_io_direction": "transmit"]) { $1 }))
        #expect(transmitted == Double(tcpBytes + scrape.responseBytes - scrape.lastResponseBytes))
        #expect(parsed.value("reactor_frames_total", tcp.merging(["network_io_direction": "receive"]) { $1 }) == 20)
        #expect(parsed.value("reactor_frames_total", tcp.merging(["network_io_direction": "transmit"]) { $1 }) == 20)
        #expect(parsed.value("reactor_udp_datagrams_total", udp.merging(["network_io_direction": "receive"]) { $1 }) == 5)
        #expect(parsed.value("reactor_udp_datagrams_total", udp.merging(["network_io_direction": "transmit"]) { $1 }) == 2)
        #expect(parsed.value("reactor_network_io_total", udp.merging(["network_io_direction": "receive"]) { $1 }) == 160)
        #expect(parsed.value("reactor_network_io_total", udp.merging(["network_io_direction": "transmit"]) { $1 }) == 64)
        #expect(parsed.value("reactor_udp_datagrams_rate_limited_total", udp) == 3)
        #expect(parsed.value("reactor_udp_datagrams_refused_total", udp) == 0)
        #expect(parsed.value("reactor_udp_datagrams_truncated_total", udp) == 0)
        #expect(!parsed.samples.contains { $0.name == "reactor_accept_errors_total" })
        await served.stop()
    }

    @Test("--threads 2: every reactor reports under its reactor_index, and the sums match the traffic")
    func everyReactorOfAGroupReports() async throws {
        guard prometheusClientAvailable else {
            Issue.record("CI is set but python3 cannot import prometheus_client; install it with `python3 -m pip install prometheus_client` (make test does)")
            return
        }
        let served = try await Served.start(
            ["echo", "--port", "0", "--tcp-only", "--threads", "2", "--metrics", "127.0.0.1:0", "--metrics-interval", "0.2"],
            lineCount: 2)
        var sent = 0
        for client in 0..<8 {
            let connection = try TestClient(connectingTo: try served.address("tcp", "echo"))
            let text = Array("client \(client)\n".utf8)
            try connection.send(text)
            #expect(try connection.receive(count: text.count) == text)
            sent += text.count
            connection.shutdownWrite()
            #expect(connection.receiveUntilEnd(timeout: .seconds(5)).end == .endOfFile)
        }
        let scrape = try ScrapeConnection(try served.address("http", "metrics"))
        // Generous: one scrape is a python3 start, seconds on a loaded machine.
        let deadline = Deadline(.seconds(30))
        var parsed: ParsedMetrics
        func sum(_ name: String, _ labels: [String: String]) -> Double {
            (0..<2).compactMap { parsed.value(name, labels.merging(["reactor_index": "\($0)"]) { $1 }) }.reduce(0, +)
        }
        // Reactor 1's counts arrive with its flush timer: scrape until both reactors' closes show.
        repeat {
            let (status, body) = try scrape.get("/metrics")
            try #require(status == 200)
            parsed = try await ParsedMetrics(parsing: body)
            if sum("reactor_connections_closed_total", ["network_transport": "tcp", "reactor_close_reason": "normal"]) == 8 { break }
            try await Task.sleep(for: .milliseconds(200))
        } while !deadline.hasPassed
        let tcp = ["network_transport": "tcp"]
        #expect(sum("reactor_connections_closed_total", tcp.merging(["reactor_close_reason": "normal"]) { $1 }) == 8)
        #expect(sum("reactor_connections_accepted_total", tcp) == 9)  // and the scrape, on reactor 0
        for index in 0..<2 {
            #expect(parsed.value("reactor_connections_active", tcp.merging(["reactor_index": "\(index)"]) { $1 }) != nil, "reactor \(index)")
            #expect(parsed.samples.contains { $0.name == "reactor_loop_latency_count" && $0.labels == ["reactor_index": "\(index)"] })
        }
        #expect(sum("reactor_network_io_total", tcp.merging(["network_io_direction": "receive"]) { $1 }) == Double(sent + scrape.requestBytes))
        await served.stop()
    }

    @Test("accepts refused for want of descriptors are counted as EMFILE")
    func acceptErrorsByErrno() async throws {
        guard prometheusClientAvailable else {
            Issue.record("CI is set but python3 cannot import prometheus_client; install it with `python3 -m pip install prometheus_client` (make test does)")
            return
        }
        // `ulimit -n` sets the soft and hard limits, so the server cannot raise it back.
        let child = try ChildProcess(
            "/bin/bash", ["-c", "ulimit -n 40 && exec '\(try reactorExecutable())' serve echo --port 0 --tcp-only --metrics 127.0.0.1:0"])
        defer { child.signal(SIGKILL) }
        try await eventually("two listening lines", timeout: .seconds(10)) {
            child.standardOutput.filter { $0 == "\n" }.count >= 2 || !child.process.isRunning
        }
        let lines = child.standardOutput.split(separator: "\n").map(String.init)
        let echo = try SocketAddress(ip: "127.0.0.1", port: try #require(listeningPort(in: lines[0]), "\(lines)"))
        let metricsPort = try #require(lines.count == 2 ? Int(lines[1].split(separator: ":").last?.split(separator: " ").first ?? "") : nil, "\(lines)")
        var clients = try (0..<60).map { _ in try TestClient(connectingTo: echo) }
        #expect(child.waitForStandardError(containing: "accept paused", timeout: .seconds(10)), "stderr: \(child.standardError)")
        clients.removeAll()  // descriptors free again: accepting resumes, the scrape gets in
        let scrape = try ScrapeConnection(try SocketAddress(ip: "127.0.0.1", port: metricsPort))
        let (status, body) = try scrape.get("/metrics")
        #expect(status == 200)
        let parsed = try await ParsedMetrics(parsing: body)
        let emfile = parsed.value("reactor_accept_errors_total", ["network_transport": "tcp", "error_type": "EMFILE"])
        #expect((emfile ?? 0) >= 1, "\(parsed.samples.filter { $0.name.hasPrefix("reactor_accept") })")
        #expect(parsed.value("reactor_connections_accepted_total", ["network_transport": "tcp"]).map { $0 >= 30 } == true)
    }
}
