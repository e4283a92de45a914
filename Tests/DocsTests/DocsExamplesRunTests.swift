import Foundation
import ReactorCore
import ReactorFraming
import Testing

/// The examples in the docs do what the docs say, over real sockets.
@Suite(.timeLimit(.minutes(1))) struct DocsExamplesRunTests {
    /// Starts a reactor thread listening on 127.0.0.1:0 and returns it with the port.
    static func serve(_ makeHandler: @escaping @Sendable () -> any ConnectionHandler) throws -> (ReactorThread, Int) {
        try ReactorThread.start { reactor in
            try reactor.listen(host: "127.0.0.1", port: 0) { _ in makeHandler() }.address.port
        }
    }

    /// A blocking client socket with a 5 s receive timeout.
    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { throw POSIXError(.ECONNREFUSED) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    static func read(_ fd: Int32, count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while result.count < count {
            let n = Foundation.read(fd, &chunk, min(chunk.count, count - result.count))
            guard n > 0 else { break }
            result += chunk[..<n]
        }
        return result
    }

    @Test func typeLengthFramerAnswersPingWithPong() throws {
        let (thread, port) = try Self.serve { FramedConnection(framer: TypeLengthFramer(), handler: PingHandler()) }
        defer { thread.stop() }
        let fd = try Self.connect(port: port)
        defer { close(fd) }
        let ping: [UInt8] = [0, 1, 0, 0, 0, 3] + Array("abc".utf8)
        // Split the frame across two writes to exercise the framer's partial-header path.
        _ = ping.withUnsafeBytes { write(fd, $0.baseAddress, 4) }
        usleep(20_000)
        _ = ping.withUnsafeBytes { write(fd, $0.baseAddress! + 4, ping.count - 4) }
        #expect(Self.read(fd, count: ping.count) == [0, 2, 0, 0, 0, 3] + Array("abc".utf8))
    }

    @Test func typeLengthFramerRefusesOversizedHeaderAtOnce() throws {
        let (thread, port) = try Self.serve { FramedConnection(framer: TypeLengthFramer(maxBodyLength: 16), handler: PingHandler()) }
        defer { thread.stop() }
        let fd = try Self.connect(port: port)
        defer { close(fd) }
        let header: [UInt8] = [0, 1, 0, 0, 1, 0]  // a 256-byte body: over the limit; no body sent
        _ = header.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var byte: UInt8 = 0
        #expect(Foundation.read(fd, &byte, 1) <= 0, "the server closes the connection without waiting for the body")
    }

    @Test func putHandlerSwitchesBetweenLinesAndFixedBodies() throws {
        let (thread, port) = try Self.serve { FramedConnection(framer: DelimiterFramer.line(), handler: PutHandler()) }
        defer { thread.stop() }
        let fd = try Self.connect(port: port)
        defer { close(fd) }
        // Header, body and the next header in one write: the bytes after each header
        // must reach the framer that follows it.
        let request = Array("PUT 5\nhelloPUT 3\nabc".utf8)
        _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let expected = Array("OK 5\nOK 3\n".utf8)
        #expect(Self.read(fd, count: expected.count) == expected)
    }
}
