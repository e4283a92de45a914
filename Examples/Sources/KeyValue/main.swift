// A key-value server on one reactor: a line protocol over TCP, keys that expire on
// reactor timers, and a UDP endpoint that answers any datagram with the counters.
//
//   swift run --package-path Examples KeyValue [PORT]     (0, the default: any free port)
//
//   SET key value [seconds]   -> OK              (seconds: the key expires after them)
//   GET key                   -> VALUE value | NOT_FOUND
//   DEL key                   -> DELETED | NOT_FOUND
//   anything else             -> ERROR ...
//
// It prints `listening tcp HOST:PORT` and `listening udp HOST:PORT` when ready, and stops
// gracefully on SIGINT or SIGTERM.

import Glibc
import ReactorCore
import ReactorFraming

/// The store and its counters, confined to the reactor thread like everything else here.
final class Store {
    /// Keys beyond this are refused: a client cannot grow the store without bound.
    static let maxKeys = 100_000

    private struct Entry {
        var value: String
        var expiry: ReactorTimer?
    }

    let reactor: Reactor
    private var entries: [String: Entry] = [:]
    private(set) var sets = 0, gets = 0, hits = 0, expired = 0

    init(reactor: Reactor) { self.reactor = reactor }

    var count: Int { entries.count }

    /// Stores `value`, replacing any earlier value and its expiry; false when full.
    func set(_ key: String, _ value: String, expiresAfter seconds: Int?) -> Bool {
        guard entries[key] != nil || entries.count < Store.maxKeys else { return false }
        entries[key]?.expiry?.cancel()
        let expiry = seconds.map { seconds in
            reactor.schedule(after: .seconds(seconds)) { [unowned self] _ in
                entries[key] = nil
                expired += 1
            }
        }
        entries[key] = Entry(value: value, expiry: expiry)
        sets += 1
        return true
    }

    func get(_ key: String) -> String? {
        gets += 1
        let value = entries[key]?.value
        if value != nil { hits += 1 }
        return value
    }

    func delete(_ key: String) -> Bool {
        guard let entry = entries.removeValue(forKey: key) else { return false }
        entry.expiry?.cancel()
        return true
    }
}

/// One client's connection: each line is a command, each command one reply line.
final class KeyValueSession: FrameHandler {
    let store: Store

    init(store: Store) { self.store = store }

    func received(frame: RawSpan, on connection: FramedConnection) {
        let words = frame.decodeUTF8().split(separator: " ", maxSplits: 3, omittingEmptySubsequences: true)
        connection.send(frame: reply(to: words))
    }

    private func reply(to words: [Substring]) -> String {
        switch (words.first, words.count) {
        case ("SET", 3), ("SET", 4):
            var seconds: Int?
            if words.count == 4 {
                guard let given = Int(words[3]), given > 0, given <= 86_400 * 365 else {
                    return "ERROR expiry must be a number of seconds from 1 to 31536000"
                }
                seconds = given
            }
            return store.set(String(words[1]), String(words[2]), expiresAfter: seconds) ? "OK" : "ERROR store full"
        case ("GET", 2):
            return store.get(String(words[1])).map { "VALUE \($0)" } ?? "NOT_FOUND"
        case ("DEL", 2):
            return store.delete(String(words[1])) ? "DELETED" : "NOT_FOUND"
        default:
            return "ERROR expected SET key value [seconds], GET key or DEL key"
        }
    }
}

/// Answers every datagram with the store's counters.
final class StatsEndpoint: DatagramHandler {
    let store: Store

    init(store: Store) { self.store = store }

    func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        let reactor = store.reactor
        socket.send(
            "keys=\(store.count) sets=\(store.sets) gets=\(store.gets) hits=\(store.hits) expired=\(store.expired) connections=\(reactor.connectionCount)\n",
            to: sender)
    }
}

/// Writes one line to standard output (or `descriptor`) at once: the smoke test reads the
/// listening lines through a pipe, where `print` would sit in a buffer.
func say(_ line: String, to descriptor: Int32 = 1) {
    var text = line + "\n"
    text.withUTF8 { _ = write(descriptor, $0.baseAddress, $0.count) }
}

let port = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 0 : 0
do {
    try Reactor.raiseOpenFileLimit()
    let reactor = try Reactor()
    let store = Store(reactor: reactor)
    var connectionOptions = ConnectionOptions()
    connectionOptions.idleTimeout = .seconds(300)  // open to any client: quiet ones go
    let listener = try reactor.listen(host: "127.0.0.1", port: port, connectionOptions: connectionOptions) { _ in
        FramedConnection(framer: DelimiterFramer.line(maxFrameLength: 4096), handler: KeyValueSession(store: store))
    }
    let stats = try reactor.bindUDP(host: "127.0.0.1", port: listener.address.port, handler: StatsEndpoint(store: store))
    say("listening tcp \(listener.address)")
    say("listening udp \(stats.localAddress)")
    for signal in [SIGINT, SIGTERM] {
        try reactor.onSignal(signal) { reactor.shutdownGracefully(timeout: .seconds(5)) }
    }
    try reactor.run()
} catch {
    say("KeyValue: \(error)", to: 2)
    exit(1)
}
