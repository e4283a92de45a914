// A Connection over memory instead of a socket, driven on the test's own thread: no
// kernel socket, no reactor thread. SwiftNIO's EmbeddedChannel is the model.

import ReactorCore

/// A ``Connection`` whose socket is a `MemoryTransport`: the test plays the peer and the
/// kernel. ``receive(_:)`` hands bytes to the connection as the peer's, ``takeWritten()``
/// returns what the connection sent, ``sendWindow`` is the room in the kernel's send
/// buffer. After each of them the harness runs what a reactor would: reads while the
/// connection reads and input waits, flushes while it waits for writability and there is
/// room, the reactor's deferred work (``ConnectionHandler/closed(_:reason:)``, budget
/// releases) and due timers, until nothing moves.
package final class EmbeddedConnection {
    package let reactor: Reactor
    package let connection: Connection
    package let transport = MemoryTransport()

    /// Opens a connection over memory on `reactor` (a fresh one by default; pass one to
    /// put several connections under one output budget) and calls the handler's `opened`.
    package init(
        reactor: Reactor? = nil, options: ConnectionOptions = .init(),
        peer: SocketAddress? = nil, handler: any ConnectionHandler
    ) throws {
        self.reactor = try reactor ?? Reactor()
        let peer = try peer ?? SocketAddress(ip: "192.0.2.1", port: 4321)
        connection = Connection(reactor: self.reactor, memory: transport, peer: peer, options: options)
        connection.start(handler: handler)
        run()
    }

    deinit {
        // Breaks the connection's reference to its handler, which may refer back.
        if connection.phase != .closed {
            connection.abort()
            run()
        }
    }

    /// The peer sends `bytes`; the connection reads them (at most ``readLimit`` per read)
    /// unless it is not reading.
    package func receive(_ bytes: some Sequence<UInt8>) {
        transport.inbound.append(contentsOf: bytes)
        run()
    }

    /// The peer sends `text` as UTF-8.
    package func receive(_ text: String) {
        receive(Array(text.utf8))
    }

    /// The peer shuts down its sending side (FIN), after any bytes still waiting.
    package func receiveEndOfFile() {
        transport.inboundEnded = true
        run()
    }

    /// The most bytes one read returns: a stream cut into reads of this size.
    package var readLimit: Int {
        get { transport.readLimit }
        set { transport.readLimit = newValue }
    }

    /// Bytes the kernel would still take before a send blocks. Opening it lets a
    /// connection waiting for writability flush.
    package var sendWindow: Int {
        get { transport.sendWindow }
        set {
            transport.sendWindow = newValue
            run()
        }
    }

    /// Everything the connection sent since the last call.
    package func takeWritten() -> [UInt8] {
        defer { transport.written.removeAll() }
        return transport.written
    }

    /// What the connection sent since the last ``takeWritten()``, as UTF-8.
    package func takeWrittenText() -> String {
        String(decoding: takeWritten(), as: UTF8.self)
    }

    /// Bytes the peer sent that the connection has not read (it paused, or closed).
    package var unreadInput: Int { transport.inbound.count }

    /// The connection sent FIN.
    package var sentEndOfFile: Bool { transport.isOutputShutdown }

    /// The connection closed its socket, and whether it reset it (RST).
    package var socketClosed: (closed: Bool, reset: Bool) { (transport.isClosed, transport.wasReset) }

    /// Runs reads, flushes, deferred work and due timers until nothing moves (bounded:
    /// a connection that never settles fails the test instead of hanging it).
    package func run() {
        for _ in 0..<100_000 {
            var moved = false
            if connection.readArmed, !transport.inbound.isEmpty || transport.inboundEnded {
                connection.readable()
                moved = true
            }
            if connection.writeArmed, transport.sendWindow > 0 {
                connection.flushQueued()
                moved = true
            }
            if reactor.runPendingWork() { moved = true }
            if !moved { return }
        }
        preconditionFailure("EmbeddedConnection: the connection did not settle in 100000 steps")
    }
}
