import Foundation
import Logging
import ReactorCore
import ReactorLifecycle
import ReactorServices
import ReactorTestSupport
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

        let fd = try blockingLoopbackSocket(port: try await Self.port(from: port), receiveTimeout: .seconds(5))
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
        let taken = try RawSocket(listenBacklog: 1)  // a port held by a plain listening socket
        defer { withExtendedLifetime(taken) {} }
        let port = taken.port
        let service = ReactorService { reactor in
            try reactor.listen(host: "127.0.0.1", port: port) { _ in EchoHandler() }
        }
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
        #expect(throws: POSIXError.self) { try blockingLoopbackSocket(port: bound, receiveTimeout: .seconds(5)) }
    }
}
