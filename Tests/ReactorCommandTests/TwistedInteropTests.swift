// Interop with a real peer: Twisted's own receivers (Int8/16/32StringReceiver,
// NetstringReceiver, LineReceiver) talking to `reactor serve echo --framing F`, thousands
// of frames each, every echo checked byte-exact by Tests/Interop/twisted_echo_client.py.
//
// Twisted comes from pip (`make test` installs it). Without it the tests are skipped,
// except under CI (the CI environment variable set), where a missing Twisted fails them.

import Foundation
import Glibc
import ReactorTestSupport
import Testing

@Suite(
    "Twisted interop", .timeLimit(.minutes(1)),
    .disabled(
        if: !twistedAvailable && !runningInCI,
        "Twisted is not installed: `python3 -m pip install twisted` (make test does) to run the interop tests"))
struct TwistedInteropTests {
    struct Mode: Sendable, CustomTestStringConvertible {
        /// The client's receiver: int8, int16, int32, netstring, crlf, line.
        let client: String
        /// `--framing` for the server.
        let framing: String
        let frames: Int
        var testDescription: String { "\(client) against --framing \(framing), \(frames) frames" }
    }

    static let modes: [Mode] = [
        Mode(client: "int32", framing: "int32", frames: 5000),
        Mode(client: "netstring", framing: "netstring", frames: 5000),
        Mode(client: "crlf", framing: "crlf", frames: 5000),
        Mode(client: "line", framing: "line", frames: 5000),
        Mode(client: "int16", framing: "int16", frames: 3000),
        Mode(client: "int8", framing: "int8", frames: 3000),
    ]

    static let script = packageRoot.appendingPathComponent("Tests/Interop/twisted_echo_client.py").path

    @Test("a Twisted receiver gets every frame echoed byte-exact", arguments: modes)
    func twistedEcho(_ mode: Mode) async throws {
        guard twistedAvailable else {
            Issue.record("CI is set but python3 cannot import twisted; install it with `python3 -m pip install twisted` (make test does)")
            return
        }
        let server = try ChildProcess(
            try reactorExecutable(),
            ["serve", "echo", "--framing", mode.framing, "--host", "127.0.0.1", "--port", "0", "--log-level", "warning"])
        let line = try await server.firstLine()
        // "listening tcp 127.0.0.1:PORT echo"
        let words = line.split(separator: " ")
        guard words.count == 4, words[0] == "listening", words[1] == "tcp", words[3] == "echo",
            let colon = words[2].lastIndex(of: ":"), let port = Int(words[2][words[2].index(after: colon)...])
        else {
            Issue.record("unexpected first line from the server: \(line.debugDescription)")
            return
        }
        let host = String(words[2][..<colon])

        let client = try ChildProcess(
            "/usr/bin/env",
            ["python3", Self.script, host, String(port), mode.client, String(mode.frames), "--timeout", "40", "--seed", "\(mode.frames)"])
        let status = await client.waitForExit(timeout: .seconds(50))
        let result = client.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(status == 0, "client exit \(String(describing: status)): \(result) \(client.standardError)")
        #expect(result.hasPrefix("OK mode=\(mode.client) frames=\(mode.frames) "), "\(result)")
        print("twisted interop: \(result)")

        server.signal(SIGTERM)
        let serverStatus = await server.waitForExit(timeout: .seconds(15))
        #expect(serverStatus == 0, "the server exits 0 on SIGTERM; stderr: \(server.standardError)")
        #expect(server.standardError.isEmpty, "no warnings (framing errors) from the server: \(server.standardError)")
    }
}
