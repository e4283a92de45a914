/// The built-in framings by name, as the `reactor` command spells them
/// (`--framing line`, `int32`, `fixed:128`, ...).
public enum Framing: Sendable, Hashable, CustomStringConvertible {
    /// No framing: bytes as they come.
    case raw
    /// `\n`-terminated lines.
    case line
    /// `\r\n`-terminated lines.
    case crlf
    /// A big-endian length prefix of 1, 2, 4 or 8 bytes (Twisted's IntNStringReceiver).
    case lengthPrefix(LengthPrefixFramer.Width)
    /// `<length>:<payload>,`
    case netstring
    /// Records of exactly this many bytes.
    case fixed(Int)

    /// Every spelling ``init(parsing:)`` accepts, for help and error messages.
    public static let spellings = ["raw", "line", "crlf", "int8", "int16", "int32", "int64", "netstring", "fixed:N"]

    /// Parses a name: `raw`, `line`, `crlf`, `int8`, `int16`, `int32`, `int64`,
    /// `netstring`, or `fixed:N` with N a positive number of bytes. Nil for anything else.
    public init?(parsing text: String) {
        switch text {
        case "raw": self = .raw
        case "line": self = .line
        case "crlf": self = .crlf
        case "int8": self = .lengthPrefix(.one)
        case "int16": self = .lengthPrefix(.two)
        case "int32": self = .lengthPrefix(.four)
        case "int64": self = .lengthPrefix(.eight)
        case "netstring": self = .netstring
        default:
            guard text.hasPrefix("fixed:"), let length = Int(text.dropFirst(6)), length > 0 else { return nil }
            self = .fixed(length)
        }
    }

    /// A framer for this framing with the given limit (``fixed(_:)`` frames are always
    /// their own length; ``lengthPrefix(_:)`` limits are capped by what the field holds).
    public func makeFramer(maxFrameLength: Int = FramerLimits.defaultMaxFrameLength) -> any Framer {
        switch self {
        case .raw: RawFramer(maxFrameLength: maxFrameLength)
        case .line: DelimiterFramer.line(maxFrameLength: maxFrameLength)
        case .crlf: DelimiterFramer.crlf(maxFrameLength: maxFrameLength)
        case .lengthPrefix(let width): LengthPrefixFramer(width: width, maxFrameLength: maxFrameLength)
        case .netstring: NetstringFramer(maxFrameLength: maxFrameLength)
        case .fixed(let length): FixedLengthFramer(length: length)
        }
    }

    public var description: String {
        switch self {
        case .raw: "raw"
        case .line: "line"
        case .crlf: "crlf"
        case .lengthPrefix(let width): "int\(width.rawValue * 8)"
        case .netstring: "netstring"
        case .fixed(let length): "fixed:\(length)"
        }
    }
}
