// Micro-benchmarks for issue 3 (framing): decode throughput of every built-in framer,
// and heap allocations per frame in steady state.
//
//   swift package --package-path Benchmarks/swift benchmark            # per frame
//   swift package --package-path Benchmarks/swift benchmark --scale    # per 1000 frames
//   swift package --package-path Benchmarks/swift benchmark --filter 'adapter.*' --allocation-stacks
//
// Every benchmark iteration handles `frameCount` (1000) frames and runs with
// scalingFactor .kilo, so the starred (*) figures of the default output are per frame
// (ns per frame, allocations per frame, rounded to integers) and throughput is frames
// per second. `--scale` shows the totals per iteration instead: exact allocation
// counts per 1000 frames. Each frame is 32 bytes on the wire, so bytes/s = frames/s x 32.
//
// - `decode/F`: the framer F finds every frame of a 32,000-byte buffer already in
//   memory, driven the way FramedConnection.deliver(from:) drove it at fd2a9bd (a copy
//   of that loop: the framer stored as `any Framer` and called in place, nextFrame on
//   the rest of the buffer, the payload handed to a handler existential as a RawSpan).
//   Since 69e52aa FramedConnection runs built-in framers through an engine specialized
//   for their type (internal to ReactorFraming), and only framers from other modules
//   through `any Framer`: `decode/F` is now the cost of the path a custom framer takes.
// - `decode-concrete/F`: the same loop over the concrete framer type (no existential,
//   no handler call): what the framer itself costs, and close to what the specialized
//   engine does for built-in framers.
// - `control: decode+copyBytes/line`: copies each frame into an Array, so it must show
//   1 allocation per frame: proves the allocation counter is live.
// - `decode+encode/F`: decode as above, and for each frame what send(frame:) does
//   before the socket: encodeHeader into a stack buffer, then header, payload and
//   trailer copied into a preallocated output buffer (as a batched write queues them).
// - `adapter/F over loopback`: the real path. A ReactorThread runs `reactor serve echo
//   --framing F`'s handler (FramedConnection + FramedEchoHandler) on 127.0.0.1; the
//   benchmark thread sends 1000 frames in one send() and reads the 32,000 echoed bytes
//   back. mallocCountTotal counts every thread's allocations (the interposer is
//   process-wide), so it covers Connection.readable, FramedConnection.received, the
//   framer, the handler, send(frame:) and the batched write.
import Benchmark
import ReactorCore
import ReactorFraming
import ReactorServices

#if canImport(Glibc)
import Glibc
#endif

/// Frames per benchmark iteration; with scalingFactor .kilo the output is per frame.
let frameCount = 1000
/// Bytes per frame on the wire, header and trailer included.
let frameBytes = 32

/// A framer under test: how to build it, and one 32-byte frame in its wire format.
struct FramerCase: @unchecked Sendable {
    let name: String
    let framing: Framing
    let frame: [UInt8]

    func makeFramer() -> any Framer { framing.makeFramer() }

    /// `frameCount` frames back to back, each with a different payload.
    func stream() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(frameCount * frame.count)
        for index in 0..<frameCount {
            var copy = frame
            // Vary a payload byte (never a delimiter, digit position or header byte).
            let at = framing == .netstring ? 5 : framing == .lengthPrefix(.four) ? 6 : 2
            copy[at] = UInt8(ascii: "a") + UInt8(index % 26)
            bytes += copy
        }
        return bytes
    }
}

func payload(_ count: Int) -> [UInt8] {
    (0..<count).map { UInt8(ascii: "A") + UInt8($0 % 26) }
}

let cases: [FramerCase] = [
    FramerCase(name: "line", framing: .line, frame: payload(31) + [0x0A]),
    FramerCase(name: "crlf", framing: .crlf, frame: payload(30) + [0x0D, 0x0A]),
    FramerCase(name: "int32", framing: .lengthPrefix(.four), frame: [0, 0, 0, 28] + payload(28)),
    FramerCase(name: "netstring", framing: .netstring, frame: Array("28:".utf8) + payload(28) + [UInt8(ascii: ",")]),
    FramerCase(name: "fixed:32", framing: .fixed(32), frame: payload(32)),
]

// MARK: - The decode loop, as FramedConnection runs it

protocol FrameSink: AnyObject {
    func received(frame: RawSpan, on driver: FramingDriver)
}

/// FramedConnection's delivery loop without the socket: a deliberate copy of its code as
/// of commit fd2a9bd, kept on purpose (a duplicate finder pairs it with
/// FramedConnection.swift; do not fold the two together). It measures the `any Framer`
/// path, which FramedConnection still takes for framers defined outside ReactorFraming:
/// the framer stored as `any Framer` and called in place, the trailer in raw storage,
/// thread-confined state with exclusivity checks off, the same per-frame checks, the
/// handler called through an existential. FramedConnection's own loop has since moved
/// to an engine specialized per built-in framer, so this copy does not follow it.
final class FramingDriver {
    var framer: any Framer {
        get { activeFramer }
        set {
            activeFramer = newValue
            trailer = FramingDriver.copy(newValue.trailer, replacing: trailer)
        }
    }
    @exclusivity(unchecked) private var activeFramer: any Framer
    let handler: any FrameSink
    @exclusivity(unchecked) private var trailer: UnsafeRawBufferPointer
    @exclusivity(unchecked) private var isDelivering = false
    @exclusivity(unchecked) private var isDeliveryPaused = false
    @exclusivity(unchecked) private var hasFailed = false
    @exclusivity(unchecked) private var missingBytes = 1
    let phase = Phase()

    final class Phase { var isOpen = true }

    /// Where replies go: a preallocated buffer standing in for the output queue.
    let output: UnsafeMutableRawBufferPointer
    var outputEnd = 0

    init(framer: any Framer, handler: any FrameSink) {
        self.activeFramer = framer
        self.handler = handler
        self.trailer = FramingDriver.copy(framer.trailer, replacing: nil)
        output = .allocate(byteCount: 4 * frameCount * frameBytes, alignment: 16)
    }

    deinit {
        output.deallocate()
        trailer.deallocate()
    }

    private static func copy(_ bytes: [UInt8], replacing old: UnsafeRawBufferPointer?) -> UnsafeRawBufferPointer {
        old?.deallocate()
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
        storage.copyBytes(from: bytes)
        return UnsafeRawBufferPointer(storage)
    }

    /// FramedConnection.deliver(from:), minus the connection.
    func deliver(from bytes: UnsafeRawBufferPointer) -> Int {
        isDelivering = true
        defer { isDelivering = false }
        var offset = 0
        while offset < bytes.count, !isDeliveryPaused, !hasFailed, phase.isOpen {
            let rest = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(rebasing: bytes[offset...]))
            let found: FrameSearch
            do {
                found = try activeFramer.nextFrame(in: rest)
            } catch {
                fatalError("\(error)")
            }
            guard case .frame(let payload, let frameLength) = found else {
                if rest.byteCount - 2 * FramerLimits.maxHeaderLength > activeFramer.maxFrameLength {
                    fatalError("frame too long")
                }
                if case .needMore(let atLeast) = found { missingBytes = atLeast }
                break
            }
            precondition(
                frameLength > 0 && frameLength <= rest.byteCount && payload.lowerBound >= 0 && payload.upperBound <= frameLength,
                "bad frame")
            offset += frameLength
            handler.received(frame: rest.extracting(payload), on: self)
        }
        return offset
    }

    /// FramedConnection.send(frame:) up to the socket: the header encoded on the stack,
    /// then header, payload and trailer copied into the output buffer (as a batched
    /// write queues them).
    func send(frame payload: RawSpan) throws(FramingError) {
        try withUnsafeTemporaryAllocation(byteCount: FramerLimits.maxHeaderLength, alignment: 8) {
            (header: UnsafeMutableRawBufferPointer) throws(FramingError) in
            let headerLength = try FramingDriver.encodeHeader(&activeFramer, for: payload, into: header)
            payload.withUnsafeBytes { body in
                append(UnsafeRawBufferPointer(rebasing: header[..<headerLength]))
                append(body)
                append(trailer)
            }
        }
    }

    @inline(__always)
    private static func encodeHeader(
        _ framer: inout any Framer, for payload: RawSpan, into header: UnsafeMutableRawBufferPointer
    ) throws(FramingError) -> Int {
        try framer.encodeHeader(for: payload, into: header)
    }

    private func append(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        if outputEnd + bytes.count > output.count { outputEnd = 0 }
        (output.baseAddress! + outputEnd).copyMemory(from: base, byteCount: bytes.count)
        outputEnd += bytes.count
    }
}

/// A control for the allocation counter: copies every frame into an Array, which
/// must show as one allocation per frame.
final class CopyingSink: FrameSink {
    var bytes = 0
    func received(frame: RawSpan, on driver: FramingDriver) {
        bytes &+= frame.copyBytes().count
    }
}

/// Receives frames and only looks at them.
final class CountingSink: FrameSink {
    var bytes = 0
    func received(frame: RawSpan, on driver: FramingDriver) {
        bytes &+= frame.byteCount
    }
}

/// Receives frames and sends each one back, like FramedEchoHandler.
final class EchoSink: FrameSink {
    func received(frame: RawSpan, on driver: FramingDriver) {
        _ = try? driver.send(frame: frame)
    }
}

/// The decode loop over a concrete framer: no existential, no property observer.
@inline(never)
func decodeConcrete<F: Framer>(_ framer: inout F, _ bytes: UnsafeRawBufferPointer) -> (frames: Int, payloadBytes: Int) {
    var offset = 0
    var frames = 0
    var payloadBytes = 0
    while offset < bytes.count {
        let rest = unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(rebasing: bytes[offset...]))
        guard case .frame(let payload, let frameLength) = try! framer.nextFrame(in: rest) else { break }
        offset += frameLength
        frames += 1
        payloadBytes &+= rest.extracting(payload).byteCount
    }
    return (frames, payloadBytes)
}

func decodeConcrete(_ framer: any Framer, _ bytes: UnsafeRawBufferPointer) -> (frames: Int, payloadBytes: Int) {
    func open<F: Framer>(_ framer: F) -> (frames: Int, payloadBytes: Int) {
        var framer = framer
        return decodeConcrete(&framer, bytes)
    }
    return open(framer)
}

// MARK: - The real adapter over loopback

/// A blocking client socket connected to a reactor thread serving framed echo.
final class LoopbackEcho: @unchecked Sendable {
    let thread: ReactorThread
    let fd: Int32
    let request: UnsafeMutableRawBufferPointer
    let reply: UnsafeMutableRawBufferPointer

    init(_ framerCase: FramerCase) throws {
        let framing = framerCase.framing
        let (thread, port) = try ReactorThread.start { reactor in
            try reactor.listen(host: "127.0.0.1", port: 0) { _ in
                FramedConnection(framer: framing.makeFramer(), handler: FramedEchoHandler())
            }.address.port
        }
        self.thread = thread
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0, "socket: \(errno)")
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        precondition(rc == 0, "connect to 127.0.0.1:\(port): errno \(errno)")
        self.fd = fd
        let stream = framerCase.stream()
        request = .allocate(byteCount: stream.count, alignment: 16)
        request.copyBytes(from: stream)
        reply = .allocate(byteCount: stream.count, alignment: 16)
    }

    /// One round: all frames in one send, then read until every byte is back.
    func roundTrip() {
        var sent = 0
        while sent < request.count {
            let n = send(fd, request.baseAddress! + sent, request.count - sent, Int32(MSG_NOSIGNAL))
            precondition(n > 0, "send: errno \(errno)")
            sent += n
        }
        var received = 0
        while received < reply.count {
            let n = read(fd, reply.baseAddress! + received, reply.count - received)
            precondition(n > 0, "read: \(n) errno \(errno)")
            received += n
        }
        precondition(memcmp(request.baseAddress!, reply.baseAddress!, reply.count) == 0, "echo differs")
    }

    func stop() {
        close(fd)
        thread.stop()
        request.deallocate()
        reply.deallocate()
    }
}

final class Holder<T>: @unchecked Sendable {
    var value: T?
}

// MARK: - Benchmarks

/// The measured part of a decode benchmark: one pass of `driver` over `input`, that is
/// scaledIterations.count (1000) frames, all of which it must use.
@inline(__always)
func measurePass(_ benchmark: Benchmark, _ driver: FramingDriver, over input: UnsafeRawBufferPointer) {
    benchmark.startMeasurement()
    let used = driver.deliver(from: input)
    precondition(used == input.count)
    benchmark.stopMeasurement()
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        warmupIterations: 100,
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 50_000
    )

    precondition(BenchmarkScalingFactor.kilo.rawValue == frameCount, "one iteration is one pass over the frames")
    for framerCase in cases {
        let stream = framerCase.stream()
        precondition(stream.count == frameCount * frameBytes, "\(framerCase.name): frames are not \(frameBytes) bytes")
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: stream.count, alignment: 16)
        buffer.copyBytes(from: stream)
        let bytes = UnsafeRawBufferPointer(buffer)
        nonisolated(unsafe) let input = bytes

        Benchmark("decode/\(framerCase.name)") { benchmark in
            let driver = FramingDriver(framer: framerCase.makeFramer(), handler: CountingSink())
            measurePass(benchmark, driver, over: input)
            blackHole((driver.handler as! CountingSink).bytes)
        }

        Benchmark("decode-concrete/\(framerCase.name)") { benchmark in
            let framer = framerCase.makeFramer()
            benchmark.startMeasurement()
            let (frames, payloadBytes) = decodeConcrete(framer, input)
            precondition(frames == frameCount)
            blackHole(payloadBytes)
        }

        if framerCase.name == "line" {
            Benchmark("control: decode+copyBytes/\(framerCase.name) (1 allocation per frame)") { benchmark in
                let driver = FramingDriver(framer: framerCase.makeFramer(), handler: CopyingSink())
                measurePass(benchmark, driver, over: input)
                blackHole((driver.handler as! CopyingSink).bytes)
            }
        }

        Benchmark("decode+encode/\(framerCase.name)") { benchmark in
            let driver = FramingDriver(framer: framerCase.makeFramer(), handler: EchoSink())
            measurePass(benchmark, driver, over: input)
            blackHole(driver.outputEnd)
        }
    }

    for framerCase in cases where ["line", "int32"].contains(framerCase.name) {
        let echo = Holder<LoopbackEcho>()
        Benchmark(
            "adapter/\(framerCase.name) over loopback",
            configuration: .init(
                metrics: [.wallClock, .throughput, .mallocCountTotal, .syscalls],
                timeUnits: .nanoseconds,
                warmupIterations: 200,
                scalingFactor: .kilo,
                maxDuration: .seconds(3),
                maxIterations: 20_000
            ),
            closure: { benchmark in
                echo.value!.roundTrip()
            },
            setup: { echo.value = try LoopbackEcho(framerCase) },
            teardown: {
                echo.value?.stop()
                echo.value = nil
            }
        )
    }
}
