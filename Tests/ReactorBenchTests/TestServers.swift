// Handlers for the honesty tests' servers, which run on reactor threads in this process
// (`withServer` and the echoes are in ReactorTestSupport).

import Glibc
import ReactorCore
import ReactorFraming
import ReactorTestSupport

/// Answers each line exactly `delay` after it arrived.
final class DelayedLineEcho: FrameHandler {
    let delay: Duration
    init(delay: Duration) { self.delay = delay }

    func received(frame: RawSpan, on connection: FramedConnection) {
        let copy = frame.copyBytes()
        connection.connection?.reactor.schedule(after: delay) { _ in
            connection.send(frame: copy)
        }
    }
}

/// Echoes bytes, but resets the connection after a number of reads drawn per connection.
final class ResettingEcho: ConnectionHandler {
    private var readsLeft: Int
    init(seed: Int) { readsLeft = 20 + seed % 200 }

    func received(_ bytes: RawSpan, on connection: Connection) {
        readsLeft -= 1
        if readsLeft <= 0 {
            connection.abort()
        } else {
            connection.write(bytes)
        }
    }
}

/// Echoes lines, flipping one byte of every 50th.
final class CorruptingLineEcho: FrameHandler {
    private var count = 0

    func received(frame: RawSpan, on connection: FramedConnection) {
        count += 1
        var copy = frame.copyBytes()
        if count % 50 == 0, !copy.isEmpty { copy[0] = copy[0] == UInt8(ascii: "#") ? UInt8(ascii: "%") : UInt8(ascii: "#") }
        connection.send(frame: copy)
    }
}

/// Blocks the reactor thread for `length` every `period`, starting after `first`: a
/// server stalled by a GC pause or a slow disk.
func scheduleFreezes(on reactor: Reactor, first: Duration, period: Duration, length: Duration) {
    reactor.schedule(after: first, repeating: period) { _ in
        let microseconds = length.components.seconds * 1_000_000 + length.components.attoseconds / 1_000_000_000_000
        usleep(UInt32(microseconds))
    }
}
