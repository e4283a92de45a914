import Glibc
import ReactorCore
import ReactorFraming
import ReactorTestSupport

/// Servers for the honesty tests, each on its own reactor thread in this process.
struct TestServer {
    let thread: ReactorThread
    let port: Int

    /// Listens on 127.0.0.1, port 0, with a handler per connection from `makeHandler`;
    /// `setup` runs first on the reactor (to start timers).
    static func start(
        setup: @escaping @Sendable (Reactor) -> Void = { _ in },
        makeHandler: @escaping @Sendable (Reactor) -> any ConnectionHandler
    ) throws -> TestServer {
        let (thread, port) = try ReactorThread.start(name: "test-server") { reactor in
            setup(reactor)
            return try reactor.listen(host: "127.0.0.1", port: 0) { _ in makeHandler(reactor) }.address.port
        }
        return TestServer(thread: thread, port: port)
    }

    /// A UDP echo server.
    static func startUDPEcho() throws -> TestServer {
        let (thread, port) = try ReactorThread.start(name: "test-udp-server") { reactor in
            try reactor.bindUDP(host: "127.0.0.1", port: 0, handler: UDPEcho()).localAddress.port
        }
        return TestServer(thread: thread, port: port)
    }

    func stop() { thread.stop() }
}

/// Echoes bytes as they come: a correct echo for every stream framing.
final class ByteEcho: ConnectionHandler {
    func received(_ bytes: RawSpan, on connection: Connection) {
        connection.write(bytes)
    }
}

final class UDPEcho: DatagramHandler {
    func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        socket.send(datagram, to: sender)
    }
}

/// Answers each line exactly `delay` after it arrived.
final class DelayedLineEcho: FrameHandler {
    let delay: Duration
    init(delay: Duration) { self.delay = delay }

    func received(frame: RawSpan, on connection: FramedConnection) {
        let copy = frame.copyBytes()
        connection.connection?.reactor.schedule(after: delay) { _ in
            _ = try? connection.send(frame: copy)
        }
    }
}

/// Echoes bytes, but resets the connection after a number of reads drawn per connection.
final class ResettingEcho: ConnectionHandler {
    private var readsLeft: Int
    init(seed: Int) { readsLeft = 20 + seed % 200 }

    func received(_ bytes: RawSpan, on connection: Connection) {
        readsLeft -= 1
        if readsLeft <= 0 {
            connection.abort()
        } else {
            connection.write(bytes)
        }
    }
}

/// Echoes lines, flipping one byte of every 50th.
final class CorruptingLineEcho: FrameHandler {
    private var count = 0

    func received(frame: RawSpan, on connection: FramedConnection) {
        count += 1
        var copy = frame.copyBytes()
        if count % 50 == 0, !copy.isEmpty { copy[0] = copy[0] == UInt8(ascii: "#") ? UInt8(ascii: "%") : UInt8(ascii: "#") }
        _ = try? connection.send(frame: copy)
    }
}

/// Blocks the reactor thread for `length` every `period`, starting after `first`: a
/// server stalled by a GC pause or a slow disk.
func scheduleFreezes(on reactor: Reactor, first: Duration, period: Duration, length: Duration) {
    reactor.schedule(after: first, repeating: period) { _ in
        let microseconds = length.components.seconds * 1_000_000 + length.components.attoseconds / 1_000_000_000_000
        usleep(UInt32(microseconds))
    }
}
