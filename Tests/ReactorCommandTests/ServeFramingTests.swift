// `reactor serve echo --framing F [--max-frame N]`, the built executable over loopback.

import Foundation
import Glibc
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

/// A running `reactor serve echo` and the address it printed.
struct ServeEcho {
    let child: ChildProcess
    let address: SocketAddress

    static func start(_ arguments: [String]) async throws -> ServeEcho {
        let child = try ChildProcess(try reactorExecutable(), ["serve", "echo", "--host", "127.0.0.1", "--port", "0"] + arguments)
        let line = try await child.firstLine()
        guard let port = listeningPort(in: line) else {
            throw TestFailure("unexpected first line \(line.debugDescription); stderr: \(child.standardError)")
        }
        return ServeEcho(child: child, address: try SocketAddress(ip: "127.0.0.1", port: port))
    }

    /// SIGTERM, and the exit status.
    func stop() async -> Int32? {
        child.signal(SIGTERM)
        return await child.waitForExit(timeout: .seconds(15))
    }
}

@Suite("reactor serve echo --framing", .timeLimit(.minutes(1)))
struct ServeFramingTests {
    @Test("each framing echoes frames re-encoded byte-exact", arguments: ["raw", "line", "crlf", "int8", "int16", "int32", "int64", "netstring", "fixed:5"])
    func echo(_ spelling: String) async throws {
        let framing = try #require(Framing(parsing: spelling))
        let server = try await ServeEcho.start(["--framing", spelling, "--log-level", "warning"])
        let framer = framing.makeFramer()
        var random = SeededRandom(seed: 0x5E12)
        var stream: [UInt8] = []
        for index in 0..<400 {
            var payload = (0..<Int.random(in: 0...min(framer.maxFrameLength, 700), using: &random)).map { _ in UInt8.random(in: 0x20...0x7E, using: &random) }
            if index % 50 == 0 { payload = [] }
            if case .fixed(let length) = framing { payload = Array(payload.prefix(length)) + [UInt8](repeating: 0x2A, count: max(0, length - payload.count)) }
            if framing == .raw, payload.isEmpty { continue }
            stream += try framer.encodedFrame(payload)
        }
        let client = try TestClient(connectingTo: server.address, noDelay: true, defaultTimeout: .seconds(10))
        let echoed = try client.exchange(stream, expecting: stream.count)
        #expect(echoed == stream)
        client.close()
        #expect(await server.stop() == 0)
        #expect(server.child.standardError.isEmpty, "\(server.child.standardError)")
    }

    @Test("--max-frame: a longer frame closes that connection with one log line; others go on")
    func maxFrame() async throws {
        let server = try await ServeEcho.start(["--framing", "line", "--max-frame", "10", "--log-level", "warning"])
        let good = try TestClient(connectingTo: server.address, noDelay: true, defaultTimeout: .seconds(10))
        let bad = try TestClient(connectingTo: server.address, noDelay: true, defaultTimeout: .seconds(10))
        try good.send(Array("0123456789\n".utf8))
        #expect(try good.receive(count: 11) == Array("0123456789\n".utf8), "exactly the maximum is accepted")
        try bad.send(Array("01234567890\n".utf8))
        let end = bad.receiveUntilEnd(timeout: .seconds(5))
        #expect(end.end == .reset || end.end == .endOfFile)
        #expect(end.bytes.isEmpty)
        try good.send(Array("still\n".utf8))
        #expect(try good.receive(count: 6) == Array("still\n".utf8))
        let badPort = bad.localPort
        good.close()
        bad.close()
        #expect(await server.stop() == 0)
        let lines = server.child.standardError.split(separator: "\n")
        #expect(lines.count == 1, "\(lines)")
        #expect(lines.first?.contains("127.0.0.1:\(badPort)") == true, "\(lines)")
        #expect(lines.first?.contains("frame too long") == true, "\(lines)")
    }

    @Test("an unknown framing, fixed:0, or --max-frame 0 is a usage error", arguments: [
        ["--framing", "bogus"], ["--framing", "fixed:0"], ["--framing", "int24"], ["--max-frame", "0"],
        ["--framing", "fixed:100", "--max-frame", "10"],
    ])
    func usageErrors(_ arguments: [String]) async throws {
        let child = try ChildProcess(try reactorExecutable(), ["serve", "echo", "--port", "0"] + arguments)
        let status = await child.waitForExit(timeout: .seconds(10))
        #expect(status != nil && status != 0, "exit \(String(describing: status))")
        #expect(child.standardOutput.isEmpty, "it never starts listening")
        #expect(!child.standardError.isEmpty)
        if arguments.contains("bogus") {
            #expect(child.standardError.contains("framing"), "\(child.standardError)")
        }
    }
}
