// A chat server on one reactor: every line a member sends goes to every other member.
//
//   swift run --package-path Examples Chat [PORT]     (0, the default: any free port)
//
//   /nick NAME   -> your name in what others see (default: your address)
//   /who         -> who is here
//   any line     -> "[NAME] line" to everyone else
//
// A member that stops reading does not hold up the others or grow the server's memory:
// once its connection is not writable, messages for it are dropped (and counted) instead
// of queued. It prints `listening tcp HOST:PORT` when ready and stops gracefully on
// SIGINT or SIGTERM.

import Glibc
import ReactorCore
import ReactorFraming

/// Everyone connected, on the reactor thread.
final class Room {
    private var members: [ObjectIdentifier: Member] = [:]
    /// Messages not sent to a member that was not reading.
    private(set) var dropped = 0

    func join(_ member: Member) {
        members[ObjectIdentifier(member)] = member
        broadcast("* \(member.name) joined", from: member)
    }

    func leave(_ member: Member) {
        guard members.removeValue(forKey: ObjectIdentifier(member)) != nil else { return }
        broadcast("* \(member.name) left", from: member)
    }

    var names: [String] { members.values.map(\.name).sorted() }

    /// Sends `line` to every member but `sender`, skipping those whose output is backed up.
    func broadcast(_ line: String, from sender: Member) {
        for member in members.values where member !== sender {
            guard let connection = member.connection, connection.isWritable else {
                dropped += 1
                continue
            }
            connection.send(frame: line)
        }
    }
}

/// One member's connection.
final class Member: FrameHandler {
    let room: Room
    private(set) var name = "?"
    private(set) weak var connection: FramedConnection?

    init(room: Room) { self.room = room }

    func opened(_ connection: FramedConnection) {
        self.connection = connection
        name = "\(connection.peerAddress)"
        connection.send(frame: "welcome, \(name); /nick NAME to choose a name, /who to list members")
        room.join(self)
    }

    func received(frame: RawSpan, on connection: FramedConnection) {
        let line = frame.decodeUTF8()
        if line.hasPrefix("/nick ") {
            let wanted = line.dropFirst(6).trimmingPrefixAndSuffixSpaces()
            guard !wanted.isEmpty, wanted.count <= 32, !wanted.contains(" ") else {
                connection.send(frame: "! a name is 1 to 32 characters without spaces")
                return
            }
            room.broadcast("* \(name) is now \(wanted)", from: self)
            name = wanted
            connection.send(frame: "* you are \(name)")
        } else if line == "/who" {
            connection.send(frame: "* here: \(room.names.joined(separator: ", "))")
        } else {
            room.broadcast("[\(name)] \(line)", from: self)
        }
    }

    func closed(_ connection: FramedConnection, reason: CloseReason) {
        room.leave(self)
    }
}

extension Substring {
    func trimmingPrefixAndSuffixSpaces() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
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
    let room = Room()
    let listener = try reactor.listen(host: "127.0.0.1", port: port) { _ in
        FramedConnection(framer: DelimiterFramer.line(maxFrameLength: 1024), handler: Member(room: room))
    }
    say("listening tcp \(listener.address)")
    for signal in [SIGINT, SIGTERM] {
        try reactor.onSignal(signal) { reactor.shutdownGracefully(timeout: .seconds(5)) }
    }
    try reactor.run()
} catch {
    say("Chat: \(error)", to: 2)
    exit(1)
}
