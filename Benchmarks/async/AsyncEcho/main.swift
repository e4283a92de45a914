// async-echo: an echo server written with ReactorAsync, for Benchmarks/async/async-bench.sh
// to compare with `reactor serve echo` (the callback echo). Every connection is served by
// `AsyncListener.serve` (a task per connection on the reactor's executor) iterating
// `inbound` and writing each frame back.
//
//   async-echo [raw|line|int32]     prints `listening tcp HOST:PORT echo`; SIGTERM or SIGINT ends it
import Glibc
import ReactorAsync
import ReactorCore
import ReactorFraming

@main
struct AsyncEcho {
    // Not an async main: that one parks the main thread in libdispatch's sigsuspend, where
    // valgrind 3.19 crashes at start-up, and callgrind is how this server's instructions
    // per request are counted (docs/async.md). The reactor runs on the main thread instead;
    // the server's one busy thread is the reactor's either way.
    static func main() throws {
        let name = CommandLine.arguments.dropFirst().first ?? "raw"
        guard let framing = Framing(parsing: name) else {
            say(2, "async-echo: unknown framing \(name) (\(Framing.spellings.joined(separator: ", ")))")
            exit(2)
        }
        let reactor = try Reactor()
        try reactor.onSignal(SIGTERM) { reactor.shutdownGracefully() }
        try reactor.onSignal(SIGINT) { reactor.shutdownGracefully() }
        let handle = reactor.handle
        // Queued before run(): it starts once the loop runs.
        Task(executorPreference: handle.executor) {
            let listener = try await handle.listen(host: "127.0.0.1", port: 0, framing: framing)
            say(1, "listening tcp \(listener.address) echo")
            await listener.serve { connection in
                for try await frame in connection.inbound { try await connection.outbound.write(frame) }
            }
        }
        try reactor.run()
    }
}

/// One line on a descriptor, unbuffered: the benchmark waits for the listening line.
func say(_ fd: Int32, _ line: String) {
    var text = line + "\n"
    text.withUTF8 { _ = write(fd, $0.baseAddress, $0.count) }
}
