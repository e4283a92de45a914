import ReactorCore

/// Sends `total` bytes to each client no faster than the client reads them: it writes
/// while the connection is writable, and goes on when it is writable again.
final class Streamer: ConnectionHandler {
    private var remaining: Int
    private let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 16 * 1024)

    init(total: Int) { remaining = total }

    func opened(_ connection: Connection) { produce(on: connection) }

    func writabilityChanged(_ connection: Connection) { produce(on: connection) }

    func received(_ bytes: RawSpan, on connection: Connection) {}

    private func produce(on connection: Connection) {
        while remaining > 0, connection.isWritable {
            let count = min(remaining, chunk.count)
            connection.write(count == chunk.count ? chunk : Array(chunk.prefix(count)))
            remaining -= count
            if remaining == 0 { connection.close() }
        }
    }
}
