import ReactorCore

/// Sends one request, hands the first bytes that come back to `reply`, and closes.
final class AskOnce: ConnectionHandler {
    private let request: String
    private let reply: (Result<[UInt8], ReactorError>) -> Void

    init(_ request: String, reply: @escaping (Result<[UInt8], ReactorError>) -> Void) {
        self.request = request
        self.reply = reply
    }

    func opened(_ connection: Connection) { connection.write(request) }

    func received(_ bytes: RawSpan, on connection: Connection) {
        reply(.success(bytes.copyBytes()))
        connection.close()
    }

    func connectFailed(_ error: ReactorError) { reply(.failure(error)) }
}

/// Connects by name: resolved off the loop, IPv6 and IPv4 raced (Happy Eyeballs).
func ask(_ request: String, host: String, port: Int, on reactor: Reactor,
         reply: @escaping (Result<[UInt8], ReactorError>) -> Void) {
    reactor.connect(host: host, port: port, timeout: .seconds(5), handler: AskOnce(request, reply: reply))
}
