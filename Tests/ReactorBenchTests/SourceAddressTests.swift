import ReactorBench
import ReactorCore
import ReactorTestSupport
import Testing

extension BenchTests {
    /// `--source`: the local addresses the TCP connections come from.
    @Suite struct SourceAddressTests {
        @Test func listsAndRangesParseInOrder() throws {
            let addresses = try BenchOptions.parseSourceAddresses("127.0.0.254-127.0.1.1, 127.0.0.9")
            #expect(addresses.map(\.ip) == ["127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1", "127.0.0.9"])
            #expect(addresses.allSatisfy { $0.port == 0 })
            #expect(try BenchOptions.parseSourceAddresses("::1").map(\.family) == [.ipv6])
        }

        @Test(arguments: [
            ("127.0.0.5-127.0.0.2", "ends before it starts"), ("127.0.0", "not a numeric"), ("127.0.0.1,::1", "mixes IPv4 and IPv6"),
            ("", "empty item"), ("127.0.0.1,", "empty item"), ("::1-::2", "two IPv4 addresses"),
            ("10.0.0.0-10.1.0.0", "more than 65536"), ("127.0.0.1-127.0.0.256", "two IPv4 addresses"),
        ])
        func badListsAreRefusedSayingWhy(text: String, reason: String) {
            let error = #expect(throws: BenchError.self) { try BenchOptions.parseSourceAddresses(text) }
            #expect(error?.message.contains("--source") == true)
            #expect(error?.message.contains(reason) == true, "\(error?.message ?? "")")
        }

        @Test func udpAndAnotherFamilyThanTheTargetsAreRefused() throws {
            var options = BenchOptions()
            options.protocol = .udp
            options.sourceAddresses = try BenchOptions.parseSourceAddresses("127.0.0.2")
            #expect(throws: BenchError("--source applies to TCP connections, not UDP")) { try options.validate() }

            options.protocol = .raw
            options.sourceAddresses = try BenchOptions.parseSourceAddresses("::1")
            options.duration = .milliseconds(200)
            let error = #expect(throws: BenchError.self) { try BenchRunner.run(options) }
            #expect(error?.message.contains("not of the family of the target") == true, "\(error?.message ?? "")")
        }

        @Test func churnComesFromEverySourceAddressInTurn() throws {
            let sources = try BenchOptions.parseSourceAddresses("127.0.0.2-127.0.0.5")
            let peers = Locked<[String: Int]>([:])
            let result = try withServer(makeHandler: { _, connection in
                let ip = connection.peerAddress.ip
                peers.update { $0[ip, default: 0] += 1 }
                return ByteEcho()
            }) { server in
                var options = BenchOptions()
                options.port = server.port
                options.mode = .churn
                options.connections = 4
                options.warmup = .zero
                options.duration = .seconds(1)
                options.sourceAddresses = sources
                return try BenchRunner.run(options)
            }
            #expect(result.errors.total == 0, "\(result.errors)")
            #expect(result.requests > 100)
            let seen = peers.value
            #expect(Set(seen.keys) == Set(sources.map(\.ip)))
            // In turn: no address took much more than its share.
            let counts = seen.values.sorted()
            #expect(counts.last! - counts.first! <= counts.last! / 4 + 4, "\(seen)")
        }
    }
}
