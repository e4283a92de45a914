import Foundation
import ReactorBench
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

extension BenchTests {
    /// Issue 5's honesty checks: the harness reports what the server does, not what the
    /// harness does.
    @Suite struct HonestyTests {
        private func options(port: Int, _ benchProtocol: BenchProtocol = .line) -> BenchOptions {
            var options = BenchOptions()
            options.port = port
            options.protocol = benchProtocol
            options.size = 32
            options.warmup = .milliseconds(300)
            options.duration = .seconds(1)
            return options
        }

        /// Runs against a fresh server until `acceptable` holds, at most `attempts` times.
        /// `swift test` starts every suite of the package at once, and a timing check that
        /// lands in that storm on a 2-core machine measures the storm (a 20 ms timer firing
        /// at 27 ms). The bounds stay as they are: a harness that misreports misses them
        /// on every attempt.
        private func measure(
            attempts: Int = 3, setup: @escaping @Sendable (Reactor) -> Void = { _ in },
            makeHandler: @escaping @Sendable (Reactor, Connection) -> any ConnectionHandler,
            _ configure: (inout BenchOptions) -> Void, until acceptable: (BenchResult) -> Bool
        ) throws -> BenchResult {
            var result: BenchResult?
            for _ in 0..<attempts {
                result = try withServer(setup: setup, makeHandler: makeHandler) { server in
                    var options = options(port: server.port)
                    configure(&options)
                    return try BenchRunner.run(options)
                }
                if acceptable(result!) { break }
            }
            return result!
        }

        @Test func resetConnectionsAreCountedAndTheRunEndsOnTime() throws {
            let seeds = Counter()
            try withServer(makeHandler: { _, _ in ResettingEcho(seed: seeds.next()) }) { server in
                var options = options(port: server.port, .raw)
                options.connections = 20
                options.depth = 4
                let started = ContinuousClock.now
                let result = try BenchRunner.run(options)
                let elapsed = ContinuousClock.now - started
                #expect(result.errors.reset + result.errors.closed > 0, "\(result.errors)")
                #expect(result.requests > 0)
                #expect(elapsed < options.hardDeadline + .seconds(1), "took \(elapsed)")
            }
        }

        @Test(arguments: [BenchProtocol.raw, .line, .crlf, .int32, .netstring])
        func anEchoServerGetsEveryRequestVerified(_ benchProtocol: BenchProtocol) throws {
            try withServer(makeHandler: { _, _ in ByteEcho() }) { server in
                var options = options(port: server.port, benchProtocol)
                options.connections = 8
                options.depth = 8
                options.warmup = .zero
                let result = try BenchRunner.run(options)
                #expect(result.errors.total == 0, "\(result.errors)")
                #expect(result.requests > 1000)
                // Every request sent in the window is accounted for: verified in it, answered
                // just after it, or still in flight when the clients stopped.
                #expect(result.sent == result.requests + result.answeredAfterEnd + result.inFlightAtEnd)
            }
        }

        @Test func aWrongResponseIsCaught() throws {
            try withServer(makeHandler: { _, _ in
                FramedConnection(framer: DelimiterFramer.line(), handler: CorruptingLineEcho())
            }) { server in
                var options = options(port: server.port)
                options.connections = 4
                options.depth = 2
                let result = try BenchRunner.run(options)
                #expect(result.errors.wrongResponse > 0)
                #expect(result.requests > 0)
            }
        }

        @Test func udpEchoIsVerified() throws {
            try withUDPEchoServer { server in
                var options = options(port: server.port, .udp)
                options.connections = 8
                options.depth = 4
                options.size = 64
                let result = try BenchRunner.run(options)
                #expect(result.requests > 1000)
                #expect(result.errors.wrongResponse == 0)
                #expect(result.errors.lost <= result.requests / 100, "\(result.errors)")
            }
        }

        @Test func nothingListeningIsCountedAsRefusedWithoutHanging() throws {
            let silent = try RawSocket()  // bound, never listening: connects are refused
            var options = options(port: silent.port)
            options.connections = 2
            options.warmup = .zero
            options.duration = .milliseconds(500)
            let started = ContinuousClock.now
            let result = try BenchRunner.run(options)
            #expect(result.errors.refused > 0)
            #expect(result.requests == 0)
            #expect(ContinuousClock.now - started < .seconds(3))
            withExtendedLifetime(silent) {}
        }

        // The timing checks come last: by then most of the package's other tests, started
        // at the same time, have finished.
        @Test func aServerAnsweringAfter20msShowsP50Near20msAndTheMatchingRate() throws {
            let connections = 10
            let depth = 4
            // Little's law: the rate must match the requests in flight over the latency the
            // run itself measured. Under a sanitizer each round trip costs a few ms more than
            // the 20 ms delay, and the rate must follow the latency, not the nominal delay.
            func expectedRate(_ result: BenchResult) -> Double {
                Double(connections * depth) / (Double(result.latency.p50) / 1_000_000)
            }
            let result = try measure(makeHandler: { _, _ in
                FramedConnection(framer: DelimiterFramer.line(), handler: DelayedLineEcho(delay: .milliseconds(20)))
            }) { options in
                options.connections = connections
                options.depth = depth
                options.duration = .seconds(2)
                options.warmup = .milliseconds(500)
            } until: { result in
                (19_000...25_000).contains(result.latency.p50) && abs(result.rps - expectedRate(result)) / expectedRate(result) <= 0.15
            }
            #expect(result.errors.total == 0)
            #expect((19_000...25_000).contains(result.latency.p50), "p50 \(result.latency.p50) µs")
            let expected = expectedRate(result)
            #expect(abs(result.rps - expected) / expected <= 0.15, "rps \(result.rps), expected about \(expected); p99 \(result.latency.p99) µs")
        }

        @Test func aFreezingServerShowsInCorrectedButNotUncorrectedLatency() throws {
            let result = try measure(setup: { reactor in
                scheduleFreezes(on: reactor, first: .milliseconds(800), period: .seconds(2), length: .milliseconds(500))
            }, makeHandler: { _, _ in ByteEcho() }) { options in
                options.connections = 10
                options.rate = 1000
                options.warmup = .zero
                options.duration = .seconds(5)
            } until: { result in
                result.rps > 900 && result.latency.p99 >= 200_000 && result.latencyUncorrected.p99 < 50_000
            }
            #expect(result.errors.total == 0)
            #expect(result.rps > 900, "a rate the server sustains between freezes: \(result.rps)")
            #expect(result.latency.p99 >= 200_000, "corrected p99 \(result.latency.p99) µs")
            #expect(result.latencyUncorrected.p99 < 50_000, "uncorrected p99 \(result.latencyUncorrected.p99) µs")
            #expect(result.latencyUncorrected.max >= 400_000, "the requests in flight during a freeze waited for it")
        }
    }
}

/// Hands out 0, 1, 2, ... across threads.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func next() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value += 1
        return value * 37
    }
}
