// Child processes for the integration tests (the built `reactor` executable, a shell, the
// Twisted client), each with its output collected and every wait bounded.

import Dispatch
import Foundation
import Glibc

/// The package's root folder, from this file's place in Tests/ReactorTestSupport.
public let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The built `reactor` executable: next to the test bundle, or in a build folder
/// (`.build*`, debug or release, with or without a platform folder) of the package or of
/// the current directory. Throws naming every place it looked.
public func reactorExecutable() throws -> String {
    var candidates: [String] = []
    if let bundle = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append(URL(fileURLWithPath: bundle).deletingLastPathComponent().appendingPathComponent("reactor").path)
    }
    var roots = [packageRoot.path]
    let cwd = FileManager.default.currentDirectoryPath
    if cwd != roots[0] { roots.append(cwd) }
    for root in roots {
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: root))?.filter { $0.hasPrefix(".build") }.sorted() ?? []
        for folder in folders {
            var places = ["\(root)/\(folder)"]
            let platforms = (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/\(folder)")) ?? []
            for platform in platforms.sorted() where platform.contains("-linux-") || platform.contains("-apple-") {
                places.append("\(root)/\(folder)/\(platform)")
            }
            for place in places {
                candidates.append("\(place)/debug/reactor")
                candidates.append("\(place)/release/reactor")
            }
        }
    }
    if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
        return found
    }
    throw TestFailure(
        "the reactor executable was not found (looked at \(candidates.joined(separator: ", "))); build it with `swift build --build-tests`")
}

/// A child process whose stdout and stderr are collected by reader threads. Killed
/// (SIGKILL) when released while still running.
///
/// The waits come in two forms: blocking (for synchronous tests) and `async`, which
/// polls without holding a thread (for async tests); Swift picks the one that fits the
/// caller.
public final class ChildProcess: Sendable {
    public let process: Process
    /// The command line, for messages.
    public let command: String
    private let stdout = Locked<[UInt8]>([])
    private let stderr = Locked<[UInt8]>([])
    private let readersDone = DispatchGroup()

    /// Starts `executable` with `arguments` (a shell command when `executable` is
    /// /bin/bash), in `environment` if given (else the test's own).
    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        self.process = process
        self.command = ([executable] + arguments).joined(separator: " ")
        try process.run()
        for (pipe, sink) in [(out, stdout), (err, stderr)] {
            let fd = pipe.fileHandleForReading.fileDescriptor
            readersDone.enter()
            Thread { [readersDone] in
                var buffer = [UInt8](repeating: 0, count: 16384)
                while true {
                    let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                    if count < 0, errno == EINTR { continue }
                    if count <= 0 { break }
                    sink.update { $0 += buffer[0..<count] }
                }
                readersDone.leave()
            }.start()
        }
    }

    /// Runs the built `reactor` with `arguments`.
    public static func reactor(_ arguments: [String]) throws -> ChildProcess {
        try ChildProcess(try reactorExecutable(), arguments)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    public var pid: Int32 { process.processIdentifier }
    public var standardOutput: String { String(decoding: stdout.value, as: UTF8.self) }
    public var standardError: String { String(decoding: stderr.value, as: UTF8.self) }

    /// The lines of stderr that are not empty.
    public var standardErrorLines: [String] {
        standardError.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }

    /// The first complete line on stdout, once there is one; throws if the process
    /// exits without one or `timeout` passes.
    public func firstLine(timeout: Duration = .seconds(10)) throws -> String {
        let bytes = stdout.wait(timeout: timeout) { $0.contains(UInt8(ascii: "\n")) || !process.isRunning }
        guard let bytes else {
            throw TestFailure("no line on stdout from \(command) within \(timeout); stderr: \(standardError)")
        }
        return try firstLine(of: bytes)
    }

    /// The first complete line on stdout, waiting without blocking a thread.
    public func firstLine(timeout: Duration = .seconds(10)) async throws -> String {
        try await eventually("a line on stdout from \(command)", timeout: timeout) {
            stdout.value.contains(UInt8(ascii: "\n")) || !process.isRunning
        }
        return try firstLine(of: stdout.value)
    }

    private func firstLine(of bytes: [UInt8]) throws -> String {
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
            throw TestFailure("\(command) exited without a line on stdout; stderr: \(standardError)")
        }
        return String(decoding: bytes[..<newline], as: UTF8.self)
    }

    /// Waits until stderr contains `text`.
    public func waitForStandardError(containing text: String, timeout: Duration = .seconds(5)) -> Bool {
        waitUntil(timeout: timeout) { standardError.contains(text) }
    }

    /// Waits for the process to exit; returns its status (128 + the signal when a signal
    /// ended it), or nil if it still runs after `timeout`.
    public func waitForExit(timeout: Duration = .seconds(10)) -> Int32? {
        guard waitUntil(timeout: timeout, { !process.isRunning }) else { return nil }
        return exitStatus()
    }

    /// Waits for the process to exit without blocking a thread; see the blocking form.
    public func waitForExit(timeout: Duration = .seconds(10)) async -> Int32? {
        do {
            try await eventually("\(command) to exit", timeout: timeout) { !process.isRunning }
        } catch {
            return nil
        }
        return exitStatus()
    }

    private func exitStatus() -> Int32 {
        process.waitUntilExit()
        // Make sure everything it wrote has been collected.
        _ = readersDone.wait(timeout: .now() + .seconds(2))
        return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
    }

    public func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// CPU time (user + system) the process has used, in clock ticks, from /proc/PID/stat.
    public func cpuTicks() throws -> Int {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // The command name is in parentheses and may contain spaces; fields after it
        // start at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
        guard let close = stat.lastIndex(of: ")") else { throw TestFailure("unreadable /proc/\(pid)/stat") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else {
            throw TestFailure("unreadable /proc/\(pid)/stat: \(stat)")
        }
        return user + system
    }
}

/// The port in a `reactor serve` readiness line, `listening tcp HOST:PORT SERVICE`, when
/// the line is exactly that for `host` and `service` and the port is not 0.
public func listeningPort(in line: String, host: String = "127.0.0.1", service: String = "echo") -> Int? {
    let prefix = "listening tcp \(host):"
    let suffix = " \(service)"
    guard line.hasPrefix(prefix), line.hasSuffix(suffix), let port = Int(line.dropFirst(prefix.count).dropLast(suffix.count)), port > 0
    else { return nil }
    return port
}
