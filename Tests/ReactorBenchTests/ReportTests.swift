import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import ReactorBench
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

extension BenchTests {
    /// The JSON, the summary, the suite's files, and the parsing of what users type.
    @Suite struct ReportTests {
        /// The keys issue 5 asks `--json` for.
        static let requiredKeys = [
            "target", "protocol", "connections", "depth", "size", "rate", "duration_s", "warmup_s", "requests", "errors",
            "rps", "bytes_per_s", "latency_us", "latency_uncorrected_us", "client_cpu_s", "server_cpu_s", "server_peak_rss_kb",
        ]

        @Test func jsonHasTheIssuesKeysWithNullsWhereNothingWasMeasured() throws {
            try withServer(makeHandler: { _, _ in ByteEcho() }) { server in
                var options = BenchOptions()
                options.port = server.port
                options.connections = 2
                options.warmup = .zero
                options.duration = .milliseconds(500)
                let result = try BenchRunner.run(options)
                let object = try #require(try JSONSerialization.jsonObject(with: Data(result.json.utf8)) as? [String: Any])
                for key in Self.requiredKeys { #expect(object[key] != nil, "missing \(key)") }
                #expect(object["rate"] is NSNull)
                #expect(object["server_cpu_s"] is NSNull)
                #expect(object["server_peak_rss_kb"] is NSNull)
                let latency = try #require(object["latency_us"] as? [String: Double])
                #expect(Set(latency.keys) == ["p50", "p90", "p99", "p999", "p9999", "max"])
                #expect(object["latency_uncorrected_us"] as? [String: Double] == latency)
                #expect(object["requests"] as? Int == result.requests)
            }
        }

        @Test func serverFiguresComeFromProc() throws {
            try withServer(makeHandler: { _, _ in ByteEcho() }) { server in
                var options = BenchOptions()
                options.port = server.port
                options.connections = 4
                options.warmup = .zero
                options.duration = .milliseconds(500)
                options.serverPID = getpid()  // the server runs in this process
                let result = try BenchRunner.run(options)
                #expect((result.serverCPUSeconds ?? 0) > 0)
                #expect((result.serverPeakRSSKiB ?? 0) > 1000)
                #expect(BenchSummary.text(result).contains("server CPU"))
            }
        }

        @Test func endpointsAndTargetsParse() throws {
            #expect(BenchTarget.parseEndpoint("127.0.0.1:80")! == ("127.0.0.1", 80))
            #expect(BenchTarget.parseEndpoint("[::1]:7007")! == ("::1", 7007))
            #expect(BenchTarget.parseEndpoint(":9")! == ("127.0.0.1", 9))
            #expect(BenchTarget.parseEndpoint("host") == nil)
            #expect(BenchTarget.parseEndpoint("host:0") == nil)
            let target = try SuiteTarget.parseTarget("c=127.0.0.1:9000,pid=42")
            #expect(target == SuiteTarget(name: "c", host: "127.0.0.1", port: 9000, pid: 42))
            let spawn = try SuiteTarget.parseSpawn("reactor=reactor serve echo --port {port} --framing {framing}")
            #expect(spawn.commands == [SuiteTarget.Command("reactor serve echo --port {port} --framing {framing}")])
            let lines = try SuiteTarget.parseSpawn("c:lines,pipelined-int32=c-server {port}")
            #expect(lines.commands.first?.scenarios == ["pipelined-lines", "pipelined-int32"])
            #expect(throws: BenchError.self) { try SuiteTarget.parseSpawn("x=server 7007") }
            #expect(throws: BenchError.self) { try SuiteTarget.parseTarget("x=127.0.0.1:1,cpu=3") }
            #expect(ProcessStats.parseCPUList("0,2-3") == [0, 2, 3])
            var merged = [spawn]
            try SuiteTarget.merge(lines, into: &merged)
            try SuiteTarget.merge(try SuiteTarget.parseSpawn("c:udp=other {port}"), into: &merged)
            #expect(merged.map(\.name) == ["reactor", "c"])
            #expect(merged[1].commands.count == 2)
            #expect(throws: BenchError.self) { try SuiteTarget.merge(target, into: &merged) }  // a running "c" as well
            #expect(ProcessStats.parseCPUList("3-1") == nil)
        }

        @Test func peersFilesGroupCommandsByName() throws {
            let text = """
                # comment

                libevent\tpingpong,churn,idle\tBenchmarks/bin/libevent_echo 127.0.0.1 {port}
                libevent\tlines\tBenchmarks/bin/libevent_line_echo 127.0.0.1 {port}
                twisted\tudp\tpython3 echo_server.py udp --port {port}
                """
            let peers = try SuiteTarget.parsePeers(text)
            #expect(peers.map(\.name) == ["libevent", "twisted"])
            #expect(peers[0].commands.count == 2)
            #expect(peers[0].commands[0].scenarios == ["ping-pong", "churn", "idle-memory"])
            #expect(peers[1].commands[0].scenarios == ["udp-echo"])
            #expect(throws: BenchError.self) { try SuiteTarget.parsePeers("x\tpingpong\tno-port-here") }
            #expect(throws: BenchError.self) { try SuiteTarget.parsePeers("x\tnope\tserver {port}") }
        }

        @Test func badOptionsAreRefusedWithAReason() {
            var options = BenchOptions()
            options.protocol = .udp
            options.size = 4
            #expect(throws: BenchError.self) { try options.validate() }
            options.size = 64
            options.mode = .churn
            #expect(throws: BenchError.self) { try options.validate() }
        }

        @Test func suiteWritesTablesChartsAndJSONAndSkipsWhatATargetCannotDo() throws {
            try withServer(makeHandler: { _, _ in ByteEcho() }) { echo in
                try withServer(makeHandler: { _, _ in
                    FramedConnection(framer: DelimiterFramer.line(), handler: LineEchoHandler())
                }) { lineOnly in
                    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bench-suite-\(getpid())").path
                    defer { try? FileManager.default.removeItem(atPath: folder) }
                    var configuration = BenchSuite.Configuration()
                    configuration.targets = [
                        try SuiteTarget.parseTarget("echo=127.0.0.1:\(echo.port)"),
                        try SuiteTarget.parseTarget("lines=127.0.0.1:\(lineOnly.port)"),
                    ]
                    configuration.scenarios = ["pipelined-lines", "pipelined-int32", "idle-memory"].compactMap(SuiteScenario.named)
                    configuration.duration = .milliseconds(400)
                    configuration.warmup = .zero
                    configuration.serverCPUs = nil
                    configuration.clientCPUs = nil
                    configuration.outputFolder = folder
                    let outcomes = try BenchSuite(configuration) { _ in }.run()
                    #expect(outcomes.count == 6)
                    let readme = try String(contentsOfFile: "\(folder)/README.md", encoding: .utf8)
                    #expect(readme.contains("| echo |"))
                    #expect(readme.contains("lines: skipped: does not answer int32"))
                    #expect(readme.contains("needs the server's pid"))
                    #expect(FileManager.default.fileExists(atPath: "\(folder)/echo-pipelined-lines.json"))
                    #expect(FileManager.default.fileExists(atPath: "\(folder)/lines-pipelined-lines.json"))
                    #expect(!FileManager.default.fileExists(atPath: "\(folder)/lines-pipelined-int32.json"))
                    let svg = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/pipelined-lines.svg"))
                    let parser = XMLParser(data: svg)
                    #expect(parser.parse(), "the chart is well-formed XML")
                    #expect(String(decoding: svg, as: UTF8.self).contains("lines"))
                }
            }
        }
    }
}

/// A line echo that knows nothing else: int32 frames never make a line it answers.
final class LineEchoHandler: FrameHandler {
    func received(frame: RawSpan, on connection: FramedConnection) {
        connection.send(frame: frame)
    }
}
