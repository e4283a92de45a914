// A PROXY-protocol listener over real loopback sockets: the header is read before the
// handler exists, the client becomes peerAddress and the balancer proxyPeer, the payload
// behind the header arrives as a read, and a late, malformed, truncated or untrusted
// header aborts only its own connection, counted and logged at most once a second.

import Glibc
import Logging
import ReactorCore
import ReactorTestSupport
import Testing

/// What the handler of one proxied connection saw.
struct ProxiedConnection: Sendable {
    var peer: SocketAddress
    var proxyPeer: SocketAddress?
    var header: ProxyHeader?
}

/// Echoes, after recording what its connection says about itself when opened.
final class ProxyProbe: ConnectionHandler {
    let seen: Locked<[ProxiedConnection]>
    init(seen: Locked<[ProxiedConnection]>) { self.seen = seen }

    func opened(_ connection: Connection) {
        let record = ProxiedConnection(peer: connection.peerAddress, proxyPeer: connection.proxyPeer, header: connection.proxyInfo?.header)
        seen.update { $0.append(record) }
    }

    func received(_ bytes: RawSpan, on connection: Connection) {
        connection.write(bytes)
    }
}

/// A log handler that keeps each message.
struct KeepingLogHandler: LogHandler {
    let lines: Locked<[String]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lines.update { $0.append("\(event.message)") }
    }
}

/// A reactor thread with one PROXY-protocol listener for the length of `body`, which gets
/// the listener's address, what handlers saw, a way to read the listener's counters, and
/// the log lines.
func withProxyListener<T>(
    _ proxy: ProxyProtocolOptions, host: String = "127.0.0.1",
    _ body: (SocketAddress, Locked<[ProxiedConnection]>, () throws -> ProxyProtocolCounters, Locked<[String]>) throws -> T
) throws -> T {
    let seen = Locked<[ProxiedConnection]>([])
    let lines = Locked<[String]>([])
    let listener = ReactorBound<TCPListener?>(nil)
    let logger = Logger(label: "proxy-test") { _ in KeepingLogHandler(lines: lines) }
    return try withReactor(logger: logger, setup: { reactor in
        var options = ListenerOptions()
        options.proxyProtocol = proxy
        let made = try reactor.listen(host: host, port: 0, options: options) { _ in ProxyProbe(seen: seen) }
        listener.value = made
        return made.address
    }) { reactor, address in
        let counters = { try reactor.sync { _ in listener.value!.proxyCounters } }
        return try body(address, seen, counters, lines)
    }
}

@Suite("PROXY protocol listener", .timeLimit(.minutes(1)))
struct ProxyListenerTests {
    @Test("v2 header and payload in one send: the handler sees the client as peerAddress, the balancer as proxyPeer, the payload echoed")
    func headerAndPayloadTogether() throws {
        try withProxyListener(ProxyProtocolOptions(.v2)) { address, seen, counters, _ in
            let client = try TestClient(connectingTo: address)
            let tlvs = tlv(ProxyHeader.TLVType.authority, Array("example.com".utf8)) + tlv(ProxyHeader.TLVType.uniqueID, [9, 9])
            try client.send(proxyV2(family: 0x11, addresses: exampleIPv4Block, tlvs: tlvs) + Array("hello".utf8))
            #expect(try client.receive(count: 5) == Array("hello".utf8), "the payload behind the header is delivered as a read")
            try client.send("again")
            #expect(try client.receive(count: 5) == Array("again".utf8))
            let record = try #require(seen.value.first)
            #expect(record.peer == (try SocketAddress(ip: "192.168.0.1", port: 56324)))
            #expect(record.proxyPeer == (try SocketAddress(ip: "127.0.0.1", port: client.localPort)))
            #expect(record.header?.authority == "example.com")
            #expect(record.header?.uniqueID == [9, 9])
            #expect(record.header?.destination == (try SocketAddress(ip: "192.168.0.11", port: 443)))
            #expect(try counters().accepted == 1)
        }
    }

    @Test("a header trickled in one byte at a time, with pauses, then the payload")
    func headerOneByteAtATime() throws {
        try withProxyListener(ProxyProtocolOptions(.any)) { address, seen, counters, _ in
            let client = try TestClient(connectingTo: address, noDelay: true)
            for byte in Array("PROXY TCP6 2001:db8::7 2001:db8::1 4242 80\r\n".utf8) {
                try client.send([byte])
                usleep(2000)
            }
            #expect(seen.value.isEmpty || seen.value.count == 1)
            try client.send("ping")
            #expect(try client.receive(count: 4) == Array("ping".utf8))
            #expect(seen.value.map(\.peer) == [try SocketAddress(ip: "2001:db8::7", port: 4242)])
            #expect(try counters() == { var expected = ProxyProtocolCounters(); expected.accepted = 1; return expected }())
        }
    }

    @Test("LOCAL (a balancer's health check) and v1 UNKNOWN keep the socket's own peer")
    func localKeepsSocketAddresses() throws {
        try withProxyListener(ProxyProtocolOptions(.any)) { address, seen, _, _ in
            for header in [proxyV2(command: 0, family: 0x00, addresses: []), Array("PROXY UNKNOWN\r\n".utf8)] {
                let client = try TestClient(connectingTo: address)
                try client.send(header + Array("x".utf8))
                #expect(try client.receive(count: 1) == Array("x".utf8))
                let own = try SocketAddress(ip: "127.0.0.1", port: client.localPort)
                #expect(seen.value.last?.peer == own)
                #expect(seen.value.last?.proxyPeer == own)
            }
        }
    }

    @Test("no header within the timeout: aborted, counted, never handed to a handler; others go on")
    func headerTimeout() throws {
        var options = ProxyProtocolOptions(.v1)
        options.headerTimeout = .milliseconds(300)
        try withProxyListener(options) { address, seen, counters, lines in
            let silent = try TestClient(connectingTo: address)
            let partial = try TestClient(connectingTo: address)
            try partial.send("PROXY TCP4 1.2.3.4")
            let good = try TestClient(connectingTo: address)
            try good.send(Array("PROXY TCP4 1.2.3.4 5.6.7.8 1000 2000\r\n".utf8))
            for client in [silent, partial] {
                let (bytes, end) = client.receiveUntilEnd(timeout: .seconds(10))
                #expect(bytes.isEmpty)
                #expect(end == .reset)
            }
            try good.send("still here")
            #expect(try good.receive(count: 10) == Array("still here".utf8))
            #expect(seen.value.count == 1, "only the complete header opened a handler")
            let counted = try counters()
            #expect(counted.timedOut == 2 && counted.accepted == 1 && counted.refused == 2)
            #expect(lines.value.contains { $0.contains("not complete within") })
        }
    }

    @Test("a source outside the trusted networks is aborted before a byte is read")
    func untrusted() throws {
        try withProxyListener(ProxyProtocolOptions(.v2, trustedSources: [try IPNetwork("10.0.0.0/8"), try IPNetwork("fd00::/8")])) {
            address, seen, counters, lines in
            // The reset can come before the client's connect has seen it complete.
            if let client = try? TestClient(connectingTo: address) {
                try? client.send(proxyV2(family: 0x11, addresses: exampleIPv4Block))
                let (_, end) = client.receiveUntilEnd(timeout: .seconds(10))
                #expect(end == .reset || end == .endOfFile)
            }
            let counted = try waitUntil(timeout: .seconds(10)) { try counters().untrusted == 1 }
            #expect(counted)
            #expect(seen.value.isEmpty)
            #expect(lines.value.contains { $0.contains("outside the trusted networks") })
        }
        try withProxyListener(ProxyProtocolOptions(.v2, trustedSources: [try IPNetwork("127.0.0.0/8")])) { address, seen, _, _ in
            let client = try TestClient(connectingTo: address)
            try client.send(proxyV2(family: 0x11, addresses: exampleIPv4Block) + [1])
            #expect(try client.receive(count: 1) == [1])
            #expect(seen.value.count == 1)
        }
    }

    @Test("a flood of malformed headers: each aborted and counted, the log says so about once a second")
    func malformedFloodIsRateLimitedInTheLog() throws {
        try withProxyListener(ProxyProtocolOptions(.any)) { address, seen, counters, lines in
            let good = try TestClient(connectingTo: address)
            try good.send(proxyV2(family: 0x11, addresses: exampleIPv4Block))
            for index in 0..<40 {
                let bad = try TestClient(connectingTo: address)
                try? bad.send(index % 2 == 0 ? Array("GET / HTTP/1.0\r\n\r\n".utf8) : Array("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".utf8))
                let (_, end) = bad.receiveUntilEnd(timeout: .seconds(10))
                #expect(end == .reset)
            }
            try good.send("ok")
            #expect(try good.receive(count: 2) == Array("ok".utf8), "the good connection is untouched")
            #expect(seen.value.count == 1)
            #expect(try counters().malformed == 40)
            let refusals = lines.value.filter { $0.contains("aborted: PROXY header") }
            #expect(!refusals.isEmpty)
            #expect(refusals.count <= 5, "40 refusals in well under 5 s: \(refusals.count) lines")
        }
    }

    @Test("the peer closing mid-header is counted as truncated")
    func truncated() throws {
        try withProxyListener(ProxyProtocolOptions(.v2)) { address, seen, counters, _ in
            let client = try TestClient(connectingTo: address)
            try client.send(Array(proxyV2(family: 0x11, addresses: exampleIPv4Block).prefix(20)))
            client.shutdownWrite()
            _ = client.receiveUntilEnd(timeout: .seconds(10))
            #expect(try waitUntil(timeout: .seconds(10)) { try counters().truncated == 1 })
            #expect(seen.value.isEmpty)
        }
    }

    @Test("a graceful shutdown waits for a header still arriving, serves what came with it, then closes")
    func shutdownWaitsForAHeader() throws {
        let seen = Locked<[ProxiedConnection]>([])
        try withReactor(setup: { reactor in
            var options = ListenerOptions()
            options.proxyProtocol = ProxyProtocolOptions(.v2)
            return try reactor.listen(host: "127.0.0.1", port: 0, options: options) { _ in ProxyProbe(seen: seen) }.address
        }) { reactor, address in
            let header = proxyV2(family: 0x11, addresses: exampleIPv4Block)
            let client = try TestClient(connectingTo: address)
            try client.send(Array(header.prefix(10)))
            // The connection is accepted, its header half read, when the shutdown starts.
            #expect(waitUntil(timeout: .seconds(5)) { (try? reactor.sync { $0.connectionCount }) == 0 })
            usleep(100_000)
            try reactor.sync { $0.shutdownGracefully(timeout: .seconds(10)) }
            usleep(100_000)
            #expect(!reactor.waitUntilStopped(timeout: .milliseconds(200)), "the reactor waits for the header")
            try client.send(Array(header.dropFirst(10)) + Array("last words".utf8))
            let (bytes, end) = client.receiveUntilEnd(timeout: .seconds(10))
            #expect(bytes == Array("last words".utf8), "what came with the header is answered")
            #expect(end == .endOfFile, "then closed gracefully")
            #expect(seen.value.map(\.peer) == [try SocketAddress(ip: "192.168.0.1", port: 56324)])
            #expect(reactor.waitUntilStopped(timeout: .seconds(10)), "and the shutdown ends")
        }
    }

    @Test("PROXY options are checked")
    func optionsValidated() throws {
        var options = ProxyProtocolOptions()
        options.headerTimeout = .zero
        #expect(throws: ReactorError.self) { try options.validate() }
        options = ProxyProtocolOptions(.any, trustedSources: [])
        #expect(throws: ReactorError.self) { try options.validate() }
        options = ProxyProtocolOptions()
        options.maxV2Length = 100
        #expect(throws: ReactorError.self) { try options.validate() }
        #expect(throws: ReactorError.self) { try IPNetwork("10.0.0.0/33") }
        #expect(throws: ReactorError.self) { try IPNetwork("example.com/8") }
        let network = try IPNetwork("10.1.2.3/8")
        #expect(network.description == "10.0.0.0/8")
        #expect(network.contains(try SocketAddress(ip: "10.200.0.1", port: 1)))
        #expect(network.contains(try SocketAddress(ip: "::ffff:10.9.9.9", port: 1)), "IPv4-mapped peers of a dual-stack listener")
        #expect(!network.contains(try SocketAddress(ip: "11.0.0.1", port: 1)))
        let v6 = try IPNetwork("2001:db8::/32")
        #expect(v6.contains(try SocketAddress(ip: "2001:db8:ffff::1", port: 1)))
        #expect(!v6.contains(try SocketAddress(ip: "2001:db9::1", port: 1)))
        #expect(try IPNetwork.list("127.0.0.1, ::1") == [try IPNetwork("127.0.0.1/32"), try IPNetwork("::1/128")])
    }
}
