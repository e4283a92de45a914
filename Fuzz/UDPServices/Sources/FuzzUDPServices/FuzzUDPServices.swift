// libFuzzer target for the UDP services' request handling: arbitrary datagrams from
// arbitrary senders, through the real handlers of ReactorServices (echo, discard, chargen,
// qotd, daytime, time) sharing one ReplyGuard, as `reactor serve all` does. Built and run
// by Fuzz/run-fuzz-udp.sh (`make fuzz`) with SwiftPM and -sanitize=fuzzer,address.
//
// No mocks of the kernel: the handlers answer through real UDPSockets bound on loopback,
// every reply is a real sendmmsg, and a fuzzed sender is a loopback address with the
// fuzzed port, so replies stay on this host. Each request takes one of two paths:
// - directly: the handler is called on this thread (its reactor is made here and never
//   runs, so this thread owns it) with the sender 127.77.0.X or ::1, any port, 0 and the
//   refused ones included; its reply leaves at once. Replies are counted and sized through
//   the server socket's counters, and for IPv4 read by a socket the fuzzer binds on the
//   sender's address and port (when free);
// - over the wire: a socket bound on 127.78.0.X and the fuzzed port (the refused ports
//   too; not 0, which no socket can send from) really sends the datagram to a reactor
//   running on its own thread, which receives it in a batch (recvmmsg) with the others of
//   its group and answers from inside the batch, as `reactor serve` does: echoes sent in
//   place from the receive area, the other replies copied, all in one sendmmsg. Every
//   reply is read back and paired with its request.
// The senders' sockets are connected to the server socket, so that only its replies
// arrive (another fuzzer may be running at the same time). The guard's clock is the
// fuzzed clock its API takes.
//
// Input layout: byte 0 picks the guard's rate, byte 1 its burst, byte 2 its table size,
// bytes 3-10 the clock's start (monotonic ns), bytes 11-18 the date daytime and time see
// (seconds since 1970, any Int64). Then requests, each 6 bytes and a payload:
//   0: bits 0-2 the service (mod 6), bit 3 a refused source port (byte 2 picks which),
//      bits 4-5 payload length high bits, bit 6 over the wire, bit 7 IPv6 (::1, direct);
//   1: the sender's address, 127.77.0.(byte 1) or 127.78.0.(byte 1); 2-3: its port;
//   4: the clock's advance before this request, 2^(byte 4 mod 64) ns, 0 for 0;
//   5: payload length low byte (0-1023 with byte 0's bits; cut to what is left).
// Consecutive requests over the wire go as one group (up to 64: one or two receive
// batches) while the clock stands still and each sender asks one service.
//
// Every promise is a check that aborts, so libFuzzer reports the input:
// - never a reply to a refused source port (0, 7, 9, 13, 17, 19, 37), never one from discard;
// - at most one reply per request;
// - chargen: 444 bytes (at most 512), whole lines of 72 printable characters and CRLF;
// - qotd: one of the quotes, at most 511 bytes; time: exactly 4 bytes, the clock's value;
// - daytime: at most 64 bytes, ending in CRLF; echo: the request itself, byte for byte;
// - per source address, replies never exceed burst + rate x elapsed (plus one burst per
//   source the full table forgot, the documented limit of a fixed table).

import Dispatch
import ReactorCore
import ReactorServices

#if canImport(Glibc)
import Glibc
#endif

/// Like precondition, but says why in optimized builds too, then aborts for libFuzzer.
func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fail(message()) }
}

func fail(_ message: String) -> Never {
    var line = "CHECK FAILED: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    abort()
}

enum Service: Int, CaseIterable {
    case echo, discard, chargen, qotd, daytime, time
}

let rates: [Double] = [0, 0.001, 1, 20, 1000, 1e9, 1e300]
let bursts = [1, 2, 3, 40, 1000, Int.max]
let tableSizes = [1, 2, 7, 8, 9, 64, 4096]
let refused = ReplyGuardOptions.smallServicePorts

/// Reads the fuzz input front to back; past the end it gives zeros.
struct Reader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    var isAtEnd: Bool { offset >= bytes.count }

    mutating func byte() -> UInt8 {
        defer { offset += 1 }
        return offset < bytes.count ? bytes[offset] : 0
    }

    mutating func uint64() -> UInt64 {
        var value: UInt64 = 0
        for _ in 0..<8 { value = value << 8 | UInt64(byte()) }
        return value
    }

    mutating func payload(_ count: Int) -> UnsafeRawBufferPointer {
        let start = min(offset, bytes.count)
        let end = min(start + count, bytes.count)
        offset = end
        return UnsafeRawBufferPointer(rebasing: bytes[start..<end])
    }
}

/// Sockets bound on fuzzed sender addresses (`prefix` plus one byte, the fuzzed port),
/// each connected to one server socket so that only its replies arrive: another fuzzer
/// running at the same time sends to the same loopback addresses.
final class Senders {
    private let prefix: String
    private let serverPort: Int
    private var sockets: [SocketAddress: Int32] = [:]
    private var buffer = [UInt8](repeating: 0, count: 65_536)

    init(prefix: String, serverPort: Int) {
        self.prefix = prefix
        self.serverPort = serverPort
    }

    func address(_ host: UInt8, port: Int) -> SocketAddress {
        do {
            return try SocketAddress(ip: "\(prefix)\(host)", port: port)
        } catch {
            fail("a loopback sender refused: \(error)")
        }
    }

    /// Closes every socket once there are 512, to stay under the descriptor limit; call it
    /// before taking the sockets one request or one group needs.
    func trim() {
        guard sockets.count >= 512 else { return }
        for fd in sockets.values where fd >= 0 { close(fd) }
        sockets.removeAll(keepingCapacity: true)
    }

    /// The socket bound on `address`, or nil when it cannot be bound (port 0, a port some
    /// other program holds).
    func socket(for address: SocketAddress) -> Int32? {
        guard address.family == .ipv4, address.port != 0 else { return nil }
        if let fd = sockets[address] { return fd >= 0 ? fd : nil }
        var fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        check(fd >= 0, "socket: errno \(errno)")
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_port = in_port_t(UInt16(address.port).bigEndian)
        inet_pton(AF_INET, address.ip, &local.sin_addr)
        var server = sockaddr_in()
        server.sin_family = sa_family_t(AF_INET)
        server.sin_port = in_port_t(UInt16(serverPort).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &server.sin_addr)
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        } == 0
        let connected = bound && withUnsafePointer(to: &server) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        } == 0
        if !connected {
            close(fd)
            fd = -1
        }
        sockets[address] = fd
        return fd >= 0 ? fd : nil
    }

    /// The next datagram waiting on `fd`, waiting up to a second when `expected`; nil when
    /// none came.
    func take(from fd: Int32, expected: Bool) -> [UInt8]? {
        var count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if count < 0, expected {
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&ready, 1, 1000)
            count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        }
        return count >= 0 ? Array(buffer[..<count]) : nil
    }
}

/// Direct calls: a reactor made on this thread that never runs, so this thread owns it and
/// its sockets; handlers are called here with any sender, port 0 included, and answer
/// outside a receive batch (each reply sent at once).
final class Direct {
    let reactor: Reactor
    let v4: UDPSocket
    let v6: UDPSocket?
    let senders: Senders

    init() {
        do {
            reactor = try Reactor()
            v4 = try reactor.bindUDP(host: "127.0.0.1", port: 0, handler: DiscardDatagramHandler())
            v6 = try? reactor.bindUDP(host: "::1", port: 0, handler: DiscardDatagramHandler())
        } catch {
            fail("cannot bind the loopback server sockets: \(error)")
        }
        senders = Senders(prefix: "127.77.0.", serverPort: v4.localAddress.port)
    }

    /// An IPv6 sender: ::1 and the port (replies are counted and sized, not read).
    func v6Sender(port: Int) -> SocketAddress {
        do {
            return try SocketAddress(ip: "::1", port: port)
        } catch {
            fail("::1 refused: \(error)")
        }
    }
}

/// Hands each datagram to the handler routed for its sender; others are dropped.
final class Relay: DatagramHandler {
    var routes: [SocketAddress: any DatagramHandler] = [:]

    func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        routes[sender]?.received(datagram, from: sender, on: socket)
    }
}

/// Moves a value between this thread and the reactor thread; every hand-over waits on a
/// semaphore, so the two never touch it at once.
struct Handed<T>: @unchecked Sendable {
    var value: T
}

/// Through the wire: a reactor running on its own thread receives the datagrams that
/// sockets bound on the senders' addresses really send, in batches (recvmmsg), and the
/// handlers answer from inside the batch (sendmmsg when it ends), as in `reactor serve`.
final class Wire {
    let thread: ReactorThread
    let socket: Handed<UDPSocket>
    let relay: Handed<Relay>
    let senders: Senders

    init() {
        do {
            var udpOptions = UDPOptions()
            udpOptions.receiveBufferSize = 4 << 20
            let options = udpOptions
            let relay = Relay()
            let handed = Handed(value: relay)
            let (thread, socket) = try ReactorThread.start(name: "fuzz-wire") { reactor in
                Handed(value: try reactor.bindUDP(host: "127.0.0.1", port: 0, options: options, handler: handed.value))
            }
            self.thread = thread
            self.socket = socket
            self.relay = handed
            senders = Senders(prefix: "127.78.0.", serverPort: socket.value.localAddress.port)
        } catch {
            fail("cannot start the wire reactor: \(error)")
        }
    }

    /// Runs `body` on the reactor thread and waits for its result.
    func onReactor<T>(_ body: @escaping (UDPSocket, Relay) -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let work = Handed(value: body)
        let result = ResultBox<T>()
        let socket = socket
        let relay = relay
        let posted = thread.handle.execute { _ in
            result.value = work.value(socket.value, relay.value)
            done.signal()
        }
        check(posted, "the wire reactor stopped")
        done.wait()
        return result.value!
    }
}

final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}

nonisolated(unsafe) let direct = Direct()
nonisolated(unsafe) let wire = Wire()

/// The guard's clock: monotonic nanoseconds that the input moves forward.
final class FuzzClock {
    var now: UInt64 = 0
}

/// What one source address was answered during one input.
struct SourceUse {
    var replies = 0
    var firstSeen: UInt64
    var lastReply: UInt64 = 0
}

/// The entry point. SwiftPM links an executable's own `main`, so libFuzzer's is not used:
/// this one hands the command line to libFuzzer's driver, which then behaves as usual.
@main
enum FuzzUDPServices {
    static func main() {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&argc, &argv, fuzzOneInput))
    }
}

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// One request of the input.
struct Request {
    var service: Service
    var sender: SocketAddress
    var payload: UnsafeRawBufferPointer
}

/// The checks one input shares between its requests.
struct Oracle {
    let seconds: Int64
    let timeReply: [UInt8]
    let quotes: QuoteList
    var sources: [SocketAddress: SourceUse] = [:]

    /// Checks a reply the kernel delivered for `request`.
    func verify(reply: [UInt8], to request: Request) {
        let service = request.service
        switch service {
        case .echo:
            check(reply.elementsEqual(request.payload), "echo changed a datagram of \(request.payload.count) bytes")
        case .chargen:
            check(reply.count == 444 && reply.count <= 512, "chargen reply of \(reply.count) bytes")
            for line in stride(from: 0, to: reply.count, by: 74) {
                check(reply[line..<line + 72].allSatisfy { (0x20...0x7E).contains($0) }, "chargen: a character out of range")
                check(reply[line + 72] == 13 && reply[line + 73] == 10, "chargen: a line without CRLF")
            }
        case .qotd:
            check(reply.count <= 511 && quotes.replies.contains(reply), "qotd sent something that is not a quote")
        case .daytime:
            check(reply.count <= DaytimeHandler.maxLineLength && reply.suffix(2) == [13, 10], "daytime's line does not end in CRLF: \(reply)")
        case .time:
            check(reply == timeReply, "time sent \(reply), not \(timeReply) for \(seconds)")
        case .discard:
            fail("discard replied")
        }
    }

    /// Checks the size of a reply the server socket counted as sent.
    func verify(sentBytes bytes: Int, to request: Request) {
        switch request.service {
        case .echo: check(bytes == request.payload.count, "echo of \(request.payload.count) bytes sent \(bytes)")
        case .chargen: check(bytes == 444, "chargen reply of \(bytes) bytes")
        case .qotd: check(bytes >= 1 && bytes <= 511, "qotd reply of \(bytes) bytes")
        case .daytime: check(bytes >= 2 && bytes <= DaytimeHandler.maxLineLength, "daytime reply of \(bytes) bytes")
        case .time: check(bytes == 4, "time reply of \(bytes) bytes")
        case .discard: fail("discard replied")
        }
    }

    /// Whether `request` may never be answered.
    func mustNotAnswer(_ request: Request) -> Bool {
        refused.contains(request.sender.port) || request.service == .discard
    }

    mutating func seen(_ sender: SocketAddress, at time: UInt64) {
        let source = sender.withPort(0)
        if sources[source] == nil { sources[source] = SourceUse(firstSeen: time) }
    }

    mutating func answered(_ sender: SocketAddress, at time: UInt64) {
        let source = sender.withPort(0)
        sources[source]!.replies += 1
        sources[source]!.lastReply = time
    }
}

/// Calls the request's handler here, outside a receive batch.
func handleDirectly(_ request: Request, handlers: [any DatagramHandler], oracle: inout Oracle, time: UInt64) {
    let isV6 = request.sender.family == .ipv6
    guard let socket = isV6 ? direct.v6 : direct.v4 else { return }
    direct.senders.trim()
    let receiver = direct.senders.socket(for: request.sender)
    oracle.seen(request.sender, at: time)
    let before = socket.counters
    unsafe handlers[request.service.rawValue].received(RawSpan(_unsafeBytes: request.payload), from: request.sender, on: socket)
    let after = socket.counters
    let sent = after.sent - before.sent
    let failed = (after.sendTooLarge + after.sendDropped + after.sendRefused + after.sendFailed)
        - (before.sendTooLarge + before.sendDropped + before.sendRefused + before.sendFailed)
    check(sent + failed <= 1, "\(request.service) sent \(sent + failed) replies to one request")
    if oracle.mustNotAnswer(request) {
        check(sent + failed == 0, "\(request.service) replied to \(request.sender) (a refused source port, or discard)")
    }
    if sent == 1 { oracle.verify(sentBytes: after.sentBytes - before.sentBytes, to: request) }
    if sent + failed == 1 { oracle.answered(request.sender, at: time) }
    if let receiver {
        let reply = direct.senders.take(from: receiver, expected: sent == 1)
        check((reply != nil) == (sent == 1), "\(request.service): \(sent) sent but \(reply == nil ? "none" : "one") received at \(request.sender)")
        if let reply { oracle.verify(reply: reply, to: request) }
        check(direct.senders.take(from: receiver, expected: false) == nil, "\(request.service) sent a second reply to \(request.sender)")
    }
}

/// Sends `group` from the senders' own sockets to the wire reactor, lets it handle them in
/// its receive batches, and checks every reply that comes back.
func sendOverWire(_ group: [Request], handlers: [any DatagramHandler], oracle: inout Oracle, time: UInt64) {
    var routed: [(Request, Int32)] = []
    var routes: [SocketAddress: any DatagramHandler] = [:]
    wire.senders.trim()
    for request in group {
        guard let fd = wire.senders.socket(for: request.sender) else { continue }
        routed.append((request, fd))
        routes[request.sender] = handlers[request.service.rawValue]
        oracle.seen(request.sender, at: time)
    }
    guard !routed.isEmpty else { return }
    let handedRoutes = Handed(value: routes)
    let before = wire.onReactor { socket, relay in
        relay.routes = handedRoutes.value
        return socket.counters
    }
    for (request, fd) in routed {
        let sent = send(fd, request.payload.baseAddress, request.payload.count, 0)
        check(sent == request.payload.count, "sending \(request.payload.count) bytes from \(request.sender): errno \(errno)")
    }
    // Every datagram is in the server socket's buffer once send returns (loopback); wait
    // until the reactor has received them all, and so flushed their replies.
    var after = before
    for _ in 0..<10_000 {
        after = wire.onReactor { socket, _ in socket.counters }
        if after.received - before.received >= routed.count { break }
        usleep(100)
    }
    check(after.received - before.received == routed.count, "the wire reactor received \(after.received - before.received) of \(routed.count) datagrams")
    let failed = (after.sendTooLarge + after.sendDropped + after.sendRefused + after.sendFailed)
        - (before.sendTooLarge + before.sendDropped + before.sendRefused + before.sendFailed)
    check(failed == 0, "\(failed) replies refused by the kernel on loopback")
    // Replies to one sender come back in the order of its requests, each request answered
    // at most once: match them in order, skipping requests the guard did not answer.
    var received = 0
    var bySender: [SocketAddress: [Request]] = [:]
    var order: [(SocketAddress, Int32)] = []
    for (request, fd) in routed {
        if bySender[request.sender] == nil { order.append((request.sender, fd)) }
        bySender[request.sender, default: []].append(request)
    }
    for (sender, fd) in order {
        var pending = bySender[sender]![...]
        while let reply = wire.senders.take(from: fd, expected: false) {
            received += 1
            while let request = pending.first, oracle.mustNotAnswer(request) || !matches(reply, request) {
                pending.removeFirst()
            }
            guard let request = pending.popFirst() else {
                fail("a reply to \(sender) that answers none of its requests: \(reply.prefix(80))")
            }
            oracle.verify(reply: reply, to: request)
            oracle.answered(sender, at: time)
        }
    }
    check(received == after.sent - before.sent, "\(after.sent - before.sent) replies sent over the wire, \(received) received")
}

/// Whether `reply` has the shape of an answer to `request` (to pair replies with requests).
func matches(_ reply: [UInt8], _ request: Request) -> Bool {
    request.service != .echo || reply.elementsEqual(request.payload)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    var input = Reader(bytes: UnsafeRawBufferPointer(start: data, count: size))

    var options = ReplyGuardOptions()
    options.repliesPerSecond = rates[Int(input.byte()) % rates.count]
    options.burst = bursts[Int(input.byte()) % bursts.count]
    options.maxTrackedSources = tableSizes[Int(input.byte()) % tableSizes.count]
    let clock = FuzzClock()
    clock.now = input.uint64()
    let replyGuard: ReplyGuard
    do {
        replyGuard = try ReplyGuard(options, now: { clock.now })
    } catch {
        fail("valid options refused: \(error)")
    }
    let seconds = Int64(bitPattern: input.uint64())
    let serviceClock = ServiceClock.fixed(at: seconds)
    let quotes = QuoteList.builtIn
    let handlers: [any DatagramHandler] = [
        EchoDatagramHandler(replyGuard: replyGuard),
        DiscardDatagramHandler(),
        ChargenDatagramHandler(replyGuard: replyGuard),
        QuoteDatagramHandler(cursor: QuoteCursor(quotes), replyGuard: replyGuard),
        DaytimeDatagramHandler(clock: serviceClock, replyGuard: replyGuard),
        TimeDatagramHandler(clock: serviceClock, replyGuard: replyGuard),
    ]
    var oracle = Oracle(
        seconds: seconds,
        timeReply: withUnsafeBytes(of: TimeHandler.timestamp(secondsSince1970: seconds).bigEndian) { Array($0) },
        quotes: quotes)
    // Requests for the wire wait here while they share one clock reading and each sender
    // asks one service, so that they can arrive in one receive batch.
    var group: [Request] = []
    func flush() {
        sendOverWire(group, handlers: handlers, oracle: &oracle, time: clock.now)
        group.removeAll()
    }

    while !input.isAtEnd {
        let control = input.byte()
        let service = Service(rawValue: Int(control & 7) % Service.allCases.count)!
        let host = input.byte()
        var port = Int(input.byte()) << 8 | Int(input.byte())
        if control & 8 != 0 { port = refused[port % refused.count] }
        let advance = input.byte()
        let length = Int(control & 0x30) << 4 | Int(input.byte())
        let payload = input.payload(length)
        let overWire = control & 0x40 != 0
        let isV6 = control & 0x80 != 0

        let sender = isV6 && !overWire
            ? direct.v6Sender(port: port)
            : (overWire ? wire.senders : direct.senders).address(host, port: port)
        // At most 64 at once (two receive batches), so the server socket's buffer, capped
        // by net.core.rmem_max, cannot overflow and drop one.
        if advance != 0 || !overWire || group.count == 64
            || group.contains(where: { $0.sender == sender && $0.service != service }) {
            if !group.isEmpty { flush() }
        }
        if advance != 0 {
            let step: UInt64 = 1 << UInt64(advance % 64)
            clock.now = clock.now > UInt64.max - step ? UInt64.max : clock.now + step
        }
        let request = Request(service: service, sender: sender, payload: payload)
        if overWire {
            group.append(request)
        } else {
            handleDirectly(request, handlers: handlers, oracle: &oracle, time: clock.now)
        }
    }
    if !group.isEmpty { flush() }

    // The rate limit: tokens start at the burst and refill at the rate; a source the full
    // table forgot starts again with a full burst.
    if options.isRateLimited {
        let forgotten = Double(replyGuard.counters.evictedSources)
        for (source, use) in oracle.sources where use.replies > 0 {
            let elapsed = Double(use.lastReply - use.firstSeen) / 1e9
            let bound = Double(options.burst) * (1 + forgotten) + options.repliesPerSecond * elapsed
            check(Double(use.replies) <= bound * (1 + 1e-9) + 1e-6,
                  "\(source.ip) got \(use.replies) replies; the limit allows \(bound) (burst \(options.burst), \(options.repliesPerSecond)/s over \(elapsed) s, \(forgotten) sources forgotten)")
        }
    }
    return 0
}
