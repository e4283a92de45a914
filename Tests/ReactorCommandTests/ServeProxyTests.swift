// `reactor serve --proxy-protocol` against senders nobody here wrote: curl's
// --haproxy-protocol (v1), a v2 header sent by socat, and Debian's HAProxy balancing two
// backends with send-proxy-v2 and health checks, through a rolling restart under load.

import Foundation
import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// The `remote=` and `proxy=` of each `accepted tcp` debug line on a serve's stderr.
func acceptedLines(_ child: ChildProcess) -> [(remote: String, proxy: String?)] {
    child.standardErrorLines.compactMap { line in
        guard line.contains("accepted tcp"), let remote = field("remote=", in: line) else { return nil }
        return (remote, field("proxy=", in: line))
    }
}

private func field(_ name: String, in line: String) -> String? {
    guard let start = line.range(of: name)?.upperBound else { return nil }
    return String(line[start...].prefix { $0 != " " })
}

/// Runs a shell command to its end (at most `timeout`), waiting without holding a thread
/// of the test pool; its exit status and stdout.
func shell(_ command: String, timeout: Duration = .seconds(15)) async throws -> (status: Int32?, output: String) {
    let child = try ChildProcess("/bin/bash", ["-c", command])
    let status = await child.waitForExit(timeout: timeout)
    return (status, child.standardOutput)
}

/// A port nothing listens on now: bind 127.0.0.1:0 and read what the kernel chose. For
/// a server that cannot be told port 0 (HAProxy); a port taken meanwhile means a retry.
func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let status = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard status == 0 else { throw TestFailure("bind: \(String(cString: strerror(errno)))") }
    return boundPort(of: fd)
}

/// HAProxy in TCP mode on a free port, balancing `backends` round robin with
/// send-proxy-v2 and health checks every 200 ms, with an admin socket. Stopped at deinit.
final class HAProxy: Sendable {
    let port: Int
    let process: ChildProcess
    let folder: String

    private init(port: Int, process: ChildProcess, folder: String) {
        self.port = port
        self.process = process
        self.folder = folder
    }

    /// Starts it and waits, without holding a thread, until its admin socket answers.
    static func start(backends: [Int]) async throws -> HAProxy {
        guard let path = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestFailure("haproxy is not installed: run `make servers` (it installs Debian's haproxy)")
        }
        var lastError = ""
        for _ in 0..<5 {
            let port = try freeLoopbackPort()
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("haproxy-\(getpid())-\(port)").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let servers = backends.enumerated().map { "    server b\($0.offset + 1) 127.0.0.1:\($0.element)" }
            let config = [
                "global", "    maxconn 2000", "    stats socket \(folder)/admin.sock mode 600 level admin",
                "defaults", "    mode tcp", "    timeout connect 2s", "    timeout client 30s", "    timeout server 30s",
                "    timeout check 1s", "    retries 3", "    option redispatch",
                "frontend fe", "    bind 127.0.0.1:\(port)", "    default_backend be",
                "backend be", "    balance roundrobin", "    default-server send-proxy-v2 check inter 200ms fall 1 rise 1",
            ] + servers
            try (config.joined(separator: "\n") + "\n").write(toFile: "\(folder)/haproxy.cfg", atomically: true, encoding: .utf8)
            let haproxy = HAProxy(port: port, process: try ChildProcess(path, ["-db", "-f", "\(folder)/haproxy.cfg"]), folder: folder)
            let deadline = ContinuousClock.now + .seconds(10)
            while haproxy.process.process.isRunning, ContinuousClock.now < deadline {
                if (try? haproxy.states())?.count == backends.count { return haproxy }
                try await Task.sleep(for: .milliseconds(50))
            }
            let process = haproxy.process
            lastError = process.standardError
            process.signal(SIGKILL)
            _ = await process.waitForExit(timeout: .seconds(5))
        }
        throw TestFailure("haproxy did not start with every backend UP in 5 tries: \(lastError)")
    }

    deinit {
        if process.process.isRunning {
            process.signal(SIGTERM)
            if process.waitForExit(timeout: .seconds(3)) == nil { process.signal(SIGKILL) }
        }
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// One command on the admin socket (a Unix socket, answered at once); its answer.
    @discardableResult
    func admin(_ command: String) throws -> String {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array("\(folder)/admin.sock".utf8CString)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.map { UInt8(bitPattern: $0) }.prefix($0.count - 1)) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw TestFailure("haproxy admin socket: \(String(cString: strerror(errno)))") }
        let line = Array((command + "\n").utf8)
        guard line.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == line.count else {
            throw TestFailure("haproxy admin '\(command)': send failed")
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            answer += buffer[0..<count]
        }
        return String(decoding: answer, as: UTF8.self)
    }

    /// Each server's status (`UP`, `DOWN`, `MAINT`, ...) from `show stat`.
    func states() throws -> [String: String] {
        var states: [String: String] = [:]
        for line in try admin("show stat").split(separator: "\n") {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard fields.count > 17, fields[0] == "be", fields[1].hasPrefix("b") else { continue }
            states[fields[1]] = fields[17]
        }
        return states
    }
}

/// `reactor serve echo --proxy-protocol v2 --log-level debug` on a free port, with
/// `--threads 2` (the kernel spreads connections over two reactors) unless told otherwise.
func proxiedEchoBackend(_ extra: [String] = ["--threads", "2"]) async throws -> Served {
    try await Served.start(
        ["echo", "--port", "0", "--tcp-only", "--proxy-protocol", "v2", "--log-level", "debug"] + extra, lineCount: 1)
}

@Suite("reactor serve --proxy-protocol", .timeLimit(.minutes(2)))
struct ServeProxyTests {
    @Test("curl --haproxy-protocol (v1): served, and the debug line names curl as remote= and proxy=")
    func curlV1() async throws {
        let served = try await Served.start(
            ["daytime", "--port", "0", "--tcp-only", "--proxy-protocol", "v1", "--log-level", "debug"], lineCount: 1)
        let port = try served.address("tcp", "daytime").port
        let (status, output) = try await shell("curl -s --http0.9 --haproxy-protocol -m 5 http://127.0.0.1:\(port)/")
        #expect(status == 0)
        #expect(output.contains(String(Calendar(identifier: .gregorian).component(.year, from: Date()))), "daytime's line: \(output)")
        try await eventually("the accepted line", timeout: .seconds(5)) { !acceptedLines(served.child).isEmpty }
        let line = try #require(acceptedLines(served.child).first)
        // curl's v1 line gives its own socket's addresses: the client is the balancer here.
        #expect(line.remote.hasPrefix("127.0.0.1:"))
        #expect(line.proxy == line.remote)
        await served.stop()
    }

    @Test(
        "socat sends a v2 header for 203.0.113.9:4000, then data: echoed, and the client is 203.0.113.9:4000",
        arguments: [[], ["--threads", "2", "--listen-mode", "acceptor"]])
    func socatV2(extra: [String]) async throws {
        // With the acceptor the header is read on the accepting reactor and handed over.
        let served = try await proxiedEchoBackend(extra)
        let port = try served.address("tcp", "echo").port
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("proxy-v2-\(getpid()).bin").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        let header = proxyHeaderV2(source: [203, 0, 113, 9], sourcePort: 4000, destination: [192, 0, 2, 1], destinationPort: port)
        try Data(header + Array("hello over v2\n".utf8)).write(to: URL(fileURLWithPath: file))
        let (status, output) = try await shell("socat -t 5 - TCP:127.0.0.1:\(port) < \(file) 2>&1")
        #expect(status == 0, "socat: \(output); serve: \(served.child.standardError)")
        #expect(output == "hello over v2\n")
        try await eventually("the accepted line", timeout: .seconds(5)) { !acceptedLines(served.child).isEmpty }
        let line = try #require(acceptedLines(served.child).first)
        #expect(line.remote == "203.0.113.9:4000")
        #expect(line.proxy?.hasPrefix("127.0.0.1:") == true)
        // Without a header the connection is aborted, counted and logged.
        let (_, plain) = try await shell("echo no header | socat -t 2 - TCP:127.0.0.1:\(port)")
        #expect(plain.isEmpty)
        try await eventually("the refusal", timeout: .seconds(5)) { served.child.standardError.contains("aborted: PROXY header") }
        await served.stop()
    }

    @Test("the PROXY options are refused where they do not apply or do not parse")
    func options() throws {
        for arguments in [
            ["serve", "echo", "--port", "0", "--proxy-trusted", "10.0.0.0/8"],
            ["serve", "echo", "--port", "0", "--proxy-timeout", "5"],
            ["serve", "echo", "--port", "0", "--proxy-protocol", "v3"],
            ["serve", "echo", "--port", "0", "--proxy-protocol", "v2", "--proxy-trusted", "10.0.0.0/40"],
            ["serve", "echo", "--port", "0", "--proxy-protocol", "v2", "--proxy-timeout", "0"],
        ] {
            let child = try ChildProcess.reactor(arguments)
            let status = child.waitForExit(timeout: .seconds(10))
            #expect(status != nil && status != 0, "\(arguments)")
            #expect(!child.standardError.isEmpty, "\(arguments) says why")
        }
    }

    @Test("HAProxy in front of two backends: the handler-visible remote address is the real client's")
    func haproxyRealClientAddress() async throws {
        let backends = [try await proxiedEchoBackend(), try await proxiedEchoBackend()]
        let haproxy = try await HAProxy.start(backends: try backends.map { try $0.address("tcp", "echo").port })
        var clientPorts: Set<String> = []
        for index in 0..<4 {
            let client = try TestClient(connectingTo: try SocketAddress(ip: "127.0.0.1", port: haproxy.port))
            clientPorts.insert("127.0.0.1:\(client.localPort)")
            try client.send("request \(index)")
            #expect(try client.receive(count: 9) == Array("request \(index)".utf8))
        }
        try await eventually("four proxied accepts", timeout: .seconds(5)) {
            backends.flatMap { acceptedLines($0.child) }.filter { clientPorts.contains($0.remote) }.count == 4
        }
        let proxied = backends.map { acceptedLines($0.child).filter { clientPorts.contains($0.remote) } }
        #expect(proxied.allSatisfy { $0.count == 2 }, "round robin: two clients each")
        for line in proxied.joined() {
            #expect(line.proxy != nil && line.proxy != line.remote, "proxy= is HAProxy's socket, not the client's")
        }
        // Health checks arrive as LOCAL: the backend sees HAProxy itself. (HAProxy starts
        // with its servers UP, so the first check may come after the clients.)
        try await eventually("a LOCAL health check on each backend", timeout: .seconds(5)) {
            backends.allSatisfy { backend in acceptedLines(backend.child).contains { $0.proxy == $0.remote } }
        }
        for backend in backends { await backend.stop() }
        _ = haproxy
    }

    @Test("rolling restart of both backends under a reactor bench run through HAProxy: no wrong response, every error a closed connection")
    func haproxyRollingRestart() async throws {
        var backends = [try await proxiedEchoBackend(), try await proxiedEchoBackend()]
        let haproxy = try await HAProxy.start(backends: try backends.map { try $0.address("tcp", "echo").port })
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("proxy-bench-\(getpid()).json").path
        defer { try? FileManager.default.removeItem(atPath: json) }
        let connections = 16
        let bench = try ChildProcess.reactor([
            "bench", "127.0.0.1:\(haproxy.port)", "--connections", "\(connections)", "--duration", "30", "--warmup", "0",
            "--json", json,
        ])
        try await Task.sleep(for: .seconds(1))
        for index in backends.indices {
            let name = "b\(index + 1)"
            // What an operator does: no new connections to it, stop it (it drains), start
            // the new one, point the balancer at it, let it in once its check passes.
            try haproxy.admin("set server be/\(name) state maint")
            try await Task.sleep(for: .milliseconds(300))
            await backends[index].stop()
            let replacement = try await proxiedEchoBackend()
            let port = try replacement.address("tcp", "echo").port
            try haproxy.admin("set server be/\(name) addr 127.0.0.1 port \(port)")
            try haproxy.admin("set server be/\(name) state ready")
            try await eventually("\(name) UP again", timeout: .seconds(10)) { (try? haproxy.states()[name]) == "UP" }
            // 30 s leaves room for both restarts on a loaded machine (the whole suite at once).
            #expect(bench.process.isRunning, "\(name) restarted while the bench ran")
            backends[index] = replacement
            // Long enough for the connections the restart closed to come back.
            try await Task.sleep(for: .seconds(1))
        }
        #expect(await bench.waitForExit(timeout: .seconds(45)) == 0, "\(bench.standardError)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        let requests = result["requests"] as? Int ?? 0
        let errors = result["errors"] as? Int ?? -1
        let kinds = result["error_kinds"] as? [String: Int] ?? [:]
        #expect(requests > 1000, "the run moved requests through the restarts: \(result)")
        #expect(kinds["wrong_response", default: 0] == 0 && kinds["framing", default: 0] == 0 && kinds["timeout", default: 0] == 0)
        #expect(kinds.values.reduce(0, +) == errors, "every error has its kind: \(kinds)")
        #expect(Set(kinds.filter { $0.value > 0 }.keys).isSubset(of: ["closed", "reset"]), "\(kinds)")
        // Each restart can lose at most the request in flight on each of its connections.
        #expect(errors <= 2 * connections, "\(errors) errors, \(kinds)")
        // New connections reach both replacements, round robin.
        var clientPorts: Set<String> = []
        for index in 0..<2 {
            let client = try TestClient(connectingTo: try SocketAddress(ip: "127.0.0.1", port: haproxy.port))
            clientPorts.insert("127.0.0.1:\(client.localPort)")
            try client.send("after \(index)")
            #expect(try client.receive(count: 7) == Array("after \(index)".utf8))
        }
        try await eventually("both replacements serving", timeout: .seconds(5)) {
            backends.allSatisfy { backend in acceptedLines(backend.child).contains { clientPorts.contains($0.remote) } }
        }
        print("rolling restart through HAProxy: \(requests) requests, \(errors) errors \(kinds.filter { $0.value > 0 })")
        for backend in backends { await backend.stop() }
        _ = haproxy
    }
}

/// A v2 PROXY header for TCP over IPv4, no TLVs.
func proxyHeaderV2(source: [UInt8], sourcePort: Int, destination: [UInt8], destinationPort: Int) -> [UInt8] {
    ProxyHeaderParser.v2Signature + [0x21, 0x11, 0x00, 0x0C] + source + destination
        + [UInt8(sourcePort >> 8), UInt8(sourcePort & 0xFF), UInt8(destinationPort >> 8), UInt8(destinationPort & 0xFF)]
}
