// nio-async-echo: the SwiftNIO async/await echo server that the reactor's async echo
// (Benchmarks/async/AsyncEcho) is measured against (Benchmarks/async/async-bench.sh,
// issue 12): SwiftNIO's NIOAsyncChannel way, as its documentation shows it. The server
// channel's inbound yields each accepted connection as a NIOAsyncChannel<ByteBuffer,
// ByteBuffer>; a child task of a discarding task group serves it with executeThenClose,
// writing every chunk read straight back (raw echo). TCP_NODELAY on every connection.
//
// One thread by default: the singleton event loop group has one loop, and it is installed
// as Swift concurrency's global executor (NIOSingletons'
// unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor), so the tasks
// run on the loop that does the I/O, with no thread hop. `--pool` keeps Swift's own
// global executor instead (the cooperative pool, one thread per core), the default a
// program gets when it does not take the pool over: every read and write then hops
// between the loop and a pool thread.
//
// Usage: nio-async-echo HOST PORT [--pool]      (PORT 0 picks a free port)
// Prints "listening tcp HOST:PORT nio-async-echo" once ready; exits 0 on SIGINT/SIGTERM.

import Dispatch
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a line to stderr (the `stderr` global is not concurrency-safe in Swift 6).
func printError(_ text: String) {
    var text = text + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

let arguments = CommandLine.arguments
guard (3...4).contains(arguments.count), let port = Int(arguments[2]), (0...65535).contains(port),
    arguments.count == 3 || arguments[3] == "--pool"
else {
    printError("usage: nio-async-echo HOST PORT [--pool]")
    exit(2)
}
let host = arguments[1]
let usePool = arguments.count == 4

NIOSingletons.groupLoopCountSuggestion = 1
if !usePool {
    guard NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor() else {
        printError("nio-async-echo: cannot install the event loop as the global executor")
        exit(1)
    }
}

// Many connections need many descriptors: take the whole hard limit.
var limit = rlimit()
if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

let server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>
do {
    server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.backlog, value: 1024)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .bind(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
} catch {
    printError("nio-async-echo: cannot bind \(host):\(port): \(error)")
    exit(1)
}
guard let address = server.channel.localAddress, let boundPort = address.port, let ip = address.ipAddress else {
    printError("nio-async-echo: no local address")
    exit(1)
}

// SIGINT/SIGTERM: close the server channel, which ends the accept loop below.
var signalSources: [DispatchSourceSignal] = []
for sig in [SIGINT, SIGTERM] {
    signal(sig, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
    let channel = server.channel
    source.setEventHandler { @Sendable in channel.close(promise: nil) }
    source.resume()
    signalSources.append(source)
}

let shownHost = address.protocol == .inet6 ? "[\(ip)]" : ip
print("listening tcp \(shownHost):\(boundPort) nio-async-echo")
fflush(nil)

/// The accept loop and a child task per connection; nonisolated, so that it runs on the
/// global executor (the event loop, unless --pool) and not on the main thread.
func serve(_ server: NIOAsyncChannel<NIOAsyncChannel<ByteBuffer, ByteBuffer>, Never>) async {
    try? await withThrowingDiscardingTaskGroup { group in
        try await server.executeThenClose { connections in
            for try await connection in connections {
                group.addTask {
                    try? await connection.executeThenClose { inbound, outbound in
                        for try await chunk in inbound { try await outbound.write(chunk) }
                    }
                }
            }
        }
        // The listener has closed: connections still open are cut short.
        group.cancelAll()
    }
}

await serve(server)
exit(0)
