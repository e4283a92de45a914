import ReactorAsync
import ReactorCore

/// Serves line echo with one task per connection, then asks it one line as a client and
/// returns the answer.
func askAsyncEcho(on handle: ReactorHandle, _ line: String) async throws -> String? {
    let listener = try await handle.listen(host: "127.0.0.1", port: 0, framing: .line)
    let server = Task {
        await listener.serve { connection in
            for try await frame in connection.inbound { try await connection.outbound.write(frame) }
        }
    }
    defer { server.cancel() }
    let connection = try await handle.connect(host: "127.0.0.1", port: listener.address.port, framing: .line)
    return try await connection.executeThenClose { inbound, outbound in
        try await outbound.write(line)
        var replies = inbound.makeAsyncIterator()
        return try await replies.next()?.string
    }
}
