import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A server the suite started: `/bin/sh -c 'exec [taskset -c CPUS] COMMAND'`, so the pid
/// is the server's own. Its stdout is watched for `listening tcp|udp HOST:PORT` lines;
/// its stderr goes to a log file.
final class SpawnedServer: @unchecked Sendable {
    let process = Process()
    let command: String
    /// Whole lines of stdout so far, and the unfinished rest.
    private let output = Mutex<(lines: [String], partial: String)>(([], ""))

    /// Starts `command`, pinned to `cpus` with taskset when given and available.
    init(command: String, cpus: String?, log: String) throws(BenchError) {
        let pinned = cpus.flatMap { cpus in SpawnedServer.hasTaskset ? "taskset -c \(cpus) " : nil } ?? ""
        self.command = pinned + command
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec " + self.command]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardInput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log) ?? FileHandle.nullDevice
        pipe.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                return
            }
            self?.output.withLock { output in
                output.partial += String(decoding: data, as: UTF8.self)
                var pieces = output.partial.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                output.partial = pieces.removeLast()
                output.lines.append(contentsOf: pieces)
            }
        }
        do {
            try process.run()
        } catch {
            throw BenchError("cannot start '\(self.command)': \(error.localizedDescription)")
        }
    }

    var pid: Int32 { process.processIdentifier }

    /// Waits for a `listening TRANSPORT HOST:PORT ...` line (any transport when nil);
    /// returns its port, or nil when none came within `timeout` or the server exited.
    func waitForListening(transport: String?, timeout: Duration) -> Int? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let found = output.withLock { output in
                output.lines.first { $0.hasPrefix("listening \(transport ?? "")") }
            }
            if let found {
                let address = found.split(separator: " ").dropFirst(2).first ?? ""
                return address.split(separator: ":").last.flatMap { Int($0) }
            }
            guard process.isRunning else { return nil }
            usleep(20_000)
        }
        return nil
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL.
    func stop() {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(5)
        while process.isRunning, ContinuousClock.now < deadline { usleep(20_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }

    private static let hasTaskset: Bool = {
        let paths = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return paths.contains { FileManager.default.isExecutableFile(atPath: "\($0)/taskset") }
    }()

    /// A TCP port free on 127.0.0.1 right now (the kernel's pick for port 0).
    static func freePort() -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        return bound ? Int(UInt16(bigEndian: address.sin_port)) : nil
    }
}
