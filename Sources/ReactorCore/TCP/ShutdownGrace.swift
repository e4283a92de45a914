/// Told when a connection it gave out closes, so it can count open connections: a
/// ``TCPListener``, or the receiving end of a ``ReactorGroup``'s acceptor.
protocol ConnectionSource: AnyObject {
    func connectionClosed()
}

/// The handler of a connection accepted while its listener drained for a graceful
/// shutdown, or open when it began but silent so far
/// (``Connection/closeForShutdown()``): the client was already queued or connected, and
/// has usually sent its request or is about to. It forwards everything to the real
/// handler and closes the connection once the first input has been answered, or after
/// ``firstInputWait`` when none comes (a client that waits to be spoken to, as for
/// daytime or chargen, is served by `opened`).
final class ShutdownGrace: ConnectionHandler {
    /// How long a connection accepted during the drain may take to send its first bytes.
    static let firstInputWait: Duration = .seconds(1)

    private let handler: any ConnectionHandler
    private let reactor: Reactor
    private var timer: ReactorTimer?

    init(_ handler: any ConnectionHandler, reactor: Reactor) {
        self.handler = handler
        self.reactor = reactor
    }

    func opened(_ connection: Connection) {
        handler.opened(connection)
        waitForFirstInput(on: connection)
    }

    /// Closes `connection` after ``firstInputWait`` unless its first input comes sooner.
    func waitForFirstInput(on connection: Connection) {
        timer = reactor.schedule(after: Self.firstInputWait) { _ in connection.close() }
    }

    func received(_ bytes: RawSpan, on connection: Connection) {
        handler.received(bytes, on: connection)
        timer?.cancel()
        connection.close()
    }

    func writabilityChanged(_ connection: Connection) { handler.writabilityChanged(connection) }

    func inputClosed(_ connection: Connection) {
        timer?.cancel()
        handler.inputClosed(connection)
    }

    func closed(_ connection: Connection, reason: CloseReason) {
        timer?.cancel()
        handler.closed(connection, reason: reason)
    }

    func connectFailed(_ error: ReactorError) { handler.connectFailed(error) }
}
