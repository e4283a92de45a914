import ReactorBench
import ReactorCore
import ReactorTestSupport
import Testing

extension BenchTests {
    /// `reactor bench` takes host names through the reactor's host connect.
    @Suite(.timeLimit(.minutes(1))) struct HostNameTests {
        private func options(host: String, port: Int) -> BenchOptions {
            var options = BenchOptions()
            options.host = host
            options.port = port
            options.protocol = .raw
            options.connections = 2
            options.warmup = .zero
            options.duration = .milliseconds(500)
            options.connectTimeout = .seconds(5)
            return options
        }

        @Test func aHostNameIsLoaded() throws {
            try withEchoServer { server in
                let result = try BenchRunner.run(options(host: "localhost", port: server.port))
                #expect(result.requests > 0)
                #expect(result.errors.total == 0, "\(result.errors.nonZero)")
            }
        }

        @Test func anUnknownNameIsAnErrorNamingIt() throws {
            #expect {
                try BenchRunner.run(options(host: "no-such-host.invalid", port: 7))
            } throws: { error in
                "\(error)".contains("no-such-host.invalid")
            }
        }
    }
}
