// libFuzzer target for the UDP services' request handling: arbitrary datagrams from
// arbitrary senders, through the real handlers of ReactorServices (echo, discard, chargen,
// qotd, daytime, time) sharing one ReplyGuard, as `reactor serve all` does. Built and run
// by Fuzz/run-fuzz-udp.sh (`make fuzz`) with SwiftPM and -sanitize=fuzzer,address.
//
// No mocks of the kernel: the handlers answer through real UDPSockets bound on loopback
// (127.0.0.1 and ::1), and every reply is a real sendmmsg. A fuzzed sender is a loopback
// address, 127.77.0.X (IPv4) or ::1 (IPv6), with the fuzzed port, so replies stay on this
// host. For IPv4 senders the fuzzer binds a socket on that very address and port (when it
// is free), connected to the server socket, and reads each reply the kernel delivers; IPv6
// senders (::1) have no such socket. Every reply is also counted and sized through the
// server socket's counters, whether or not anyone listens on its destination.
// The handlers are called directly on this thread (the reactor is made here and never
// runs, so this thread owns it); the guard's clock is the fuzzed clock its API takes.
//
// Input layout: byte 0 picks the guard's rate, byte 1 its burst, byte 2 its table size,
// bytes 3-10 the clock's start (monotonic ns), bytes 11-18 the date daytime and time see
// (seconds since 1970, any Int64). Then requests, each 6 bytes and a payload:
//   0: bits 0-2 the service (mod 6), bit 3 a refused source port (byte 2 picks which),
//      bits 4-5 payload length high bits, bit 7 IPv6 (::1);
//   1: the sender's address, 127.77.0.(byte 1); 2-3: its port, big-endian;
//   4: the clock's advance before this request, 2^(byte 4 mod 64) ns, 0 for 0;
//   5: payload length low byte (0-1023 with byte 0's bits; cut to what is left).
//
// Every promise is a check that aborts, so libFuzzer reports the input:
// - never a reply to a refused source port (0, 7, 9, 13, 17, 19, 37), never one from discard;
// - at most one reply per request;
// - chargen: 444 bytes (at most 512), whole lines of 72 printable characters and CRLF;
// - qotd: one of the quotes, at most 511 bytes; time: exactly 4 bytes, the clock's value;
// - daytime: at most 64 bytes, ending in CRLF; echo: the request itself, byte for byte;
// - per source address, replies never exceed burst + rate x elapsed (plus one burst per
//   source the full table forgot, the documented limit of a fixed table).

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

/// The server sockets and the senders' sockets, made once for the whole run.
final class Rig {
    let reactor: Reactor
    let v4: UDPSocket
    let v6: UDPSocket?
    /// Sockets bound on fuzzed sender addresses, to read what is sent to them.
    private var receivers: [SocketAddress: Int32] = [:]
    private var reply = [UInt8](repeating: 0, count: 65_536)

    init() {
        do {
            reactor = try Reactor()
            v4 = try reactor.bindUDP(host: "127.0.0.1", port: 0, handler: DiscardDatagramHandler())
            v6 = try? reactor.bindUDP(host: "::1", port: 0, handler: DiscardDatagramHandler())
        } catch {
            fail("cannot bind the loopback server sockets: \(error)")
        }
    }

    /// A socket bound on `address` that hears what the services send there, or nil when the
    /// address cannot be bound (port 0, a port some other program holds).
    func receiver(for address: SocketAddress) -> Int32? {
        guard address.family == .ipv4, address.port != 0 else { return nil }
        if let fd = receivers[address] { return fd >= 0 ? fd : nil }
        if receivers.count >= 512 {
            for fd in receivers.values where fd >= 0 { close(fd) }
            receivers.removeAll(keepingCapacity: true)
        }
        var fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        check(fd >= 0, "socket: errno \(errno)")
        var bound = sockaddr_in()
        bound.sin_family = sa_family_t(AF_INET)
        bound.sin_port = in_port_t(UInt16(address.port).bigEndian)
        inet_pton(AF_INET, address.ip, &bound.sin_addr)
        // Connected to the server socket, so that only its replies arrive: another fuzzer
        // running at the same time sends to the same loopback addresses.
        var server = sockaddr_in()
        server.sin_family = sa_family_t(AF_INET)
        server.sin_port = in_port_t(UInt16(v4.localAddress.port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &server.sin_addr)
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let status = withUnsafePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        let connected = status == 0 && withUnsafePointer(to: &server) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        } == 0
        if !connected {
            close(fd)
            fd = -1
        }
        receivers[address] = fd
        return fd >= 0 ? fd : nil
    }

    /// The next datagram waiting on `fd`, waiting up to a second when `expected`; nil when
    /// none came.
    func take(from fd: Int32, expected: Bool) -> [UInt8]? {
        var count = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if count < 0, expected {
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&ready, 1, 1000)
            count = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        }
        return count >= 0 ? Array(reply[..<count]) : nil
    }
}

nonisolated(unsafe) let rig = Rig()

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
    let timeReply = withUnsafeBytes(of: TimeHandler.timestamp(secondsSince1970: seconds).bigEndian) { Array($0) }
    var sources: [SocketAddress: SourceUse] = [:]

    while !input.isAtEnd {
        let control = input.byte()
        let service = Service(rawValue: Int(control & 7) % Service.allCases.count)!
        let host = input.byte()
        var port = Int(input.byte()) << 8 | Int(input.byte())
        if control & 8 != 0 { port = refused[port % refused.count] }
        let advance = input.byte()
        if advance != 0 {
            let step: UInt64 = 1 << UInt64(advance % 64)
            clock.now = clock.now > UInt64.max - step ? UInt64.max : clock.now + step
        }
        let length = Int(control & 0x30) << 4 | Int(input.byte())
        let payload = input.payload(length)

        let isV6 = control & 0x80 != 0
        guard let socket = isV6 ? rig.v6 : rig.v4 else { continue }
        let sender: SocketAddress
        do {
            sender = try SocketAddress(ip: isV6 ? "::1" : "127.77.0.\(host)", port: port)
        } catch {
            fail("a loopback sender refused: \(error)")
        }
        let receiver = rig.receiver(for: sender)
        let source = sender.withPort(0)
        if sources[source] == nil { sources[source] = SourceUse(firstSeen: clock.now) }

        let before = socket.counters
        unsafe handlers[service.rawValue].received(RawSpan(_unsafeBytes: payload), from: sender, on: socket)
        let after = socket.counters
        let sent = after.sent - before.sent
        let failed = (after.sendTooLarge + after.sendDropped + after.sendRefused + after.sendFailed)
            - (before.sendTooLarge + before.sendDropped + before.sendRefused + before.sendFailed)
        let bytes = after.sentBytes - before.sentBytes
        check(sent + failed <= 1, "\(service) sent \(sent + failed) replies to one request")
        if refused.contains(port) || service == .discard {
            check(sent + failed == 0, "\(service) replied to \(sender) (a refused source port, or discard)")
        }
        if let receiver {
            let reply = rig.take(from: receiver, expected: sent == 1)
            check((reply != nil) == (sent == 1), "\(service): \(sent) sent but \(reply == nil ? "none" : "one") received at \(sender)")
            if let reply {
                check(reply.count == bytes, "\(service): \(reply.count) bytes received, \(bytes) sent")
                switch service {
                case .echo:
                    check(reply.elementsEqual(payload), "echo changed a datagram of \(payload.count) bytes")
                case .chargen:
                    check(reply.count % 74 == 0, "chargen sent part of a line")
                    for line in stride(from: 0, to: reply.count, by: 74) {
                        check(reply[line..<line + 72].allSatisfy { (0x20...0x7E).contains($0) }, "chargen: a character out of range")
                        check(reply[line + 72] == 13 && reply[line + 73] == 10, "chargen: a line without CRLF")
                    }
                case .qotd:
                    check(quotes.replies.contains(reply), "qotd sent something that is not a quote")
                case .daytime:
                    check(reply.suffix(2) == [13, 10], "daytime's line does not end in CRLF: \(reply)")
                case .time:
                    check(reply == timeReply, "time sent \(reply), not \(timeReply) for \(seconds)")
                case .discard:
                    break
                }
            }
            check(rig.take(from: receiver, expected: false) == nil, "\(service) sent a second reply to \(sender)")
        }
        if sent == 1 {
            switch service {
            case .echo: check(bytes == payload.count, "echo of \(payload.count) bytes sent \(bytes)")
            case .chargen: check(bytes == 444 && bytes <= 512, "chargen reply of \(bytes) bytes")
            case .qotd: check(bytes >= 1 && bytes <= 511, "qotd reply of \(bytes) bytes")
            case .daytime: check(bytes >= 2 && bytes <= DaytimeHandler.maxLineLength, "daytime reply of \(bytes) bytes")
            case .time: check(bytes == 4, "time reply of \(bytes) bytes")
            case .discard: break
            }
        }
        if sent + failed == 1 {
            sources[source]!.replies += 1
            sources[source]!.lastReply = clock.now
        }
    }

    // The rate limit: tokens start at the burst and refill at the rate; a source the full
    // table forgot starts again with a full burst.
    if options.isRateLimited {
        let forgotten = Double(replyGuard.counters.evictedSources)
        for (source, use) in sources where use.replies > 0 {
            let elapsed = Double(use.lastReply - use.firstSeen) / 1e9
            let bound = Double(options.burst) * (1 + forgotten) + options.repliesPerSecond * elapsed
            check(Double(use.replies) <= bound * (1 + 1e-9) + 1e-6,
                  "\(source.ip) got \(use.replies) replies; the limit allows \(bound) (burst \(options.burst), \(options.repliesPerSecond)/s over \(elapsed) s, \(forgotten) sources forgotten)")
        }
    }
    return 0
}
