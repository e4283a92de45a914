import ReactorCore
import ReactorFraming

/// A request/response protocol as `reactor bench` speaks it: what to send, how to cut
/// responses out of the stream, and whether a response is right.
///
/// Every built-in protocol (echo framings, UDP echo, Redis, memcached, HTTP/1.1, custom
/// templates) is one of these; a protocol of your own is too: implement the four
/// requirements and pass a ``BenchCodecFactory`` in ``BenchOptions/codec``.
/// docs/bench.md has a complete example.
///
/// Each connection (or UDP socket) gets its own codec, made by the factory, used only on
/// that connection's reactor thread. The per-request methods are the client's hot path:
/// they should not allocate (write into the buffer they are given, keep scratch space in
/// the codec).
public protocol BenchCodec {
    /// The most bytes ``encodeRequest(into:context:)`` writes: the room it is given.
    var maxRequestLength: Int { get }

    /// The framer that cuts whole responses out of a TCP stream, one per connection;
    /// each frame's payload goes to ``check(response:request:tag:)``. Not used over UDP,
    /// where a datagram is one response.
    func makeResponseFramer() -> any Framer

    /// Writes the next request into `request` (at most ``maxRequestLength`` bytes) and may
    /// set its ``BenchRequestBuffer/tag``, which comes back with the response.
    mutating func encodeRequest(into request: inout BenchRequestBuffer, context: BenchRequestContext)

    /// Judges one response: the payload of a frame, or one datagram. `request` is what
    /// ``encodeRequest(into:context:)`` wrote for it, `tag` the tag it set.
    mutating func check(response: RawSpan, request: RawSpan, tag: UInt64) -> BenchOutcome

    /// UDP only: true when `datagram` answers `request`. A client with several requests
    /// in flight gives a datagram to the oldest that it answers; one that answers none
    /// (a reply to a request already counted lost) is ignored. The default, true, pairs
    /// datagrams with requests in order.
    func datagram(_ datagram: RawSpan, answers request: RawSpan, tag: UInt64) -> Bool
}

extension BenchCodec {
    public func datagram(_ datagram: RawSpan, answers request: RawSpan, tag: UInt64) -> Bool { true }
}

/// Where a request is built: fixed room (``BenchCodec/maxRequestLength`` bytes) owned by
/// the client, written front to back. Appending past the room is a programming error in
/// the codec and stops the process.
public struct BenchRequestBuffer {
    private let storage: UnsafeMutableRawBufferPointer
    /// Bytes written so far.
    public private(set) var count = 0
    /// A number the codec keeps with the request (a key, a command index); it comes back
    /// with the response in ``BenchCodec/check(response:request:tag:)``.
    public var tag: UInt64 = 0

    init(storage: UnsafeMutableRawBufferPointer) {
        self.storage = storage
    }

    /// Room left.
    public var remaining: Int { storage.count - count }

    /// Where the next byte goes: for a codec that checks the room for a whole request
    /// once, writes it through the pointer and then calls ``wrote(_:)``.
    var end: UnsafeMutableRawPointer { storage.baseAddress! + count }

    /// Counts `bytes` written at ``end``, which the caller made sure fit.
    @inline(__always)
    mutating func wrote(_ bytes: Int) {
        count &+= bytes
    }

    /// Calls `body` with the bytes written so far.
    public func withBytes<Result>(_ body: (RawSpan) -> Result) -> Result {
        body(unsafe RawSpan(_unsafeBytes: UnsafeRawBufferPointer(rebasing: storage[..<count])))
    }

    /// Appends one byte.
    @inline(__always)
    public mutating func append(_ byte: UInt8) {
        precondition(count < storage.count, "BenchRequestBuffer: request longer than maxRequestLength (\(storage.count))")
        storage[count] = byte
        count += 1
    }

    /// Appends bytes.
    @inline(__always)
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        precondition(bytes.count <= remaining, "BenchRequestBuffer: request longer than maxRequestLength (\(storage.count))")
        BenchRequestBuffer.copy(bytes.count, from: bytes.baseAddress!, to: storage.baseAddress! + count)
        count += bytes.count
    }

    /// Copies `count` bytes between buffers that do not overlap. Up to 32 bytes (a
    /// template's literal runs, RESP's headers, a short value) take two loads and two
    /// stores, which may overlap, instead of a call to memmove.
    @inline(__always)
    static func copy(_ count: Int, from source: UnsafeRawPointer, to out: UnsafeMutableRawPointer) {
        if count > 16 {
            guard count <= 32 else {
                out.copyMemory(from: source, byteCount: count)
                return
            }
            let head = source.loadUnaligned(as: SIMD16<UInt8>.self)
            let tail = source.loadUnaligned(fromByteOffset: count &- 16, as: SIMD16<UInt8>.self)
            out.storeBytes(of: head, as: SIMD16<UInt8>.self)
            out.storeBytes(of: tail, toByteOffset: count &- 16, as: SIMD16<UInt8>.self)
        } else if count >= 8 {
            let head = source.loadUnaligned(as: UInt64.self)
            let tail = source.loadUnaligned(fromByteOffset: count &- 8, as: UInt64.self)
            out.storeBytes(of: head, as: UInt64.self)
            out.storeBytes(of: tail, toByteOffset: count &- 8, as: UInt64.self)
        } else if count >= 4 {
            let head = source.loadUnaligned(as: UInt32.self)
            let tail = source.loadUnaligned(fromByteOffset: count &- 4, as: UInt32.self)
            out.storeBytes(of: head, as: UInt32.self)
            out.storeBytes(of: tail, toByteOffset: count &- 4, as: UInt32.self)
        } else {
            for offset in 0..<count {
                out.storeBytes(of: source.load(fromByteOffset: offset, as: UInt8.self), toByteOffset: offset, as: UInt8.self)
            }
        }
    }

    /// Appends bytes.
    public mutating func append(_ bytes: RawSpan) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Appends an array's bytes (an array made before the run: appending one does not
    /// allocate).
    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0) }
    }

    /// Appends a static string's UTF-8.
    @inline(__always)
    public mutating func append(_ text: StaticString) {
        append(UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// Appends `value` in decimal, without allocating.
    @inline(__always)
    public mutating func appendDecimal(_ value: Int) {
        if value < 0 { append(UInt8(ascii: "-")) }
        appendDecimal(value.magnitude, digits: BenchRequestBuffer.decimalDigits(value.magnitude))
    }

    /// Appends `value`, whose decimal form has `digits` digits (a caller that needed the
    /// count first, for a length header, does not count them again).
    @inline(__always)
    mutating func appendDecimal(_ value: UInt, digits: Int) {
        precondition(digits <= remaining, "BenchRequestBuffer: request longer than maxRequestLength (\(storage.count))")
        BenchRequestBuffer.writeDecimal(value, digits: digits, to: storage.baseAddress! + count)
        count += digits
    }

    /// Writes the `digits` decimal digits of `value` at `out`, two at a time from a table
    /// (half the divisions of one digit at a time).
    @inline(__always)
    static func writeDecimal(_ value: UInt, digits: Int, to out: UnsafeMutableRawPointer) {
        let pairs = UnsafeRawPointer(decimalPairs.utf8Start)
        var rest = value
        var position = digits
        while rest >= 100 {
            let pair = Int(truncatingIfNeeded: rest % 100) &* 2
            rest /= 100
            position &-= 2
            out.storeBytes(of: pairs.loadUnaligned(fromByteOffset: pair, as: UInt16.self), toByteOffset: position, as: UInt16.self)
        }
        if rest >= 10 {
            out.storeBytes(of: pairs.loadUnaligned(fromByteOffset: Int(truncatingIfNeeded: rest) &* 2, as: UInt16.self), as: UInt16.self)
        } else {
            out.storeBytes(of: UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: rest), as: UInt8.self)
        }
    }

    /// "00" to "99", each number's two digits.
    static var decimalPairs: StaticString {
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"
    }

    /// Overwrites `bytes` at `offset`, inside what is written already.
    mutating func overwrite(at offset: Int, with bytes: UnsafeRawBufferPointer) {
        precondition(offset >= 0 && offset + bytes.count <= count)
        guard !bytes.isEmpty else { return }
        (storage.baseAddress! + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    }

    /// The writable bytes from `offset` to the end of what is written.
    func written(from offset: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: storage[offset..<count])
    }

    /// Digits of `value` in decimal: one comparison per digit, no division.
    @inline(__always)
    static func decimalDigits(_ value: UInt) -> Int {
        var digits = 1
        var threshold: UInt = 10
        while value >= threshold {
            digits += 1
            if digits == 20 { return 20 }  // 10^20 does not fit in a UInt
            threshold &*= 10
        }
        return digits
    }
}

/// What a request is for: the numbers templates draw on.
public struct BenchRequestContext: Sendable {
    /// The connection's index, 0 ..< connections, across all threads.
    public var connection: Int
    /// The request's number on its connection (reconnects included), from 0.
    public var sequence: Int
}

/// The verdict on one response.
public struct BenchOutcome: Sendable, Equatable {
    /// What the response was.
    public enum Verdict: UInt8, Sendable {
        /// Right: it counts in `requests`.
        case ok
        /// Not what the request asked for: counted as `wrong_response`.
        case wrongResponse
        /// A well-formed error reply (a Redis `-ERR`, memcached `SERVER_ERROR`): counted as
        /// `server_error`.
        case serverError
        /// An HTTP status of 400 or more: counted as `http_status`.
        case httpStatus
    }

    /// A cache lookup's result, for `hits` and `misses`.
    public enum Lookup: UInt8, Sendable {
        /// Not a lookup (a write, or a protocol without a cache).
        case none
        /// The key was found.
        case hit
        /// The key was not found.
        case miss
    }

    /// Whether the response passes, and if not, which error it counts as.
    public var verdict: Verdict
    /// The cache lookup's result, when the request was one.
    public var lookup: Lookup = .none
    /// The HTTP status code (0 when the protocol has none): counted in `status_codes`.
    public var statusCode: UInt16 = 0
    /// The server says it closes the connection after this response (HTTP
    /// `Connection: close`): the client sends nothing more on it and reconnects, and the
    /// close is not an error.
    public var closesConnection = false

    /// An outcome; only the verdict is needed for most protocols.
    public init(verdict: Verdict, lookup: Lookup = .none, statusCode: UInt16 = 0, closesConnection: Bool = false) {
        self.verdict = verdict
        self.lookup = lookup
        self.statusCode = statusCode
        self.closesConnection = closesConnection
    }

    /// A right response.
    public static let ok = BenchOutcome(verdict: .ok)
    /// A right response to a lookup that found its key.
    public static let hit = BenchOutcome(verdict: .ok, lookup: .hit)
    /// A right response to a lookup that did not (not an error).
    public static let miss = BenchOutcome(verdict: .ok, lookup: .miss)
    /// A response that does not answer the request.
    public static let wrongResponse = BenchOutcome(verdict: .wrongResponse)
    /// A well-formed error reply.
    public static let serverError = BenchOutcome(verdict: .serverError)

    /// True when the response counts in `requests`.
    public var passed: Bool { verdict == .ok }
}

/// Makes one codec per connection: how ``BenchOptions/codec`` names a protocol of your own.
public struct BenchCodecFactory: Sendable, Equatable {
    /// The name the summary and the JSON show as the protocol.
    public let name: String
    /// Requests over TCP (false: one datagram each way over UDP).
    public let isStream: Bool
    let make: @Sendable (BenchConnectionInfo) -> any BenchCodec

    /// A factory named `name` whose `make` returns a new codec for a connection.
    public init(name: String, isStream: Bool = true, make: @escaping @Sendable (BenchConnectionInfo) -> any BenchCodec) {
        self.name = name
        self.isStream = isStream
        self.make = make
    }

    public static func == (lhs: BenchCodecFactory, rhs: BenchCodecFactory) -> Bool {
        lhs.name == rhs.name && lhs.isStream == rhs.isStream
    }
}

/// What a factory knows about the connection it makes a codec for.
public struct BenchConnectionInfo: Sendable {
    /// The connection's index, 0 ..< connections.
    public var index: Int
    /// A seed for the connection's request content, different per connection and per
    /// ``BenchOptions/seed``.
    public var seed: UInt64
    /// The run's options (size, keyspace, ...).
    public var options: BenchOptions
}
