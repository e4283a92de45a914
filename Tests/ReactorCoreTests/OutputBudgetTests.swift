// The reactor-wide output budget: peers that never read cannot make the reactor queue
// more than the budget plus one read each, nothing is lost, and everyone is served once
// they read.

import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

@Suite("Output budget", .timeLimit(.minutes(1)))
struct OutputBudgetTests {
    @Test("non-reading peers are throttled at the reactor's budget, then get every byte back when they read")
    func nonReadersThrottledAtBudget() throws {
        let budget = 1024 * 1024
        let clientCount = 4
        // Per-connection watermarks far above the budget, so only the budget can stop them.
        var options = ConnectionOptions()
        options.writeBufferHighWatermark = 8 * 1024 * 1024
        options.writeBufferLowWatermark = 4 * 1024 * 1024
        options.writeBufferLimit = 16 * 1024 * 1024
        let peak = Locked(0)
        try withServer(connectionOptions: options, outputBudget: budget, makeHandler: { reactor, _ in
            let probe = ProbeHandler(record: Locked(ConnectionRecord()), inner: ByteEcho(), keepReceivedBytes: false)
            probe.onReceived = { _, _ in
                let queued = reactor.queuedOutputBytes
                peak.update { $0 = max($0, queued) }
            }
            return probe
        }) { server in

            let clients = try (0..<clientCount).map { _ in
                try TestClient(connectingTo: server.address, receiveBuffer: 32 * 1024, sendBuffer: 32 * 1024)
            }
            // Each client writes its own pattern and never reads, until no client's socket has
            // taken anything for 500 ms: the server stopped reading all of them.
            let chunkSize = 64 * 1024
            let cap = 16 * 1024 * 1024
            var sent = Array(repeating: 0, count: clientCount)
            let writing = Deadline(.seconds(30))
            var lastProgress = ContinuousClock.now
            while ContinuousClock.now - lastProgress < .milliseconds(500), !writing.hasPassed {
                var progressed = false
                for (index, client) in clients.enumerated() where sent[index] < cap {
                    let chunk = pattern(count: chunkSize, offset: sent[index], seed: UInt64(index + 1))
                    let taken = try chunk.withUnsafeBytes { try client.sendAvailable($0) }
                    sent[index] += taken
                    if taken > 0 { progressed = true }
                }
                if progressed { lastProgress = .now } else { usleep(5000) }
            }
            try #require(sent.allSatisfy { $0 < cap }, "the server kept reading from peers that never read: \(sent)")

            let (queued, throttled) = try throttledState(server)
            // Every unthrottled connection may add one read (64 KiB) past the budget.
            let bound = budget + clientCount * Reactor.defaultReadBufferSize
            #expect(queued > budget / 2, "the stalled clients should hold the budget's worth of output, not \(queued)")
            #expect(queued <= bound, "queued output \(queued) is past the budget plus one read per connection (\(bound))")
            #expect(peak.value <= bound, "queued output peaked at \(peak.value), past \(bound)")
            #expect(throttled > 0, "no connection was throttled")

            // Now each client reads everything back, one after the other: nothing lost or reordered.
            for (index, client) in clients.enumerated() {
                let bytes = try client.receive(count: sent[index], timeout: .seconds(20))
                #expect(firstPatternMismatch(bytes, seed: UInt64(index + 1)) == nil, "client \(index)'s echo differs")
            }
            let (queuedAfter, throttledAfter) = try throttledState(server)
            #expect(queuedAfter == 0)
            #expect(throttledAfter == 0)
            // And they are served normally again.
            for client in clients {
                try client.send("again\n")
                #expect(try client.receive(count: 6) == Array("again\n".utf8))
            }
        }
    }

    /// The reactor's queued output and how many of its connections are throttled.
    private func throttledState(_ server: TestServer) throws -> (queued: Int, throttled: Int) {
        try server.sync { reactor in
            (reactor.queuedOutputBytes, reactor.throttledConnectionCount)
        }
    }
}
