import ReactorFraming

/// How `reactor bench` frames requests and recognises responses.
///
/// Every protocol is request/response: one request in, one response out, and the
/// response must equal the request byte for byte (the targets are echo servers of the
/// given framing). Requests carry varying content, so a server that answers with the
/// wrong request's bytes, or out of order, is caught.
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

    public var description: String { rawValue }

    /// True for the stream protocols, which run over TCP connections.
    public var isStream: Bool { self != .udp }

    /// The framer that cuts responses out of the stream; nil for UDP.
    func responseFramer(size: Int) -> (any Framer)? {
        switch self {
        case .raw: FixedLengthFramer(length: size)
        case .line: DelimiterFramer.line(maxFrameLength: Swift.max(size, 1) * 2)
        case .crlf: DelimiterFramer.crlf(maxFrameLength: Swift.max(size, 1) * 2)
        case .int32: LengthPrefixFramer(width: .four, maxFrameLength: Swift.max(size, 1) * 2)
        case .netstring: NetstringFramer(maxFrameLength: Swift.max(size, 1) * 2)
        case .udp: nil
        }
    }

    /// The framer that encodes requests (its header and trailer around the payload); nil
    /// when requests are sent as they are.
    var requestFramer: (any Framer)? {
        switch self {
        case .raw, .udp: nil
        default: responseFramer(size: FramerLimits.defaultMaxFrameLength)
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
