#if canImport(Glibc)
import Glibc
#endif

import Synchronization

/// One request template, compiled before the run into literal bytes and variables, so a
/// request is written without building a string.
///
/// Variables: `{seq}` (the request's number on its connection), `{conn}` (the connection's
/// index), `{key}` (a decimal number in 0 ..< keyspace, one draw per request however often
/// it appears), `{value}` (`size` printable bytes), `{rand:A-B}` (a decimal number from A
/// to B). Escapes: `\r`, `\n`, `\t`, `\\`, `\xHH`; `{{` is a literal brace.
struct RequestTemplate: Sendable, Equatable {
    enum Piece: Sendable, Equatable {
        case literal([UInt8])
        case sequence, connection, key, value
        case random(ClosedRange<Int>)
    }

    let pieces: [Piece]
    /// The template's text as given (for messages and for comparing templates).
    let text: String

    var usesKey: Bool { pieces.contains(.key) }
    var usesValue: Bool { pieces.contains(.value) }
    /// True when the template is exactly `{value}`.
    var isValue: Bool { pieces == [.value] }

    /// Compiles `text`; the error says what is wrong where.
    static func parse(_ text: String) throws(BenchError) -> RequestTemplate {
        var pieces: [Piece] = []
        var literal: [UInt8] = []
        let bytes = Array(text.utf8)
        var index = 0
        func flush() {
            if !literal.isEmpty { pieces.append(.literal(literal)) }
            literal = []
        }
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\") {
                guard index + 1 < bytes.count else { throw BenchError("template '\(text)': a lone \\ at the end") }
                switch bytes[index + 1] {
                case UInt8(ascii: "r"): literal.append(13)
                case UInt8(ascii: "n"): literal.append(10)
                case UInt8(ascii: "t"): literal.append(9)
                case UInt8(ascii: "\\"): literal.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "x"):
                    guard index + 3 < bytes.count,
                        let value = UInt8(String(decoding: bytes[(index + 2)...(index + 3)], as: UTF8.self), radix: 16)
                    else { throw BenchError("template '\(text)': \\x needs two hex digits") }
                    literal.append(value)
                    index += 2
                default:
                    throw BenchError("template '\(text)': unknown escape \\\(Character(Unicode.Scalar(bytes[index + 1]))) (known: \\r \\n \\t \\\\ \\xHH)")
                }
                index += 2
            } else if byte == UInt8(ascii: "{") {
                if index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "{") {
                    literal.append(byte)
                    index += 2
                    continue
                }
                guard let close = bytes[index...].firstIndex(of: UInt8(ascii: "}")) else {
                    throw BenchError("template '\(text)': '{' without '}' (write {{ for a literal brace)")
                }
                let name = String(decoding: bytes[(index + 1)..<close], as: UTF8.self)
                flush()
                pieces.append(try variable(name, in: text))
                index = close + 1
            } else {
                literal.append(byte)
                index += 1
            }
        }
        flush()
        return RequestTemplate(pieces: pieces, text: text)
    }

    private static func variable(_ name: String, in text: String) throws(BenchError) -> Piece {
        switch name {
        case "seq": return .sequence
        case "conn": return .connection
        case "key": return .key
        case "value": return .value
        default:
            if name.hasPrefix("rand:") {
                let bounds = name.dropFirst(5).split(separator: "-", maxSplits: 1)
                if bounds.count == 2, let low = Int(bounds[0]), let high = Int(bounds[1]), low >= 0, low <= high {
                    return .random(low...high)
                }
                throw BenchError("template '\(text)': {\(name)} must be {rand:A-B} with 0 <= A <= B")
            }
            throw BenchError("template '\(text)': unknown variable {\(name)} (known: {seq} {conn} {key} {value} {rand:A-B})")
        }
    }

    /// Splits `text` on spaces into arguments, then compiles each: a variable never
    /// splits an argument, whatever its value holds.
    static func parseArguments(_ text: String) throws(BenchError) -> [RequestTemplate] {
        var arguments: [RequestTemplate] = []
        for word in text.split(separator: " ", omittingEmptySubsequences: true) {
            arguments.append(try parse(String(word)))
        }
        guard !arguments.isEmpty else { throw BenchError("the command '\(text)' is empty") }
        return arguments
    }

    /// The most bytes the template writes.
    func maxLength(limits: TemplateLimits) -> Int {
        pieces.reduce(0) { total, piece in
            switch piece {
            case .literal(let bytes): total + bytes.count
            case .sequence: total + 20
            case .connection: total + BenchRequestBuffer.decimalDigits(UInt(Swift.max(limits.connections, 1)))
            case .key: total + BenchRequestBuffer.decimalDigits(UInt(Swift.max(limits.keyspace - 1, 0)))
            case .value: total + limits.size
            case .random(let range): total + BenchRequestBuffer.decimalDigits(UInt(range.upperBound))
            }
        }
    }

    /// Writes the template with this request's values.
    @inline(__always)
    func write(into buffer: inout BenchRequestBuffer, values: inout TemplateValues) {
        for piece in pieces {
            switch piece {
            case .literal(let bytes): buffer.append(bytes)
            case .sequence: buffer.appendDecimal(values.context.sequence)
            case .connection: buffer.appendDecimal(values.context.connection)
            case .key: buffer.appendDecimal(values.key)
            case .value: values.writeValue(into: &buffer)
            case .random(let range): buffer.appendDecimal(values.random(in: range))
            }
        }
    }
}

/// The sizes that bound what a template writes.
struct TemplateLimits: Sendable {
    var connections: Int
    var keyspace: Int
    var size: Int
}

/// The values of one connection's requests: its random stream and key draws, and the
/// current request's key and context. One per codec, reused for every request.
struct TemplateValues {
    private var generator: SplitMix64
    private var keys: KeyChooser
    private let pool: ValuePool
    /// The current request's context.
    private(set) var context = BenchRequestContext(connection: 0, sequence: 0)
    /// The current request's key (drawn in ``begin(_:)``).
    private(set) var key = 0

    init(options: BenchOptions, connection: Int, seed: UInt64) {
        generator = SplitMix64(seed: seed)
        keys = KeyChooser(options.keyDistribution, keyspace: options.keyspace, connection: connection, connections: options.connections)
        pool = ValuePool.shared(seed: options.seed, size: options.size)
    }

    /// Starts a request: takes its context and draws its key.
    @inline(__always)
    mutating func begin(_ context: BenchRequestContext) {
        self.context = context
        key = keys.next(&generator)
    }

    @inline(__always)
    mutating func random(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(generator.next() % UInt64(range.upperBound - range.lowerBound + 1))
    }

    /// Writes the current request's `{value}`: the value of its key.
    @inline(__always)
    mutating func writeValue(into buffer: inout BenchRequestBuffer) {
        buffer.append(value)
    }

    /// The current request's `{value}`.
    @inline(__always)
    var value: UnsafeRawBufferPointer { pool.value(forKey: key) }

    /// True when `bytes` is the value `{value}` holds for `key`: what a GET of a key the
    /// run SET should find.
    func isValue(_ bytes: UnsafeRawBufferPointer, forKey key: Int) -> Bool {
        Bytes.equals(bytes, pool.value(forKey: key))
    }

    /// The eight bytes of `word`, each replaced by the ``alphabet`` letter its low six
    /// bits index, computed for all eight at once (SWAR): a byte x of 0 ... 63 becomes
    /// x + 97 ("a" ...), less 58 from 26 on ("A" ...), less 43 more from 52 ("0" ...),
    /// less 13 more at 62 ("-"), plus 49 at 63 ("_"). No step carries or borrows across
    /// bytes. It fills the ``ValuePool``, once per run.
    @inline(__always)
    static func printable(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let high: UInt64 = 0x8080_8080_8080_8080
        let x = word & (0x3F &* ones)
        // 1 in each byte whose x is at least `c`: 128 + x - c keeps its top bit then.
        func atLeast(_ c: UInt64) -> UInt64 { (((x | high) &- c &* ones) & high) &>> 7 }
        return x &+ 97 &* ones &- (58 &* atLeast(26) &+ 43 &* atLeast(52) &+ 13 &* atLeast(62)) &+ 49 &* atLeast(63)
    }

    /// The 64 letters of a value, none of them a space, `\r`, `\n` or a brace (URL-safe
    /// base64's): what ``printable(_:)`` computes, spelled out (a test holds the two together).
    static var alphabet: StaticString { "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_" }
}

/// The printable bytes every `{value}` of a run is cut from: ``spread`` bytes drawn from
/// the run's seed, and room for one value more; the value of a key is the `size` bytes
/// from an offset that the key picks. Writing a value is then a copy (callgrind: the 32
/// bytes drawn per request, eight at a time, were a fifth of a pipelined SET).
///
/// One per seed and size in the process, shared by every connection, read-only once made.
final class ValuePool: @unchecked Sendable {
    /// How many offsets there are: another key's value passes a GET's check with odds of
    /// about one in this.
    static let spread = 1 << 16

    let size: Int
    private let bytes: UnsafeMutableRawPointer

    private struct Key: Hashable {
        var seed: UInt64
        var size: Int
    }

    private static let pools = Mutex<[Key: ValuePool]>([:])

    /// The pool of `seed` and `size`, made the first time it is asked for.
    static func shared(seed: UInt64, size: Int) -> ValuePool {
        pools.withLock { pools in
            if let pool = pools[Key(seed: seed, size: size)] { return pool }
            if pools.count >= 8 { pools.removeAll() }  // a process that tries many sizes keeps only a few
            let pool = ValuePool(seed: seed, size: size)
            pools[Key(seed: seed, size: size)] = pool
            return pool
        }
    }

    init(seed: UInt64, size: Int) {
        self.size = size
        let count = ValuePool.spread + size
        bytes = .allocate(byteCount: (count + 7) & ~7, alignment: 8)
        var generator = SplitMix64(seed: seed ^ 0x5641_4C55_4553)
        for offset in stride(from: 0, to: count, by: 8) {
            bytes.storeBytes(of: TemplateValues.printable(generator.next()).littleEndian, toByteOffset: offset, as: UInt64.self)
        }
    }

    deinit {
        bytes.deallocate()
    }

    /// The value of `key`: `size` bytes that depend only on the key and the seed.
    @inline(__always)
    func value(forKey key: Int) -> UnsafeRawBufferPointer {
        // The top 16 bits of a Fibonacci hash: neighbouring keys land far apart.
        let offset = Int(truncatingIfNeeded: (UInt64(truncatingIfNeeded: key) &* 0x9E37_79B9_7F4A_7C15) &>> 48)
        return UnsafeRawBufferPointer(start: bytes + offset, count: size)
    }
}

/// How `{key}` is drawn.
public enum KeyDistribution: Sendable, Equatable, CustomStringConvertible {
    /// Every key equally likely.
    case uniform
    /// The connections walk the keyspace together: connection c's n-th key is
    /// `(c + n x connections) mod keyspace`, so a run of at least keyspace requests
    /// touches every key.
    case sequential
    /// Zipf with exponent s: key 0 the most frequent.
    case zipf(Double)

    /// Parses `uniform`, `sequential` or `zipf:S`.
    public init?(_ text: String) {
        switch text {
        case "uniform": self = .uniform
        case "sequential": self = .sequential
        default:
            guard text.hasPrefix("zipf:"), let exponent = Double(text.dropFirst(5)), exponent > 0, exponent.isFinite else { return nil }
            self = .zipf(exponent)
        }
    }

    public var description: String {
        switch self {
        case .uniform: "uniform"
        case .sequential: "sequential"
        case .zipf(let exponent): "zipf:\(exponent)"
        }
    }
}

/// Draws keys for one connection.
struct KeyChooser {
    private let keyspace: Int
    private let distribution: KeyDistribution
    private var nextSequential: Int
    private let stride: Int
    private let zipf: ZipfSampler?

    init(_ distribution: KeyDistribution, keyspace: Int, connection: Int, connections: Int) {
        self.keyspace = Swift.max(keyspace, 1)
        self.distribution = distribution
        nextSequential = connection % self.keyspace
        stride = Swift.max(connections, 1) % self.keyspace
        if case .zipf(let exponent) = distribution {
            zipf = ZipfSampler(elements: self.keyspace, exponent: exponent)
        } else {
            zipf = nil
        }
    }

    @inline(__always)
    mutating func next(_ generator: inout SplitMix64) -> Int {
        switch distribution {
        case .uniform:
            // A multiply for the range, not a 64-bit division (tens of cycles, per request);
            // the bias is below keyspace / 2^64.
            return Int(truncatingIfNeeded: generator.next().multipliedFullWidth(by: UInt64(keyspace)).high)
        case .sequential:
            let key = nextSequential
            nextSequential += stride
            if nextSequential >= keyspace { nextSequential -= keyspace }
            return key
        case .zipf:
            return zipf!.sample(&generator) - 1
        }
    }
}

/// Zipf samples in O(1) without a table: Hörmann and Derflinger's rejection-inversion
/// method (as in Apache Commons' ZipfRejectionInversionSampler). Ranks 1 ... elements.
struct ZipfSampler {
    private let elements: Int
    private let exponent: Double
    private let hIntegralX1: Double
    private let hIntegralElements: Double
    private let s: Double

    init(elements: Int, exponent: Double) {
        self.elements = elements
        self.exponent = exponent
        hIntegralX1 = ZipfSampler.hIntegral(1.5, exponent) - 1
        hIntegralElements = ZipfSampler.hIntegral(Double(elements) + 0.5, exponent)
        s = 2 - ZipfSampler.hIntegralInverse(ZipfSampler.hIntegral(2.5, exponent) - ZipfSampler.h(2, exponent), exponent)
    }

    func sample(_ generator: inout SplitMix64) -> Int {
        while true {
            let uniform = Double(generator.next() &>> 11) * 0x1p-53
            let u = hIntegralElements + uniform * (hIntegralX1 - hIntegralElements)
            let x = ZipfSampler.hIntegralInverse(u, exponent)
            var k = Int(x + 0.5)
            if k < 1 { k = 1 } else if k > elements { k = elements }
            if Double(k) - x <= s || u >= ZipfSampler.hIntegral(Double(k) + 0.5, exponent) - ZipfSampler.h(Double(k), exponent) {
                return k
            }
        }
    }

    private static func h(_ x: Double, _ exponent: Double) -> Double { exp(-exponent * log(x)) }

    private static func hIntegral(_ x: Double, _ exponent: Double) -> Double {
        let logX = log(x)
        return helper2((1 - exponent) * logX) * logX
    }

    private static func hIntegralInverse(_ x: Double, _ exponent: Double) -> Double {
        var t = x * (1 - exponent)
        if t < -1 { t = -1 }
        return exp(helper1(t) * x)
    }

    /// log(1 + x) / x, accurate near 0.
    private static func helper1(_ x: Double) -> Double {
        abs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x))
    }

    /// (exp(x) - 1) / x, accurate near 0.
    private static func helper2(_ x: Double) -> Double {
        abs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x * (1.0 / 3) * (1 + 0.25 * x))
    }
}
