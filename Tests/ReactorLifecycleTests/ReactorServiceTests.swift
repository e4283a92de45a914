import Foundation
import Logging
import ReactorCore
import ReactorLifecycle
import ReactorServices
import ServiceLifecycle
import Synchronization
import Testing

/// Where a service's setup closure, on the reactor thread, publishes its listening port.
final class PortBox: Sendable {
    private let value = Mutex<Int?>(nil)
    func set(_ port: Int?) { value.withLock { $0 = port } }
    var port: Int? { value.withLock { $0 } }
}

@Suite(.timeLimit(.minutes(1))) struct ReactorServiceTests {
    /// A blocking loopback client with a 5 s receive timeout.
    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    /// Waits up to 5 s for the service's setup to publish its port.
    static func port(from box: PortBox) async throws -> Int {
        for _ in 0..<500 {
            if let port = box.port { return port }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw POSIXError(.ETIMEDOUT)
    }

    @Test func gracefulShutdownOfTheGroupFlushesAndEndsTheService() async throws {
        let port = PortBox()
        let service = ReactorService(name: "echo-test") { reactor in
            port.set(try reactor.listen(host: "127.0.0.1", port: 0) { _ in EchoHandler() }.address.port)
        }
        let group = ServiceGroup(services: [service], logger: Logger(label: "test"))
        let running = Task { try await group.run() }

        let fd = try Self.connect(port: try await Self.port(from: port))
        defer { close(fd) }
        #expect(write(fd, "ping", 4) == 4)
        var reply = [UInt8](repeating: 0, count: 4)
        #expect(read(fd, &reply, 4) == 4)
        #expect(reply == Array("ping".utf8))

        await group.triggerGracefulShutdown()
        try await running.value
        // The service closed the connection on its way out: the client reads end of file.
        var byte: UInt8 = 0
        #expect(read(fd, &byte, 1) == 0)
    }

    @Test func anErrorInSetupEndsRunWithThatError() async throws {
        let taken = try Self.listeningSocketPort()
        let service = ReactorService { reactor in
            try reactor.listen(host: "127.0.0.1", port: taken.port) { _ in EchoHandler() }
        }
        defer { close(taken.fd) }
        await #expect(throws: ReactorError.self) { try await service.run() }
    }

    @Test func cancellingTheTaskStopsTheReactor() async throws {
        let port = PortBox()
        let service = ReactorService { reactor in
            port.set(try reactor.listen(host: "127.0.0.1", port: 0) { _ in EchoHandler() }.address.port)
        }
        let running = Task { try await service.run() }
        let bound = try await Self.port(from: port)
        running.cancel()
        try await running.value
        #expect(throws: POSIXError.self) { try Self.connect(port: bound) }
    }

    /// A port held by a plain listening socket, to make a bind fail.
    static func listeningSocketPort() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }
}
