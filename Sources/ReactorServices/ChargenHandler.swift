import ReactorCore

/// RFC 864 character generator over TCP: from connect until the peer closes, an endless
/// stream of 72-character lines (see `ChargenPattern`), each followed by CRLF. Anything
/// the client sends is ignored.
///
/// Output is paced by the connection's writability: the handler writes while
/// `Connection/isWritable` holds and resumes when ``writabilityChanged(_:)`` says the
/// queue fell to the low watermark, so a slow reader costs at most one high watermark plus
/// one chunk of memory, never more. It sends straight from the shared pattern, so the
/// stream allocates nothing. A fast reader does not monopolise the reactor: after
/// ``writeBudgetPerTurn`` bytes in one go the handler yields and carries on in the next
/// loop turn.
public final class ChargenHandler: ConnectionHandler {
    /// The most the handler writes before letting the reactor serve other sockets.
    public static let writeBudgetPerTurn = 256 * 1024

    private var offset = 0
    private var isResumeScheduled = false

    /// A new handler; one per connection.
    public init() {}

    public func opened(_ connection: Connection) {
        produce(on: connection)
    }

    public func received(_ bytes: RawSpan, on connection: Connection) {}

    public func writabilityChanged(_ connection: Connection) {
        if connection.isWritable { produce(on: connection) }
    }

    private func produce(on connection: Connection) {
        var written = 0
        while connection.isWritable, connection.phase == .open {
            guard written < Self.writeBudgetPerTurn else {
                resumeSoon(on: connection)
                return
            }
            let count = ChargenPattern.maxChunk
            guard ChargenPattern.withBytes(from: offset, count: count, { connection.write($0) }) else { return }
            offset = (offset + count) % ChargenPattern.cycleLength
            written += count
        }
    }

    private func resumeSoon(on connection: Connection) {
        guard !isResumeScheduled else { return }
        isResumeScheduled = true
        connection.reactor.runSoon { [self] in
            isResumeScheduled = false
            produce(on: connection)
        }
    }
}
