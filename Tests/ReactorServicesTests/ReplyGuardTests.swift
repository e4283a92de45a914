// The reply guard: source ports it refuses (over real sockets, from ports 7 and 19), the
// per-source token bucket (over real sockets, and exactly with a clock the test drives),
// and its table that never grows.

import Foundation
import ReactorCore
import ReactorServices
import ReactorTestSupport
import Testing

@Suite("reply guard", .timeLimit(.minutes(1)))
struct ReplyGuardTests {
    @Test("datagrams from the echo and chargen ports get no answer; the same from another port does")
    func refusesSmallServicePorts() async throws {
        try await withServiceServer(makeTCP: { EchoHandler() }, makeUDP: { EchoDatagramHandler(replyGuard: $0) }) { server in
            var refused = 0
            for port in [7, 19] {
                let client: UDPTestClient
                do {
                    client = try UDPTestClient(port: port)
                } catch {
                    print("skipping source port \(port): \(error)")
                    continue
                }
                try client.send(Array("loop?".utf8), to: server.udp)
                #expect(client.receiveAll().isEmpty, "a datagram from port \(port) was answered")
                refused += 1
            }
            try #require(refused > 0, "neither port 7 nor port 19 could be bound on 127.0.0.1")
            let other = try UDPTestClient()
            try other.send(Array("hello".utf8), to: server.udp)
            #expect(other.receive()?.bytes == Array("hello".utf8))
            let counters = try await server.guardCounters()
            #expect(counters.refusedSourcePort == refused)
            #expect(counters.allowed == 1)
        }
    }

    @Test("the refused ports are the small services' and 0; a guard may be given others")
    func refusedPortList() throws {
        #expect(ReplyGuardOptions.smallServicePorts == [0, 7, 9, 13, 17, 19, 37])
        var options = ReplyGuardOptions()
        options.refusedSourcePorts = [4000]
        options.repliesPerSecond = 0
        let replyGuard = try ReplyGuard(options)
        #expect(!replyGuard.permitsReply(to: try SocketAddress(ip: "10.0.0.1", port: 4000)))
        #expect(replyGuard.permitsReply(to: try SocketAddress(ip: "10.0.0.1", port: 7)))
        #expect(replyGuard.counters.refusedSourcePort == 1)
    }

    @Test("over real sockets: replies stop at the burst and come back as the bucket refills")
    func rateLimitOverSockets() async throws {
        var options = ReplyGuardOptions()
        options.repliesPerSecond = 10
        options.burst = 5
        try await withServiceServer(guardOptions: options, makeTCP: { EchoHandler() }, makeUDP: { EchoDatagramHandler(replyGuard: $0) }) { server in
            let client = try UDPTestClient()
            for index in 0..<20 { try client.send([UInt8(index)], to: server.udp) }
            let first = client.receiveAll()
            // 5, plus one per 100 ms the server took to handle the 20 (on a loaded machine).
            #expect((5...7).contains(first.count), "\(first.count) replies to 20 datagrams with a burst of 5")
            #expect(first.first == [0], "the first datagrams are the ones answered")
            #expect(try await server.guardCounters().rateLimited >= 14)

            // At 10 per second, 0.4 s (and the quiet wait above) refills a few tokens, never more than the burst.
            pause(.milliseconds(400))
            for index in 0..<20 { try client.send([UInt8(index)], to: server.udp) }
            let second = client.receiveAll()
            #expect((1...5).contains(second.count), "\(second.count) replies after the refill")
        }
    }

    @Test("with a clock the test drives: burst, then the rate, per source IP (not per port)")
    func tokenBucketExactly() throws {
        let clock = Locked<UInt64>(1_000_000_000)
        var options = ReplyGuardOptions()
        options.repliesPerSecond = 4
        options.burst = 3
        let replyGuard = try ReplyGuard(options, now: { clock.value })
        let a1 = try SocketAddress(ip: "192.0.2.1", port: 5000)
        let a2 = try SocketAddress(ip: "192.0.2.1", port: 6000)
        let b = try SocketAddress(ip: "2001:db8::1", port: 5000)
        #expect((0..<5).map { index in replyGuard.permitsReply(to: index % 2 == 0 ? a1 : a2) } == [true, true, true, false, false])
        #expect(replyGuard.permitsReply(to: b), "another source has its own bucket")
        clock.update { $0 += 250_000_000 }  // a quarter second: one token at 4 per second
        #expect(replyGuard.permitsReply(to: a1))
        #expect(!replyGuard.permitsReply(to: a2))
        clock.update { $0 += 10_000_000_000 }  // long enough to refill far past the burst
        #expect((0..<4).map { _ in replyGuard.permitsReply(to: a1) } == [true, true, true, false], "capped at the burst")
        #expect(replyGuard.counters == {
            var counters = ReplyGuardCounters()
            counters.allowed = 8
            counters.rateLimited = 4
            return counters
        }())
    }

    @Test("the table is bounded: many sources evict the least recently seen, never grow it")
    func boundedTable() throws {
        let clock = Locked<UInt64>(1)
        var options = ReplyGuardOptions()
        options.repliesPerSecond = 1
        options.burst = 1
        options.maxTrackedSources = 8
        let replyGuard = try ReplyGuard(options, now: { clock.value })
        let sources = try (0..<100).map { try SocketAddress(ip: "10.1.\($0 / 250).\($0 % 250)", port: 4242) }
        for source in sources {
            clock.update { $0 += 1 }
            #expect(replyGuard.permitsReply(to: source))
        }
        #expect(replyGuard.counters.evictedSources == 92, "8 entries, 100 sources")
        // The 8 most recent are remembered (their buckets are empty); the first was forgotten.
        for source in sources.suffix(8) { #expect(!replyGuard.permitsReply(to: source)) }
        #expect(replyGuard.permitsReply(to: sources[0]))
    }

    @Test("rate limiting can be turned off; bad options are refused with a clear error")
    func options() throws {
        var off = ReplyGuardOptions()
        off.repliesPerSecond = 0
        let replyGuard = try ReplyGuard(off)
        let source = try SocketAddress(ip: "127.0.0.1", port: 5000)
        #expect((0..<1000).allSatisfy { _ in replyGuard.permitsReply(to: source) })
        for change in [{ (o: inout ReplyGuardOptions) in o.repliesPerSecond = -1 }, { $0.burst = 0 }, { $0.maxTrackedSources = 0 }, { $0.refusedSourcePorts = [70000] }] {
            var options = ReplyGuardOptions()
            change(&options)
            #expect(throws: ReactorError.self) { try ReplyGuard(options) }
        }
    }
}
