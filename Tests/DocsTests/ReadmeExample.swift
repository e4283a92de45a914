import Glibc
import ReactorCore

/// Echoes every byte back to its sender.
final class Echo: ConnectionHandler {
    func received(_ bytes: RawSpan, on connection: Connection) {
        connection.write(bytes)
    }
}

/// Serves echo until SIGINT, then lets open connections flush and returns.
func serveEcho(port: Int) throws {
    let reactor = try Reactor()
    let listener = try reactor.listen(host: "127.0.0.1", port: port) { _ in Echo() }
    print("echo listening on \(listener.address)")
    try reactor.onSignal(SIGINT) { reactor.shutdownGracefully() }
    try reactor.run()
}
