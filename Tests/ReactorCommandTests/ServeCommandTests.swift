// `reactor serve SERVICE` and `reactor serve all`, the built executable over loopback:
// the listening lines, each service over both transports, the options, the errors.

import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// A running `reactor serve` and the sockets its listening lines name.
struct Served {
    let child: ChildProcess
    /// "tcp SERVICE" or "udp SERVICE" → address, in the order printed.
    let sockets: [(transport: String, service: String, address: SocketAddress)]

    /// Starts `reactor serve` with `arguments` and waits for `lineCount` listening lines.
    static func start(_ arguments: [String], lineCount: Int) async throws -> Served {
        let child = try ChildProcess.reactor(["serve"] + arguments)
        try await eventually("\(lineCount) listening lines", timeout: .seconds(10)) {
            child.standardOutput.filter { $0 == "\n" }.count >= lineCount || !child.process.isRunning
        }
        let lines = child.standardOutput.split(separator: "\n").map(String.init)
        guard lines.count == lineCount else {
            throw TestFailure("expected \(lineCount) lines, got \(lines); stderr: \(child.standardError)")
        }
        let sockets = try lines.map { line in
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count == 4, fields[0] == "listening", let colon = fields[2].lastIndex(of: ":"),
                  let port = Int(fields[2][fields[2].index(after: colon)...])
            else { throw TestFailure("not a listening line: '\(line)'") }
            return (fields[1], fields[3], try SocketAddress(ip: String(fields[2][..<colon]), port: port))
        }
        return Served(child: child, sockets: sockets)
    }

    func address(_ transport: String, _ service: String) throws -> SocketAddress {
        try #require(sockets.first { $0.transport == transport && $0.service == service }?.address)
    }

    /// SIGTERM; expects a clean exit.
    func stop(sourceLocation: SourceLocation = #_sourceLocation) async {
        child.signal(SIGTERM)
        #expect(await child.waitForExit(timeout: .seconds(15)) == 0, "stderr: \(child.standardError)", sourceLocation: sourceLocation)
    }
}

/// What a service sends a TCP client that sends `hello` and closes its side: the whole reply
/// for the ones that close, the first 148 bytes of chargen.
func tcpReply(_ service: String, at address: SocketAddress) throws -> [UInt8] {
    let client = try TestClient(connectingTo: address)
    try client.send("hello")
    if service == "chargen" { return try client.receive(count: 148) }
    client.shutdownWrite()
    return client.receiveUntilEnd(timeout: .seconds(5)).bytes
}

/// Checks a reply from `service` to `hello`.
func expectReply(_ service: String, _ reply: [UInt8]?, sourceLocation: SourceLocation = #_sourceLocation) {
    let text = reply.map { String(decoding: $0, as: UTF8.self) }
    switch service {
    case "echo": #expect(text == "hello", sourceLocation: sourceLocation)
    case "discard": #expect(reply == nil || reply == [], sourceLocation: sourceLocation)
    case "daytime": #expect(text?.hasSuffix("-UTC\r\n") == true && text?.contains(", 20") == true, "\(String(describing: text))", sourceLocation: sourceLocation)
    case "qotd": #expect(text?.contains("--") == true && (reply?.count ?? 512) < 512, "\(String(describing: text))", sourceLocation: sourceLocation)
    case "chargen": #expect(reply?.prefix(148).elementsEqual(chargenLine(0) + chargenLine(1)) == true, sourceLocation: sourceLocation)
    case "time":
        let value = reply.flatMap { $0.count == 4 ? $0.reduce(UInt32(0)) { $0 << 8 | UInt32($1) } : nil }
        let expected = UInt32(truncatingIfNeeded: Int64(Date().timeIntervalSince1970) + 2_208_988_800)
        #expect(value.map { abs(Int64($0) - Int64(expected)) <= 5 } == true, "\(String(describing: reply))", sourceLocation: sourceLocation)
    default: Issue.record("unknown service \(service)", sourceLocation: sourceLocation)
    }
}

let serviceNames = ["echo", "discard", "daytime", "qotd", "chargen", "time"]

@Suite("reactor serve SERVICE and serve all", .timeLimit(.minutes(1)))
struct ServeCommandTests {
    @Test("serve SERVICE --port 0: TCP then UDP on the same port, each answering, exit 0 on SIGTERM", arguments: serviceNames)
    func serveOne(service: String) async throws {
        let served = try await Served.start([service, "--port", "0"], lineCount: 2)
        #expect(served.sockets.map(\.transport) == ["tcp", "udp"])
        #expect(served.sockets.allSatisfy { $0.service == service })
        let tcp = try served.address("tcp", service)
        #expect(try served.address("udp", service) == tcp, "the same port for both")
        expectReply(service, try tcpReply(service, at: tcp))
        let client = try UDPTestClient()
        try client.send(Array("hello".utf8), to: tcp)
        let reply = client.receive(timeout: service == "discard" ? .milliseconds(300) : .seconds(5))
        if service == "chargen" {
            #expect(reply?.bytes.count == 444)
            expectReply(service, reply?.bytes)
        } else {
            expectReply(service, reply?.bytes)
        }
        await served.stop()
        let log = served.child.standardErrorLines
        #expect(log.count == 2 && log[0].contains("shutting down"), "\(log)")
        let allowed = service == "discard" ? 0 : 1
        #expect(log.last?.contains("UDP replies: \(allowed) allowed, 0 refused for their source port, 0 rate-limited, 0 sources evicted") == true, "\(log)")
    }

    @Test("--tcp-only and --udp-only open one socket each")
    func oneTransport() async throws {
        let tcp = try await Served.start(["time", "--port", "0", "--tcp-only"], lineCount: 1)
        #expect(tcp.sockets.map(\.transport) == ["tcp"])
        await tcp.stop()
        let udp = try await Served.start(["time", "--port", "0", "--udp-only"], lineCount: 1)
        #expect(udp.sockets.map(\.transport) == ["udp"])
        let client = try UDPTestClient()
        try client.send([], to: try udp.address("udp", "time"))
        expectReply("time", client.receive()?.bytes)
        await udp.stop()
    }

    @Test("serve all --port-offset N: every service at N plus its well-known port, over both transports, on one reactor")
    func serveAll() async throws {
        var served: Served?
        var offset = 0
        for _ in 0..<5 where served == nil {
            offset = Int.random(in: 20_000...50_000)
            served = try? await Served.start(["all", "--port-offset", "\(offset)"], lineCount: 12)
        }
        let all = try #require(served, "no free block of ports for serve all")
        let wellKnown = ["echo": 7, "discard": 9, "daytime": 13, "qotd": 17, "chargen": 19, "time": 37]
        #expect(all.sockets.map(\.service) == serviceNames.flatMap { [$0, $0] })
        #expect(all.sockets.map(\.transport) == Array(repeating: ["tcp", "udp"], count: 6).flatMap { $0 })
        for socket in all.sockets {
            #expect(socket.address.port == offset + wellKnown[socket.service]!)
            #expect(socket.address.ip == "127.0.0.1")
        }
        let client = try UDPTestClient()
        for service in serviceNames {
            let address = try all.address("tcp", service)
            expectReply(service, try tcpReply(service, at: address))
            try client.send(Array("hello".utf8), to: address)
            if service != "discard" { expectReply(service, client.receive()?.bytes.prefix(148).map { $0 }) }
        }
        #expect(client.receiveAll(quiet: .milliseconds(200)).isEmpty, "discard answered")
        await all.stop()
    }

    @Test("--quotes FILE: qotd serves the file's quotes in turn over TCP and UDP")
    func quotesFile() async throws {
        let path = try temporaryFile("The first.\n%\nThe second.\n")
        let served = try await Served.start(["qotd", "--port", "0", "--quotes", path], lineCount: 2)
        let address = try served.address("tcp", "qotd")
        #expect(try tcpReply("qotd", at: address) == Array("The first.\r\n".utf8))
        let client = try UDPTestClient()
        try client.send([], to: address)
        #expect(client.receive()?.bytes == Array("The second.\r\n".utf8))
        await served.stop()
    }

    @Test("--quotes with a quote of 512 bytes or more: exit 1, one line naming the file and line")
    func quotesTooLong() async throws {
        let path = try temporaryFile("fine\n%\n" + String(repeating: "x", count: 600) + "\n")
        let child = try ChildProcess.reactor(["serve", "qotd", "--port", "0", "--quotes", path])
        #expect(await child.waitForExit() == 1)
        #expect(child.standardOutput.isEmpty)
        #expect(child.standardErrorLines == ["Error: \(path): line 3: the quote is 602 bytes with CRLF line ends; a reply must be under 512 (at most 511)"])
    }

    @Test("--udp-rate and --udp-burst set the per-source limit; --udp-rate 0 turns it off")
    func rateLimitFlags() async throws {
        let limited = try await Served.start(["echo", "--port", "0", "--udp-rate", "1", "--udp-burst", "3"], lineCount: 2)
        let client = try UDPTestClient()
        for index in 0..<10 { try client.send([UInt8(index)], to: try limited.address("udp", "echo")) }
        #expect((3...4).contains(client.receiveAll().count))
        await limited.stop()

        let unlimited = try await Served.start(["echo", "--port", "0", "--udp-rate", "0"], lineCount: 2)
        for index in 0..<100 { try client.send([UInt8(index)], to: try unlimited.address("udp", "echo")) }
        #expect(client.receiveAll().count == 100, "the default limit (burst 40) would stop at 40 or so")
        await unlimited.stop()
    }

    @Test("a port whose UDP side is taken: exit 1, one line naming the address")
    func udpPortInUse() async throws {
        let holder = try UDPTestClient()
        let child = try ChildProcess.reactor(["serve", "echo", "--port", "\(holder.port)"])
        #expect(await child.waitForExit() == 1)
        #expect(child.standardOutput.isEmpty, "no line until every socket is bound")
        let lines = child.standardErrorLines
        #expect(lines.count == 1 && lines[0].contains("127.0.0.1:\(holder.port)") && lines[0].contains("address already in use"), "\(lines)")
    }

    @Test("options that do not fit the service are usage errors naming the option", arguments: [
        (["all", "--port", "7"], "--port"), (["echo", "--port-offset", "5"], "--port-offset"),
        (["time", "--tcp-only", "--udp-only"], "--udp-only"), (["echo", "--quotes", "/tmp/q"], "--quotes"),
        (["time", "--framing", "line"], "--framing"), (["echo", "--udp-burst", "0"], "--udp-burst"),
        (["echo", "--udp-rate", "-1"], "--udp-rate"), (["all", "--port-offset", "65500"], "--port-offset"),
        (["echo", "--udp-sources", "0"], "--udp-sources"), (["echo", "--keepalive", "-1"], "--keepalive"),
        (["echo", "--keepalive", "5", "--keepalive-interval", "0"], "--keepalive-interval"),
        (["echo", "--keepalive", "5", "--keepalive-count", "128"], "--keepalive-count"),
    ])
    func usageErrors(arguments: [String], option: String) async throws {
        let child = try ChildProcess.reactor(["serve"] + arguments + ["--port", "0"].filter { _ in !arguments.contains("all") && !arguments.contains("--port") })
        let status = await child.waitForExit()
        #expect(status != nil && status != 0)
        #expect(child.standardOutput.isEmpty)
        #expect(child.standardError.contains("Error: ") && child.standardError.contains(option), "\(child.standardError)")
    }
}
