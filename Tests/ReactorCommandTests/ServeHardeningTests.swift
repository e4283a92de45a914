// `reactor serve echo` as a child process against misbehaving peers and a SIGTERM under
// load: slowloris partial frames, resets mid-write, peers that vanish, half-closes,
// silent connects; no crash, no descriptor leak, no connection past the idle timeout,
// and every acknowledged request answered in full on shutdown.

import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// A running `reactor serve echo --port 0` with `extra` options, and its address.
private struct ServedEcho {
    let child: ChildProcess
    let address: SocketAddress

    init(_ extra: [String]) throws {
        child = try ChildProcess.reactor(["serve", "echo", "--port", "0"] + extra)
        let line = try child.firstLine()
        guard let port = listeningPort(in: line) else { throw TestFailure("unexpected first line: '\(line)'") }
        address = try SocketAddress(ip: "127.0.0.1", port: port)
    }

    /// The server's open descriptors (/proc/PID/fd).
    func openDescriptors() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(child.pid)/fd").count
    }

    /// SIGTERM, then the exit status (nil if it did not exit within `timeout`).
    func terminate(timeout: Duration = .seconds(10)) -> Int32? {
        child.signal(SIGTERM)
        return child.waitForExit(timeout: timeout)
    }
}

@Suite("serve echo under faults", .timeLimit(.minutes(1)))
struct ServeFaultTests {
    @Test("slowloris: a partial line trickled a byte at a time is closed after the idle timeout; whole lines keep a peer open")
    func slowlorisPartialFrame() throws {
        let server = try ServedEcho(["--framing", "line", "--idle-timeout", "1"])
        let trickler = try TestClient(connectingTo: server.address)
        let talker = try TestClient(connectingTo: server.address)
        let started = ContinuousClock.now
        var trickleEnd: StreamEnd?
        var trickleEndedAfter = Duration.zero
        // For 3 s, the trickler sends one byte of a line that never ends every 200 ms (well
        // inside the timeout each time), the talker a whole line.
        for step in 0..<15 {
            if trickleEnd == nil {
                // The server's close shows as end of file, or as a reset when a byte sent
                // after its FIN (or not yet read at its close) makes the kernel answer RST.
                var end: StreamEnd?
                do {
                    try trickler.send([UInt8(ascii: "a") + UInt8(step % 26)])
                    end = trickler.receiveSome(timeout: .zero).end
                } catch {
                    end = .reset
                }
                if let end, end != .timedOut {
                    trickleEnd = end
                    trickleEndedAfter = ContinuousClock.now - started
                }
            }
            try talker.send("line \(step)\n")
            #expect(String(decoding: try talker.receive(count: "line \(step)\n".utf8.count), as: UTF8.self) == "line \(step)\n")
            usleep(200_000)
        }
        #expect(trickleEnd == .endOfFile || trickleEnd == .reset, "the trickling peer was not closed within 3 s")
        #expect(trickleEndedAfter >= .milliseconds(900), "closed before the idle timeout: \(trickleEndedAfter)")
        #expect(server.terminate() == 0, "stderr: \(server.child.standardError)")
    }

    @Test("resets mid-write, vanished peers, half-closes, silent connects: no crash, no fd leak, none open past the idle timeout")
    func misbehavingPeers() throws {
        let server = try ServedEcho(["--idle-timeout", "1"])
        let baseline = try server.openDescriptors()

        // Peers that reset while the server has output queued for them: they send more than
        // the buffers on the way hold and never read, then close with RST (SO_LINGER 0).
        for _ in 0..<5 {
            let client = try TestClient(connectingTo: server.address, receiveBuffer: 16 * 1024, sendBuffer: 16 * 1024)
            var sent = 0
            let chunk = pattern(count: 64 * 1024)
            let deadline = Deadline(.seconds(5))
            while !deadline.hasPassed {
                // A send error means the server gave up first (its idle timeout); fine too.
                guard let taken = try? chunk.withUnsafeBytes({ try client.sendAvailable($0) }) else { break }
                sent += taken
                if taken == 0, !client.waitWritable(timeout: .milliseconds(200)) { break }
            }
            #expect(sent > 256 * 1024, "the server should have taken some before backing up")
            client.reset()
        }

        // Peers that vanish without FIN (they just stop), and peers that connect and say nothing.
        let vanished = try (0..<5).map { index in
            let client = try TestClient(connectingTo: server.address)
            try client.send("half a request from \(index)")
            return client
        }
        let silent = try (0..<5).map { _ in try TestClient(connectingTo: server.address) }

        // Half-closes: every reply is flushed after the peer's FIN, then end of file.
        for _ in 0..<3 {
            let client = try TestClient(connectingTo: server.address)
            let data = pattern(count: 512 * 1024)
            var received = try client.sendWhileReading(data)
            client.shutdownWrite()
            let (rest, end) = client.receiveUntilEnd(timeout: .seconds(10))
            received += rest
            #expect(end == .endOfFile)
            #expect(received.count == data.count)
            #expect(firstPatternMismatch(received) == nil)
        }

        // The idle ones are closed within the timeout (1 s) plus slack, with end of file.
        for client in vanished + silent {
            let (bytes, end) = client.receiveUntilEnd(timeout: .seconds(4))
            #expect(end == .endOfFile, "an idle peer was not closed within the idle timeout: \(end)")
            #expect(bytes.count <= 30)
        }
        #expect(server.child.process.isRunning, "the server died: \(server.child.standardError)")
        #expect(
            waitUntil(timeout: .seconds(5)) { (try? server.openDescriptors()) == baseline },
            "descriptors leaked: \((try? server.openDescriptors()) ?? -1) open, \(baseline) before")
        #expect(server.terminate() == 0, "stderr: \(server.child.standardError)")
    }
}

@Suite("serve echo: SIGTERM under load", .timeLimit(.minutes(1)))
struct ServeShutdownTests {
    /// What one client saw: requests whose first byte came back before the signal, and
    /// how many of those were answered in full.
    struct Tally: Sendable {
        var acknowledgedBeforeSignal = 0
        var answeredInFull = 0
        var failures: [String] = []
    }

    @Test("every request acknowledged before SIGTERM gets its full reply; the server exits 0 within --shutdown-timeout")
    func sigtermUnderLoad() throws {
        let server = try ServedEcho(["--shutdown-timeout", "5"])
        let clientCount = 16
        let signalled = Locked<ContinuousClock.Instant?>(nil)
        let tallies = Locked<[Tally]>([])
        let answered = Locked(Array(repeating: 0, count: clientCount))
        let done = DispatchGroup()
        for index in 0..<clientCount {
            let client = ReactorBound(try TestClient(
                connectingTo: server.address, receiveBuffer: 8 * 1024, sendBuffer: 256 * 1024, defaultTimeout: .seconds(10)))
            done.enter()
            Thread {
                defer { done.leave() }
                let tally = Self.runClient(index, client.value, signalled: signalled) { count in
                    answered.update { $0[index] = count }
                }
                tallies.update { $0.append(tally) }
            }.start()
        }
        // Signal in the middle of the load: once every client has had a few answers.
        #expect(answered.wait(timeout: .seconds(30)) { $0.allSatisfy { $0 >= 5 } } != nil, "the load did not get going")
        signalled.set(.now)
        server.child.signal(SIGTERM)
        let status = server.child.waitForExit(timeout: .seconds(8))
        let exitedAfter = ContinuousClock.now - signalled.value!
        #expect(done.wait(timeout: .now() + .seconds(15)) == .success, "clients did not finish")

        #expect(status == 0, "stderr: \(server.child.standardError)")
        #expect(exitedAfter < .seconds(6), "exit took \(exitedAfter), past --shutdown-timeout 5")
        let all = tallies.value
        #expect(all.count == clientCount)
        let acknowledged = all.map(\.acknowledgedBeforeSignal).reduce(0, +)
        let answeredInFull = all.map(\.answeredInFull).reduce(0, +)
        #expect(acknowledged > clientCount, "too little load to test anything: \(acknowledged) requests")
        #expect(answeredInFull == acknowledged, "\(acknowledged - answeredInFull) acknowledged requests lost their reply")
        #expect(all.flatMap(\.failures).isEmpty, "\(all.flatMap(\.failures))")
    }

    /// One client: request after request (4-16 KiB of its own pattern, each sent once the
    /// last reply is complete into a send buffer that takes it whole, so the server reads
    /// it in one read), read back slowly so
    /// output queues up on the server. A request is acknowledged when its first byte comes
    /// back; once the signal is sent, it finishes the request in flight and stops.
    private static func runClient(
        _ index: Int, _ client: TestClient, signalled: Locked<ContinuousClock.Instant?>, progress: (Int) -> Void
    ) -> Tally {
        var tally = Tally()
        var generator = SystemRandomNumberGenerator()
        var offset = 0
        while signalled.value == nil {
            let size = Int.random(in: 4096...16384, using: &generator)
            let request = pattern(count: size, offset: offset, seed: UInt64(index + 1))
            offset += size
            do {
                try client.send(request)
            } catch {
                break  // the server closed while this was being sent: never acknowledged
            }
            var reply: [UInt8] = []
            var acknowledged = false
            while reply.count < size {
                let (bytes, end) = client.receiveSome(max: 1024, timeout: .seconds(10))
                if !acknowledged, !bytes.isEmpty {
                    acknowledged = true
                    if signalled.value == nil { tally.acknowledgedBeforeSignal += 1 } else { acknowledged = false }
                }
                reply += bytes
                if end != nil { break }
                usleep(200)  // a slow reader: the server's output queues up
            }
            guard acknowledged else { break }
            if reply == request {
                tally.answeredInFull += 1
                progress(tally.answeredInFull)
            } else {
                tally.failures.append("client \(index): \(reply.count) of \(size) bytes came back, or different ones")
                break
            }
        }
        // The server closes gracefully: end of file after the last reply.
        let (_, end) = client.receiveUntilEnd(timeout: .seconds(10))
        if end != .endOfFile && end != .reset { tally.failures.append("client \(index): the stream ended with \(end)") }
        return tally
    }
}
