import Glibc

/// The quotes the RFC 865 quote-of-the-day service gives out, each one checked to fit a
/// reply of under 512 bytes.
///
/// Every line of a quote ends in CRLF in the reply, whatever the source used. A quote file
/// is in the format of `fortune(6)`: quotes separated by lines holding only `%`; blank
/// lines around a quote are dropped, and so are empty quotes.
public struct QuoteList: Sendable, Equatable {
    /// The longest reply, CRLFs included: RFC 865 asks for quotes under 512 characters,
    /// and 512 bytes is also the size of a UDP datagram every host must accept.
    public static let maxReplyLength = 511
    /// The largest quote file accepted, so a wrong path (a log, a disk image) fails
    /// instead of filling memory.
    public static let maxFileSize = 4 * 1024 * 1024

    /// The replies, one per quote, as sent.
    public let replies: [[UInt8]]

    /// Quotes given as text.
    ///
    /// - Throws: ``QuoteListError`` when a quote's reply would be 512 bytes or more, or
    ///   when no quote is left after dropping empty ones.
    public init(_ quotes: [String]) throws(QuoteListError) {
        try self.init(quotes.enumerated().map { (Array($0.element.utf8), $0.offset + 1) }, file: nil)
    }

    /// Quotes read from a file in `fortune(6)` format (see ``QuoteList``).
    ///
    /// - Throws: ``QuoteListError`` when the file cannot be read, is larger than
    ///   ``maxFileSize``, holds no quote, or holds a quote whose reply would be 512 bytes or
    ///   more (the error gives its line number).
    public init(contentsOfFile path: String) throws(QuoteListError) {
        let text = try Self.read(path)
        var quotes: [([UInt8], Int)] = []
        var current: [UInt8] = []
        var firstLine = 1
        var lineNumber = 1
        for line in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            let content = line.last == UInt8(ascii: "\r") ? line.dropLast() : line
            if content.elementsEqual("%".utf8) {
                quotes.append((current, firstLine))
                current = []
                firstLine = lineNumber + 1
            } else {
                current += line
                current.append(UInt8(ascii: "\n"))
            }
            lineNumber += 1
        }
        quotes.append((current, firstLine))
        try self.init(quotes, file: path)
    }

    /// Quotes with where each starts (its line in `file`, or its position in a list),
    /// normalised and checked.
    private init(_ quotes: [([UInt8], Int)], file: String?) throws(QuoteListError) {
        var replies: [[UInt8]] = []
        for (text, number) in quotes {
            guard let reply = Self.reply(for: text) else { continue }
            guard reply.count <= Self.maxReplyLength else {
                let place = file.map { "\($0): line \(number)" } ?? "quote \(number)"
                throw QuoteListError(
                    "\(place): the quote is \(reply.count) bytes with CRLF line ends; a reply must be under 512 (at most \(Self.maxReplyLength))")
            }
            replies.append(reply)
        }
        guard !replies.isEmpty else {
            throw QuoteListError(file.map { "\($0): no quotes (separate quotes with lines holding only %)" } ?? "no quotes")
        }
        self.replies = replies
    }

    /// The quote's lines without surrounding blank lines, each ending in CRLF; nil if
    /// nothing is left.
    private static func reply(for text: [UInt8]) -> [UInt8]? {
        let lines = text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
            .map { $0.last == UInt8(ascii: "\r") ? $0.dropLast() : $0 }
        let isBlank = { (line: ArraySlice<UInt8>) in line.allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") } }
        guard let first = lines.firstIndex(where: { !isBlank($0) }), let last = lines.lastIndex(where: { !isBlank($0) }) else {
            return nil
        }
        var reply: [UInt8] = []
        for line in lines[first...last] {
            reply += line
            reply += [13, 10]
        }
        return reply
    }

    private static func read(_ path: String) throws(QuoteListError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw QuoteListError("\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count == 0 { return bytes }
            if count < 0 {
                if errno == EINTR { continue }
                throw QuoteListError("\(path): \(String(cString: strerror(errno)))")
            }
            bytes += chunk[..<count]
            guard bytes.count <= maxFileSize else {
                throw QuoteListError("\(path): larger than \(maxFileSize) bytes; is this a quote file?")
            }
        }
    }

    /// A few quotes about networking and time, used when no file is given.
    public static let builtIn: QuoteList = {
        do {
            return try QuoteList([
                "Be conservative in what you do, be liberal in what you accept from others.\n    -- Jon Postel, RFC 761",
                "Premature optimization is the root of all evil.\n    -- Donald Knuth",
                "There are two hard problems in distributed systems: exactly-once delivery,\nguaranteed order of messages, and exactly-once delivery.\n    -- Mathias Verraes",
                "Time is what keeps everything from happening at once.\n    -- Ray Cummings",
                "Simplicity is prerequisite for reliability.\n    -- Edsger W. Dijkstra",
                "A distributed system is one in which the failure of a computer you didn't\neven know existed can render your own computer unusable.\n    -- Leslie Lamport",
                "Any sufficiently advanced technology is indistinguishable from magic.\n    -- Arthur C. Clarke",
            ])
        } catch {
            preconditionFailure("the built-in quotes are invalid: \(error)")
        }
    }()
}

/// Why a list of quotes was refused: one line naming the file (and line) and the problem.
public struct QuoteListError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The message, for example `quotes.txt: line 12: the quote is 600 bytes ...`.
    public let description: String

    init(_ description: String) { self.description = description }
}
