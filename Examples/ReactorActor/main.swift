// An actor isolated to a reactor: its state lives on the reactor thread, beside the
// connections it uses, with no locks. A UDP-less toy: a TCP line server whose
// connections all report to one `Tally` actor (on the reactor's executor), and tasks on
// the global executor that query it. `assumeIsolated` reaches the actor synchronously
// from a reactor callback, since both run on the same thread. Exits 0 when the counts
// agree.
//
//   swift run ReactorActorExample
import Glibc
import ReactorAsync
import ReactorCore

/// Counts lines per client; every method runs on the reactor thread.
actor Tally {
    let executor: ReactorExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    private var lines: [String: Int] = [:]

    init(on executor: ReactorExecutor) {
        self.executor = executor
    }

    func count(_ line: String) -> Int {
        precondition(executor.isCurrentThread, "the actor runs on the reactor thread")
        lines[line, default: 0] += 1
        return lines[line]!
    }

    var total: Int { lines.values.reduce(0, +) }
}

@main
struct ReactorActorExample {
    static func main() async throws {
        let (thread, _) = try ReactorThread.start(name: "example-reactor") { _ in }
        let handle = thread.handle
        let tally = Tally(on: handle.executor)
        let listener = try await handle.listen(host: "127.0.0.1", port: 0, framing: .line)
        let server = Task {
            await listener.serve { connection in
                // This task runs on the reactor thread too: calling the actor is no hop.
                for try await line in connection.inbound {
                    let seen = await tally.count(line.string)
                    try await connection.outbound.write("\(line.string) \(seen)")
                }
            }
        }

        // Ten clients on the global executor, ten lines each.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<10 {
                group.addTask {
                    let connection = try await handle.connect(host: "127.0.0.1", port: listener.address.port, framing: .line)
                    try await connection.executeThenClose { inbound, outbound in
                        var replies = inbound.makeAsyncIterator()
                        for line in 0..<10 {
                            try await outbound.write("client \(client) line \(line % 2)")
                            _ = try await replies.next()
                        }
                    }
                }
            }
            try await group.waitForAll()
        }

        // A reactor callback reaches the actor synchronously: same thread, same executor.
        let fromCallback = try await handle.submit { _ in tally.assumeIsolated { $0.total } }
        let fromTask = await tally.total
        print("lines counted: \(fromTask) (from a reactor callback: \(fromCallback))")

        handle.shutdownGracefully()
        await server.value
        await thread.stopped()
        exit(fromTask == 100 && fromCallback == 100 ? 0 : 1)
    }
}
