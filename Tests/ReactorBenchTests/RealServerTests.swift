import Foundation
import ReactorBench
import ReactorCore
import ReactorTestSupport
import Testing

extension BenchTests {
    /// Issue 10: each preset against the real server, and the server's own state read
    /// back afterwards must agree with what the bench says it sent. No warmup, so every
    /// request sent counts in `sent`: the server saw at least every response the bench
    /// received (`requests + answered_after_end`) and at most every request it sent (the
    /// ones in flight at the end may or may not have arrived).
    @Suite(.timeLimit(.minutes(2))) struct RealServerTests {
        private func options(port: Int, _ benchProtocol: BenchProtocol) -> BenchOptions {
            var options = BenchOptions()
            options.port = port
            options.protocol = benchProtocol
            options.connections = 8
            options.depth = 4
            options.size = 32
            options.warmup = .zero
            options.duration = .seconds(1)
            return options
        }

        private func expectServerSaw(_ count: Int, of result: BenchResult, _ what: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let low = result.requests + result.answeredAfterEnd
            #expect(count >= low && count <= result.sent, "\(what): the server counted \(count), the bench received \(low) and sent \(result.sent)",
                sourceLocation: sourceLocation)
        }

        @Test func redisSetThenGetMatchTheServersState() throws {
            let redis = try RealServer.redis()
            var set = options(port: redis.port, .redis)
            set.commands = [BenchOptions.Command("SET key:{key} {value}")]
            set.keyspace = 300
            set.keyDistribution = .sequential
            let written = try BenchRunner.run(set)
            #expect(written.errors.total == 0, "\(written.errors.nonZero)")
            #expect(written.requests > 300)
            #expect(try redis.redisCommand("DBSIZE") == ":300\r\n")
            expectServerSaw(try redis.redisCalls("set"), of: written, "SET calls")
            let value = try redis.redisCommand("GET", "key:7")
            #expect(value.hasPrefix("$32\r\n") && value.utf8.count == 32 + 7, "GET key:7 -> \(value.debugDescription)")

            // Every key was written: every GET is a hit, and the bench checked each value.
            // The hits counted so far (the GET just above) are not the bench's.
            let hitsBefore = Int(try redis.redisInfo("keyspace_hits") ?? "") ?? -1
            var get = options(port: redis.port, .redis)
            get.commands = [BenchOptions.Command("SET key:{key} {value}"), BenchOptions.Command("GET key:{key}", weight: 9)]
            get.keyspace = 300
            let read = try BenchRunner.run(get)
            #expect(read.errors.total == 0, "\(read.errors.nonZero)")
            #expect(read.hits > 0 && read.misses == 0, "hits \(read.hits), misses \(read.misses)")
            let hits = (Int(try redis.redisInfo("keyspace_hits") ?? "") ?? -1) - hitsBefore
            #expect(hitsBefore >= 0 && hits >= read.hits && hits <= read.hits + read.answeredAfterEnd + read.inFlightAtEnd, "keyspace_hits \(hits) since the run began, bench hits \(read.hits), in flight at the end \(read.inFlightAtEnd), answered after it \(read.answeredAfterEnd)")
            #expect(try redis.redisCommand("DBSIZE") == ":300\r\n")
        }

        @Test func redisPingIsTheDefault() throws {
            let redis = try RealServer.redis()
            var ping = options(port: redis.port, .redis)
            ping.depth = 1
            let result = try BenchRunner.run(ping)
            #expect(result.errors.total == 0, "\(result.errors.nonZero)")
            #expect(result.requests > 1000)
            expectServerSaw(try redis.redisCalls("ping"), of: result, "PING calls")
        }

        @Test func memcachedSetThenGetMatchTheServersStats() throws {
            let memcached = try RealServer.memcached()
            var set = options(port: memcached.port, .memcached)
            set.commands = [BenchOptions.Command("set key:{key} {value}")]
            set.keyspace = 400
            set.keyDistribution = .sequential
            let written = try BenchRunner.run(set)
            #expect(written.errors.total == 0, "\(written.errors.nonZero)")
            var stats = try memcached.memcachedStats()
            #expect(stats["curr_items"] == 400)
            expectServerSaw(stats["cmd_set"] ?? -1, of: written, "cmd_set")

            var get = options(port: memcached.port, .memcached)
            get.commands = [BenchOptions.Command("set key:{key} {value}"), BenchOptions.Command("get key:{key}", weight: 3)]
            get.keyspace = 800  // half the keys were never written: misses, not errors
            let read = try BenchRunner.run(get)
            #expect(read.errors.total == 0, "\(read.errors.nonZero)")
            #expect(read.hits > 0 && read.misses > 0, "hits \(read.hits), misses \(read.misses)")
            stats = try memcached.memcachedStats()
            let hits = stats["get_hits"] ?? -1
            #expect(hits >= read.hits && hits <= read.hits + read.answeredAfterEnd + read.inFlightAtEnd, "get_hits \(hits), bench hits \(read.hits)")
            let misses = stats["get_misses"] ?? -1
            #expect(misses >= read.misses && misses <= read.misses + read.answeredAfterEnd + read.inFlightAtEnd, "get_misses \(misses), bench \(read.misses)")
        }

        @Test func nginxServesEveryRequestTheBenchCounts() throws {
            let nginx = try RealServer.nginx(keepaliveRequests: 50)
            var http = options(port: nginx.port, .http)
            http.paths = ["/index.html"]
            let result = try BenchRunner.run(http)
            #expect(result.errors.total == 0, "\(result.errors.nonZero)")
            #expect(result.requests > 500)
            #expect(result.statusCodes == [200: result.requests])
            // keepalive_requests 50: nginx ends each connection after 50 with `Connection: close`.
            #expect(result.reconnects >= result.requests / 50 - 8, "\(result.reconnects) reconnects for \(result.requests) requests")
            expectServerSaw(try nginx.accessLogLines(), of: result, "access log lines")
        }

        @Test func nginxNotFoundIsAnHTTPStatusError() throws {
            let nginx = try RealServer.nginx()
            var http = options(port: nginx.port, .http)
            http.paths = ["/index.html", "/missing-{key}"]
            http.depth = 1
            let result = try BenchRunner.run(http)
            let ok = result.statusCodes[200] ?? 0
            let missing = result.statusCodes[404] ?? 0
            #expect(ok > 0 && missing > 0, "\(result.statusCodes)")
            #expect(abs(ok - missing) <= http.connections, "round-robin paths: \(result.statusCodes)")
            #expect(result.errors.httpStatus == missing && result.errors.total == missing, "\(result.errors.nonZero)")
            #expect(result.requests == ok)
            let served = try nginx.accessLogLines()
            #expect(served >= ok + missing + result.answeredAfterEnd && served <= result.sent, "served \(served), sent \(result.sent)")
        }

        /// The command line: each --weight belongs to the --command before it, and an
        /// escaped space stays inside its argument.
        @Test func theCommandMixesRedisCommandsByWeight() throws {
            let redis = try RealServer.redis()
            let json = FileManager.default.temporaryDirectory.appendingPathComponent("bench-redis-\(getpid()).json").path
            defer { try? FileManager.default.removeItem(atPath: json) }
            let child = try ChildProcess.reactor([
                "bench", "127.0.0.1:\(redis.port)", "--protocol", "redis", "--command", "GET k{key}", "--command", "SET k{key} {value}",
                "--weight", "9", "--command", #"SET spaced a\x20b"#, "--keyspace", "100", "--connections", "4", "--duration", "1",
                "--warmup", "0", "--quiet", "--json", json,
            ])
            #expect(child.waitForExit(timeout: .seconds(15)) == 0, "\(child.standardError)")
            #expect(child.standardOutput.contains("errors: 0"), "\(child.standardOutput)")
            let sets = try redis.redisCalls("set")
            let gets = try redis.redisCalls("get")
            // Per 11 requests: 1 GET, 9 SET k{key}, 1 SET spaced.
            #expect(gets > 100 && abs(sets - 10 * gets) <= 8 * 11, "\(sets) SETs for \(gets) GETs")
            #expect(try redis.redisCommand("GET", "spaced") == "$3\r\na b\r\n")
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
            #expect(object?["protocol"] as? String == "redis")
            #expect((object?["hits"] as? Int ?? 0) + (object?["misses"] as? Int ?? 0) > 0)
            #expect(object?["error_kinds"] is [String: Any] && object?["status_codes"] is [String: Any])
        }
    }
}
