// Child processes for the integration tests: the built `reactor` executable and the
// Twisted client, each with its output collected and every wait bounded.

import Dispatch
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A child process whose stdout and stderr are collected by reader threads.
final class Child: Sendable {
    let process: Process
    let command: String
    private let stdout = Locked<[UInt8]>([])
    private let stderr = Locked<[UInt8]>([])
    private let readersDone = DispatchGroup()

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws {
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

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    var output: String { String(decoding: stdout.value, as: UTF8.self) }
    var errorOutput: String { String(decoding: stderr.value, as: UTF8.self) }

    /// The first whole line on stdout.
    func firstLine(timeout: Duration = .seconds(10)) async throws -> String {
        try await eventually("a line on stdout from \(command)", timeout: timeout) {
            stdout.value.contains(UInt8(ascii: "\n")) || !process.isRunning
        }
        let bytes = stdout.value
        guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
            throw TestFailure("\(command) exited without a line on stdout; stderr: \(errorOutput)")
        }
        return String(decoding: bytes[..<newline], as: UTF8.self)
    }

    /// The exit status (128 + signal when killed by one), or nil if still running after `timeout`.
    func waitForExit(timeout: Duration) async -> Int32? {
        do {
            try await eventually("\(command) to exit", timeout: timeout) { !process.isRunning }
        } catch {
            return nil
        }
        process.waitUntilExit()
        _ = readersDone.wait(timeout: .now() + .seconds(2))
        return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
    }

    func signal(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }
}

/// The `reactor` executable built beside this test bundle, or in a build folder of the
/// package; throws naming every place it looked.
func reactorExecutable() throws -> String {
    var candidates: [String] = []
    if let bundle = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
        candidates.append(URL(fileURLWithPath: bundle).deletingLastPathComponent().appendingPathComponent("reactor").path)
    }
    let root = packageRoot.path
    let folders = (try? FileManager.default.contentsOfDirectory(atPath: root))?.filter { $0.hasPrefix(".build") }.sorted() ?? []
    for folder in folders {
        candidates.append("\(root)/\(folder)/debug/reactor")
        let platforms = (try? FileManager.default.contentsOfDirectory(atPath: "\(root)/\(folder)")) ?? []
        for platform in platforms.sorted() where platform.contains("-linux-") || platform.contains("-apple-") {
            candidates.append("\(root)/\(folder)/\(platform)/debug/reactor")
        }
    }
    if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
        return found
    }
    throw TestFailure(
        "the reactor executable is missing (looked at \(candidates.joined(separator: ", "))); build it with `swift build --build-tests`")
}

/// The package's root folder, from this file's place in Tests/ReactorFramingTests/Support.
let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// True when the environment variable CI is set (to anything but an empty string).
let runningInCI: Bool = !(ProcessInfo.processInfo.environment["CI"] ?? "").isEmpty

/// True when `python3 -c "import twisted"` succeeds (within 30 s).
let twistedAvailable: Bool = {
    guard let child = try? Child("/usr/bin/env", ["python3", "-c", "import twisted"]) else { return false }
    let end = ContinuousClock.now + .seconds(30)
    while child.process.isRunning, ContinuousClock.now < end { usleep(5000) }
    guard !child.process.isRunning else { return false }
    return child.process.terminationReason == .exit && child.process.terminationStatus == 0
}()
