import Foundation
import ReactorCore
import ReactorTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A server nobody here wrote (redis-server, memcached, nginx), started by a test on a
/// free port and stopped by it. `make servers` installs them.
final class RealServer {
    let name: String
    let port: Int
    let process: ChildProcess
    /// The server's working folder (config, logs), removed at the end.
    let folder: String

    /// Starts `executable` with the arguments `arguments(port, folder)` on a free port
    /// and waits until it accepts connections. A port found free can be taken before the
    /// server binds it: then the server exits, and another port is tried.
    init(_ executable: String, prepare: (Int, String) throws -> Void = { _, _ in }, arguments: (Int, String) -> [String]) throws {
        guard let path = RealServer.find(executable) else {
            throw TestFailure("\(executable) is not installed: run `make servers` (it installs redis-server, redis-tools, memcached, nginx-light, wrk)")
        }
        name = executable
        var lastError = ""
        for _ in 0..<5 {
            let port = try RealServer.freePort()
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(executable)-\(getpid())-\(port)").path
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try prepare(port, folder)
            let process = try ChildProcess(path, arguments(port, folder))
            if RealServer.waitAccepting(port: port, process: process) {
                self.port = port
                self.process = process
                self.folder = folder
                return
            }
            lastError = process.standardError + process.standardOutput
            RealServer.stop(process)
            try? FileManager.default.removeItem(atPath: folder)
        }
        throw TestFailure("\(executable) did not start on a free port in 5 tries: \(lastError)")
    }

    deinit {
        RealServer.stop(process)
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// SIGTERM, then SIGKILL after a bounded wait: a redis-server started from a test may
    /// ignore SIGTERM (the signal mask it inherits).
    private static func stop(_ process: ChildProcess) {
        guard process.process.isRunning else { return }
        process.signal(SIGTERM)
        if process.waitForExit(timeout: .seconds(2)) == nil {
            process.signal(SIGKILL)
            _ = process.waitForExit(timeout: .seconds(5))
        }
    }

    static func find(_ executable: String) -> String? {
        ["/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/"].map { $0 + executable }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// A port nothing listens on now: bind 127.0.0.1:0 and read what the kernel chose.
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { throw TestFailure("bind: \(String(cString: strerror(errno)))") }
        return boundPort(of: fd)
    }

    private static func waitAccepting(port: Int, process: ChildProcess) -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard process.process.isRunning else { return false }
            if let client = try? TestClient(connectingTo: try! SocketAddress.resolve(host: "127.0.0.1", port: port)[0], timeout: .milliseconds(200)) {
                client.close()
                return true
            }
            usleep(20_000)
        }
        return false
    }

    /// Sends `request` and reads until `terminator` ends what came back (or 5 s pass).
    func ask(_ request: String, until terminator: String) throws -> String {
        try exchange(request, readTimeout: .seconds(1)) { reply, _ in
            String(decoding: reply, as: UTF8.self).hasSuffix(terminator)
        }
    }

    /// Sends `request` on a fresh connection and reads, each read waiting at most
    /// `readTimeout`, until `isComplete(reply, lastRead)` holds, the server closes, or 5 s
    /// pass; the reply as text.
    private func exchange(
        _ request: String, readTimeout: Duration, isComplete: ([UInt8], [UInt8]) -> Bool
    ) throws -> String {
        let client = try TestClient(connectingTo: try SocketAddress.resolve(host: "127.0.0.1", port: port)[0])
        defer { client.close() }
        try client.send(request)
        var reply: [UInt8] = []
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            let (bytes, end) = client.receiveSome(timeout: readTimeout)
            reply += bytes
            if isComplete(reply, bytes) || end != nil { break }
        }
        return String(decoding: reply, as: UTF8.self)
    }

    // MARK: - Redis

    static func redis() throws -> RealServer {
        try RealServer("redis-server") { port, folder in
            ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder, "--protected-mode", "no"]
        }
    }

    /// One Redis command over RESP; the reply as text.
    func redisCommand(_ words: String...) throws -> String {
        var request = "*\(words.count)\r\n"
        for word in words { request += "$\(word.utf8.count)\r\n\(word)\r\n" }
        // Good enough for the replies asked for here: a line, or a bulk of one read.
        return try exchange(request, readTimeout: .milliseconds(200)) { reply, last in !reply.isEmpty && last.isEmpty }
    }

    /// A field of Redis INFO, e.g. `cmdstat_set` or `keyspace_hits`.
    func redisInfo(_ field: String) throws -> String? {
        let info = try redisCommand("INFO", "all")
        return info.split(separator: "\r\n").first { $0.hasPrefix(field + ":") }.map { String($0.dropFirst(field.count + 1)) }
    }

    /// `calls=N` of a Redis command's INFO commandstats line (0 when never called).
    func redisCalls(_ command: String) throws -> Int {
        guard let line = try redisInfo("cmdstat_\(command)") else { return 0 }
        let calls = line.split(separator: ",").first { $0.hasPrefix("calls=") }!
        return Int(calls.dropFirst(6))!
    }

    // MARK: - memcached

    static func memcached() throws -> RealServer {
        try RealServer("memcached") { port, _ in
            ["-p", "\(port)", "-l", "127.0.0.1", "-U", "0", "-u", "root", "-m", "64", "-t", "1"]
        }
    }

    /// memcached's `stats`, by name.
    func memcachedStats() throws -> [String: Int] {
        let text = try ask("stats\r\n", until: "END\r\n")
        var stats: [String: Int] = [:]
        for line in text.split(separator: "\r\n") {
            let words = line.split(separator: " ")
            if words.count == 3, words[0] == "STAT", let value = Int(words[2]) { stats[String(words[1])] = value }
        }
        return stats
    }

    // MARK: - nginx

    /// nginx serving `index.html` (`body`) from its folder, logging every request, and
    /// closing each keep-alive connection after `keepaliveRequests` (a reconnect for the bench).
    static func nginx(body: String = "hello from nginx\n", keepaliveRequests: Int = 100) throws -> RealServer {
        try RealServer("nginx", prepare: { port, folder in
            try body.write(toFile: folder + "/index.html", atomically: true, encoding: .utf8)
            let config = """
                daemon off;
                master_process off;
                worker_processes 1;
                error_log \(folder)/error.log;
                pid \(folder)/nginx.pid;
                events { worker_connections 1024; }
                http {
                    access_log \(folder)/access.log;
                    client_body_temp_path \(folder); proxy_temp_path \(folder); fastcgi_temp_path \(folder);
                    uwsgi_temp_path \(folder); scgi_temp_path \(folder);
                    keepalive_requests \(keepaliveRequests);
                    server { listen 127.0.0.1:\(port); root \(folder); }
                }
                """
            try config.write(toFile: folder + "/nginx.conf", atomically: true, encoding: .utf8)
        }) { _, folder in ["-c", folder + "/nginx.conf", "-p", folder, "-e", folder + "/error.log"] }
    }

    /// Lines in nginx's access log: the requests it served. Its buffered log is flushed
    /// by the time a connection's request is answered (nginx writes it unbuffered here).
    func accessLogLines() throws -> Int {
        let text = (try? String(contentsOfFile: folder + "/access.log", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").count
    }
}
