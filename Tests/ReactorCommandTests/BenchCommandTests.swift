// `reactor bench` as a child process against an echo server in this process (progress,
// the summary, the JSON file, refusals of what it cannot run), and the suite spawning
// `reactor serve` per scenario.

import Foundation
import ReactorBench
import ReactorCore
import ReactorTestSupport
import Testing


@Suite("reactor bench", .timeLimit(.minutes(1)))
struct BenchCommandTests {
    @Test func theCommandShowsProgressASummaryAndWritesJSON() throws {
        try withEchoServer { server in
            let json = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(getpid()).json").path
            defer { try? FileManager.default.removeItem(atPath: json) }
            let child = try ChildProcess.reactor([
                "bench", "127.0.0.1:\(server.port)", "--protocol", "int32", "--connections", "4", "--depth", "4",
                "--duration", "1.3", "--warmup", "0", "--threads", "2", "--json", json,
            ])
            #expect(child.waitForExit(timeout: .seconds(10)) == 0, "\(child.standardError)")
            #expect(child.standardOutput.contains("int32 requests, 4 connection(s) x 4 in flight x 64 B, closed loop, 2 thread(s)"))
            #expect(child.standardOutput.contains("errors: 0"))
            #expect(child.standardErrorLines.contains { $0.hasPrefix("[1s measure]") }, "one plain progress line off a terminal")
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any]
            #expect((object?["requests"] as? Int ?? 0) > 0)
            #expect(object?["threads"] as? Int == 2)
        }
    }

    @Test func theCommandTakesAHostNameAndNamesOneThatDoesNotResolve() throws {
        try withEchoServer { server in
            let child = try ChildProcess.reactor([
                "bench", "localhost:\(server.port)", "--protocol", "raw", "--connections", "2", "--duration", "0.5",
                "--warmup", "0", "--quiet",
            ])
            #expect(child.waitForExit(timeout: .seconds(10)) == 0, "\(child.standardError)")
            #expect(child.standardOutput.contains("errors: 0"), "\(child.standardOutput)")
        }
        let unknown = try ChildProcess.reactor(["bench", "no-such-host.invalid:7", "--duration", "0.5", "--warmup", "0"])
        let status = unknown.waitForExit(timeout: .seconds(15))
        #expect(status != nil && status != 0)
        #expect(unknown.standardError.contains("no-such-host.invalid"), "\(unknown.standardError)")
    }

    @Test func theCommandRefusesWhatItCannotRun() throws {
        for arguments in [["bench", "no-port"], ["bench", "127.0.0.1:7", "--protocol", "udp", "--size", "4"],
                          ["bench", "suite"], ["bench", "suite", "--target", "x=nowhere"],
                          ["bench", "127.0.0.1:7", "--source", "127.0.0.9-127.0.0.2"]] {
            let child = try ChildProcess.reactor(arguments)
            let status = child.waitForExit(timeout: .seconds(10))
            #expect(status != nil && status != 0, "\(arguments)")
            #expect(!child.standardError.isEmpty, "\(arguments) says why")
        }
    }

    @Test func suiteSpawnsAServerPerScenarioAndReadsItsFiguresFromProc() throws {
        let reactor = try reactorExecutable()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bench-spawn-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var configuration = BenchSuite.Configuration()
        configuration.targets = [
            try SuiteTarget.parseSpawn("reactor=\(reactor) serve echo --port {port} --framing {framing} --udp-rate 0")
        ]
        configuration.scenarios = ["ping-pong", "udp-echo"].compactMap(SuiteScenario.named)
        configuration.duration = .milliseconds(400)
        configuration.warmup = .zero
        configuration.serverCPUs = nil
        configuration.clientCPUs = nil
        configuration.outputFolder = folder
        let outcomes = try BenchSuite(configuration) { _ in }.run()
        #expect(outcomes.count == 2)
        for outcome in outcomes {
            let result = try #require(outcome.result, "\(outcome.scenario.name): \(outcome.note ?? "")")
            #expect(result.requests > 0)
            // Loopback can still drop a datagram now and then; nothing else may fail.
            #expect(result.errors.total - result.errors.lost == 0, "\(outcome.scenario.name): \(result.errors.nonZero)")
            #expect(result.errors.lost <= Swift.max(1, result.requests / 100))
            #expect(result.serverCPUSeconds != nil)
            #expect((result.serverPeakRSSKiB ?? 0) > 0)
        }
    }
}
