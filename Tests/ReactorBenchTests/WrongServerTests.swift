import Foundation
import ReactorBench
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

extension BenchTests {
    /// Servers that answer wrongly, written here with ReactorCore: each kind of wrong
    /// answer shows as its error kind, and never as a clean result.
    @Suite(.timeLimit(.minutes(2))) struct WrongServerTests {
        private func options(port: Int, _ benchProtocol: BenchProtocol) -> BenchOptions {
            var options = BenchOptions()
            options.port = port
            options.protocol = benchProtocol
            options.connections = 4
            options.depth = 2
            options.size = 16
            options.keyspace = 50
            options.warmup = .zero
            options.duration = .seconds(1)
            return options
        }

        @Test func redisErrorRepliesAndWrongValuesAreCaught() throws {
            // Per command: an error, a bulk that is not the value SET wrote, +OK (right for
            // SET, wrong for GET), in turn.
            try withServer(makeHandler: { _, _ in
                FramedConnection(framer: DelimiterFramer.crlf(), handler: Replier { line, index in
                    guard line.first == UInt8(ascii: "*") else { return nil }
                    switch index % 3 {
                    case 0: return "-ERR no such luck\r\n"
                    case 1: return "$16\r\nxxxxxxxxxxxxxxxx\r\n"
                    default: return "+OK\r\n"
                    }
                })
            }) { server in
                var redis = options(port: server.port, .redis)
                redis.commands = [BenchOptions.Command("SET k{key} {value}"), BenchOptions.Command("GET k{key}")]
                let result = try BenchRunner.run(redis)
                #expect(result.errors.serverError > 0, "\(result.errors.nonZero)")
                #expect(result.errors.wrongResponse > 0, "\(result.errors.nonZero)")
                #expect(result.requests > 0, "+OK to a SET passes")
                #expect(result.requests < result.errors.total)
                #expect(result.hits == 0)
            }
        }

        @Test func memcachedServerErrorsAndWrongKeysAreCaught() throws {
            try withServer(makeHandler: { _, _ in
                FramedConnection(framer: DelimiterFramer.crlf(), handler: Replier { line, index in
                    let text = String(decoding: line, as: UTF8.self)
                    guard text.hasPrefix("get ") || text.hasPrefix("set ") else { return nil }  // a set's data line
                    if text.hasPrefix("set ") { return index % 2 == 0 ? "SERVER_ERROR out of memory\r\n" : "STORED\r\n" }
                    return "VALUE other 0 3\r\nabc\r\nEND\r\n"
                })
            }) { server in
                var memcached = options(port: server.port, .memcached)
                memcached.commands = [BenchOptions.Command("set k{key} {value}"), BenchOptions.Command("get k{key}")]
                let result = try BenchRunner.run(memcached)
                #expect(result.errors.serverError > 0, "\(result.errors.nonZero)")
                #expect(result.errors.wrongResponse > 0, "a VALUE for another key: \(result.errors.nonZero)")
                #expect(result.hits == 0)
            }
        }

        @Test func http500sAreErrorsAndChunkedBodiesAreFramed() throws {
            try withServer(makeHandler: { _, _ in HTTPReplier() }) { server in
                let result = try BenchRunner.run(options(port: server.port, .http))
                let ok = result.statusCodes[200] ?? 0
                let failed = result.statusCodes[500] ?? 0
                #expect(ok > 0 && failed > 0, "\(result.statusCodes)")
                #expect(result.errors.httpStatus == failed, "\(result.errors.nonZero)")
                #expect(result.requests == ok)
                #expect(result.errors.framing == 0, "chunked responses frame: \(result.errors.nonZero)")
            }
        }

        @Test func shortFramesAreClosedConnectionsNotResponses() throws {
            // Answers a length-prefixed frame with a header promising more than follows, then closes.
            try withServer(makeHandler: { _, _ in ShortFrameServer() }) { server in
                var custom = options(port: server.port, .custom)
                custom.requests = ["hello {seq}"]
                custom.responseFraming = "int32"
                let result = try BenchRunner.run(custom)
                #expect(result.requests == 0)
                #expect(result.errors.closed > 0, "\(result.errors.nonZero)")
            }
        }

        @Test func customMatchesCatchWrongPayloads() throws {
            try withServer(makeHandler: { _, _ in
                FramedConnection(framer: DelimiterFramer.line(), handler: Replier { line, index in
                    index % 2 == 0 ? "OK \(index)\n" : "NO\n"
                })
            }) { server in
                for expect in ["prefix:OK ", "regex:^OK [0-9]+$"] {
                    var custom = options(port: server.port, .custom)
                    custom.requests = ["ask {seq}"]
                    custom.responseFraming = "line"
                    custom.expect = expect
                    let result = try BenchRunner.run(custom)
                    #expect(result.requests > 0 && result.errors.wrongResponse > 0, "\(expect): \(result.requests), \(result.errors.nonZero)")
                    #expect(abs(result.requests - result.errors.wrongResponse) <= 8, "\(expect): half and half")
                }
                var echo = options(port: server.port, .custom)
                echo.requests = ["ask {seq}"]
                echo.responseFraming = "line"
                let result = try BenchRunner.run(echo)
                #expect(result.requests == 0 && result.errors.wrongResponse > 0, "echo: \(result.errors.nonZero)")
            }
        }

        @Test func idleConnectionsTheServerDropsAreNotReportedAsHeld() throws {
            let accepted = Counter()
            try withServer(makeHandler: { _, _ in accepted.next() % 2 == 0 ? ByteEcho() as any ConnectionHandler : CloseAfterFirstReply() }) { server in
                var idle = options(port: server.port, .raw)
                idle.mode = .idle
                idle.connections = 20
                idle.depth = 1
                idle.serverPID = getpid()
                let result = try BenchRunner.run(idle)
                #expect(result.idleConnections == 10, "\(result.idleConnections ?? -1)")
                #expect(result.idleHeldAll == false)
                #expect(result.serverRSSPerConnectionBytes == nil)
                let text = BenchSummary.text(result)
                #expect(text.contains("10 of 20") && text.contains("not every connection was held"), "\(text)")
                #expect(!text.contains("VmRSS growth"))
            }
        }

        @Test func theCommandExitsNonZeroWhenIdleConnectionsFail() throws {
            try withServer(makeHandler: { _, _ in CloseAfterFirstReply() }) { server in
                let child = try ChildProcess.reactor([
                    "bench", "127.0.0.1:\(server.port)", "--mode", "idle", "--connections", "5", "--duration", "0.5", "--warmup", "0.3", "--quiet",
                ])
                let status = child.waitForExit(timeout: .seconds(10))
                #expect(status != nil && status != 0, "exit \(String(describing: status))")
                #expect(child.standardOutput.contains("0 of 5"), "\(child.standardOutput)")
            }
        }
    }
}

/// Answers each frame with what `reply(frame, index)` returns (nothing for nil).
final class Replier: FrameHandler {
    private let reply: ([UInt8], Int) -> String?
    private var index = 0
    init(_ reply: @escaping ([UInt8], Int) -> String?) { self.reply = reply }

    func received(frame: RawSpan, on connection: FramedConnection) {
        let bytes = frame.copyBytes()
        guard let answer = reply(bytes, index) else { return }
        index += 1
        connection.connection?.write(answer)
    }
}

/// HTTP: a 500 and a chunked 200 in turn, for each request head.
final class HTTPReplier: ConnectionHandler {
    private var pending: [UInt8] = []
    private var count = 0

    func received(_ bytes: RawSpan, on connection: Connection) {
        pending += bytes.copyBytes()
        while let end = pending.firstRange(of: Array("\r\n\r\n".utf8)) {
            pending.removeSubrange(..<end.upperBound)
            count += 1
            connection.write(count % 2 == 0
                ? "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!"
                : "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6; ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
        }
    }
}

/// Answers once with half a length-prefixed frame, then closes.
final class ShortFrameServer: ConnectionHandler {
    func received(_ bytes: RawSpan, on connection: Connection) {
        connection.write([0, 0, 0, 20] + Array("short".utf8))
        connection.close()
    }
}

/// Echoes the first read, then closes: an idle connection the server drops.
final class CloseAfterFirstReply: ConnectionHandler {
    func received(_ bytes: RawSpan, on connection: Connection) {
        connection.write(bytes)
        connection.close()
    }
}

extension BenchTests.WrongServerTests {
    @Test func customTemplatesOverUDPAndFromAFile() throws {
        try withUDPEchoServer { server in
            var udp = BenchOptions()
            udp.port = server.port
            udp.protocol = .custom
            udp.transport = .udp
            udp.requests = ["probe {conn} {seq}"]
            udp.connections = 4
            udp.depth = 2
            udp.warmup = .zero
            udp.duration = .seconds(1)
            let echoed = try BenchRunner.run(udp)
            #expect(echoed.requests > 100 && echoed.errors.total - echoed.errors.lost == 0, "\(echoed.errors.nonZero)")

            udp.expect = "exact:pong"
            let wrong = try BenchRunner.run(udp)
            #expect(wrong.requests == 0 && wrong.errors.wrongResponse > 0, "\(wrong.errors.nonZero)")
        }
        // A request file through the command: one template per line, round-robin.
        try withEchoServer { tcp in
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("bench-requests-\(getpid()).txt").path
            defer { try? FileManager.default.removeItem(atPath: file) }
            try "first {seq}\nsecond {key}\n".write(toFile: file, atomically: true, encoding: .utf8)
            let child = try ChildProcess.reactor([
                "bench", "127.0.0.1:\(tcp.port)", "--protocol", "custom", "--request-file", file, "--response", "crlf",
                "--connections", "2", "--duration", "0.5", "--warmup", "0", "--quiet",
            ])
            #expect(child.waitForExit(timeout: .seconds(10)) == 0, "\(child.standardError)")
            #expect(child.standardOutput.contains("custom requests") && child.standardOutput.contains("errors: 0"), "\(child.standardOutput)")
        }
    }
}
