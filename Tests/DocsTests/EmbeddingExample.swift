import ReactorCore

/// An echo server on a reactor thread of its own: the caller's thread stays free, and
/// reaches the reactor only through the thread's handle.
func startEchoThread() throws -> (thread: ReactorThread, port: Int) {
    try ReactorThread.start(name: "echo") { reactor in
        try reactor.listen(host: "127.0.0.1", port: 0) { _ in Echo() }.address.port
    }
}

/// Asks the reactor, from any thread, how many connections it has open.
func openConnections(of thread: ReactorThread) async throws -> Int {
    try await thread.handle.submit { reactor in reactor.connectionCount }
}
