import ReactorCore
import Testing

/// Runs `body` with a line server of known capacity: every line from every connection
/// waits in one queue and is echoed one at a time, in order, each taking `serviceTime`,
/// so the server answers at most 1 / serviceTime lines per second whatever the load (the
/// capacity `reactor bench --slo` must find). The service is timed on an absolute
/// schedule: a line starts when it arrived or when the one before it was due to end,
/// whichever is later, so a late timer delays answers but never lowers the capacity.
/// Benchmarks/c/serial_server.c is the same server in C, for the benchmark.
public func withSerialServer<T>(serviceTime: Duration, _ body: (TestServer) throws -> T) throws -> T {
    let queue = SerialQueueSlot()
    return try withServer(
        setup: { reactor in queue.queue = SerialQueue(reactor: reactor, serviceTime: serviceTime.nanoseconds) },
        makeHandler: { _, _ in SerialLineHandler(queue: queue.queue!) }, body)
}

/// Hands the queue from `setup` to `makeHandler`, which both run on the server's reactor
/// thread (the only thread that touches it).
private final class SerialQueueSlot: @unchecked Sendable {
    var queue: SerialQueue?
}

private final class SerialQueue {
    let reactor: Reactor
    let serviceTime: UInt64
    private var waiting: [(connection: Connection, line: [UInt8], arrived: UInt64)] = []
    private var next = 0
    private var busyUntil: UInt64 = 0
    private var serving = false

    init(reactor: Reactor, serviceTime: UInt64) {
        self.reactor = reactor
        self.serviceTime = serviceTime
    }

    func arrived(_ line: [UInt8], on connection: Connection) {
        waiting.append((connection, line, Reactor.now))
        if !serving { serveNext() }
    }

    private func serveNext() {
        guard next < waiting.count else {
            serving = false
            waiting.removeAll(keepingCapacity: true)
            next = 0
            return
        }
        serving = true
        busyUntil = Swift.max(waiting[next].arrived, busyUntil) + serviceTime
        let now = Reactor.now
        reactor.schedule(after: .nanoseconds(Int64(busyUntil - Swift.min(busyUntil, now)))) { [self] _ in
            let request = waiting[next]
            next += 1
            request.connection.write(request.line)  // false once the client has gone: dropped
            serveNext()
        }
    }
}

/// Cuts a connection's bytes into lines (each with its `\n`) for the queue.
private final class SerialLineHandler: ConnectionHandler {
    let queue: SerialQueue
    private var partial: [UInt8] = []

    init(queue: SerialQueue) { self.queue = queue }

    func received(_ bytes: RawSpan, on connection: Connection) {
        bytes.withUnsafeBytes { buffer in
            for byte in buffer {
                partial.append(byte)
                if byte == UInt8(ascii: "\n") {
                    queue.arrived(partial, on: connection)
                    partial.removeAll(keepingCapacity: true)
                }
            }
        }
    }
}
