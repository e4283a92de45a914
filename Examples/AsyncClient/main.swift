// An async request/response client with pipelining, against a server of the same
// program: a line protocol whose server upper-cases each request (an async handler per
// connection, running on the reactor thread). 100 requests go out from concurrent tasks
// on one connection; each reply is checked against its request. Then one request that
// the server never answers times out, and the program exits 0, or 1 on any mismatch.
//
//   swift run AsyncClientExample
import Glibc
import ReactorAsync
import ReactorCore

@main
struct AsyncClientExample {
    static func main() async throws {
        let (thread, _) = try ReactorThread.start(name: "example-reactor") { _ in }
        let handle = thread.handle
        let listener = try await handle.listen(host: "127.0.0.1", port: 0, framing: .line)
        print("server listening on \(listener.address)")
        let server = Task {
            await listener.serve { connection in
                for try await line in connection.inbound where line.string != "ignore me" {
                    try await connection.outbound.write(line.string.uppercased())
                }
            }
        }

        let client = try await AsyncRequestClient.connect(
            handle, host: "127.0.0.1", port: listener.address.port, framing: .line)
        let mismatches = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<100 {
                group.addTask { try await client.request("request \(index)").string == "REQUEST \(index)" }
            }
            var wrong = 0
            for try await matched in group where !matched { wrong += 1 }
            return wrong
        }
        print("100 pipelined requests, \(mismatches) wrong replies")

        do {
            _ = try await client.request("ignore me", timeout: .milliseconds(200))
            print("a request the server ignores was answered")
            exit(1)
        } catch let error as ReactorError where error.code == .timedOut {
            print("a request the server ignores: \(error)")
        }

        await client.close()
        handle.shutdownGracefully()
        await server.value
        await thread.stopped()
        exit(mismatches == 0 ? 0 : 1)
    }
}
