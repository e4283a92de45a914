import ReactorFraming

/// The protocols `reactor bench` speaks; each is a ``BenchCodec``.
///
/// The echo protocols (`raw` ... `udp`) expect every response to equal its request byte
/// for byte (the targets are echo servers of that framing). `redis`, `memcached` and
/// `http` speak those protocols to real servers; `custom` sends templates with a framing
/// and a match of your choice (`CustomCodec`).
public enum BenchProtocol: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Fixed-size requests of `size` bytes; a response is the next `size` bytes.
    case raw
    /// `size` bytes of payload and `\n`; a response is one line.
    case line
    /// `size` bytes of payload and `\r\n`; a response is one line.
    case crlf
    /// A 4-byte big-endian length and `size` bytes; a response is one such frame.
    case int32
    /// `<size>:<payload>,`; a response is one netstring.
    case netstring
    /// One datagram of `size` bytes per request, one datagram back.
    case udp
    /// RESP2 commands from ``BenchOptions/commands`` (`RedisCodec`).
    case redis
    /// memcached's text protocol, commands from ``BenchOptions/commands`` (`MemcachedCodec`).
    case memcached
    /// HTTP/1.1 with keep-alive (`HTTPCodec`).
    case http
    /// `custom`: a template, a framing and a match (`CustomCodec`).
    case custom

    public var description: String { rawValue }

    /// True for the echo protocols, whose responses repeat their requests.
    public var isEcho: Bool {
        switch self {
        case .raw, .line, .crlf, .int32, .netstring, .udp: true
        case .redis, .memcached, .http, .custom: false
        }
    }

    /// The framer that cuts an echo protocol's responses out of the stream.
    func echoResponseFramer(size: Int) -> any Framer {
        switch self {
        case .raw: FixedLengthFramer(length: size)
        case .line: DelimiterFramer.line(maxFrameLength: Swift.max(size, 1) * 2)
        case .crlf: DelimiterFramer.crlf(maxFrameLength: Swift.max(size, 1) * 2)
        case .int32: LengthPrefixFramer(width: .four, maxFrameLength: Swift.max(size, 1) * 2)
        case .netstring: NetstringFramer(maxFrameLength: Swift.max(size, 1) * 2)
        default: RawFramer()
        }
    }

    /// The framer that encodes an echo protocol's requests (its header and trailer around
    /// the payload); nil when requests are sent as they are.
    var echoRequestFramer: (any Framer)? {
        switch self {
        case .line, .crlf, .int32, .netstring: echoResponseFramer(size: FramerLimits.defaultMaxFrameLength)
        default: nil
        }
    }

    /// The smallest payload the protocol can carry: UDP requests begin with an 8-byte
    /// sequence number that matches a datagram to its request; raw needs at least a byte.
    var minimumSize: Int {
        switch self {
        case .udp: 8
        case .raw: 1
        default: 0
        }
    }
}
