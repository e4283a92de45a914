import ReactorCore

/// RFC 867 daytime over TCP: on connect, one line with the current UTC date and time,
/// then a graceful close. Anything the client sends is ignored.
///
/// The RFC leaves the format free ("human readable"); this is the first form it suggests,
/// in UTC and ending in CRLF: `Saturday, November 21, 2026 08:13:03-UTC\r\n`.
public final class DaytimeHandler: ConnectionHandler {
    /// The longest line ``DaytimeHandler`` writes, with CRLF (a 12-digit year is the most
    /// 64-bit seconds can give).
    public static let maxLineLength = 64

    private let clock: ServiceClock

    /// A new handler, one per connection, reading the date from `clock`.
    public init(clock: ServiceClock = .system) {
        self.clock = clock
    }

    public func opened(_ connection: Connection) {
        Self.withLine(secondsSince1970: clock.secondsSince1970()) { connection.write($0) }
        connection.close()
    }

    public func received(_ bytes: RawSpan, on connection: Connection) {}

    /// Formats the line for `seconds` into stack memory and lends it to `body`: no heap
    /// allocation per reply.
    @discardableResult
    static func withLine<R>(secondsSince1970 seconds: Int64, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeTemporaryAllocation(byteCount: maxLineLength, alignment: 1) { buffer in
            var writer = LineWriter(buffer)
            let date = CivilDate(secondsSince1970: seconds)
            writer.append(weekdays[date.weekday])
            writer.append(", ")
            writer.append(months[date.month - 1])
            writer.append(" ")
            writer.append(Int64(date.day), width: 1)
            writer.append(", ")
            writer.append(date.year, width: 4)
            writer.append(" ")
            writer.append(Int64(date.hour), width: 2)
            writer.append(":")
            writer.append(Int64(date.minute), width: 2)
            writer.append(":")
            writer.append(Int64(date.second), width: 2)
            writer.append("-UTC\r\n")
            return body(UnsafeRawBufferPointer(rebasing: buffer[..<writer.count]))
        }
    }

    private static let weekdays: [StaticString] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    private static let months: [StaticString] = [
        "January", "February", "March", "April", "May", "June",
        "July", "August", "September", "October", "November", "December",
    ]
}

/// Appends ASCII to a fixed buffer that is known to be large enough.
private struct LineWriter {
    let buffer: UnsafeMutableRawBufferPointer
    var count = 0

    init(_ buffer: UnsafeMutableRawBufferPointer) { self.buffer = buffer }

    mutating func append(_ text: StaticString) {
        let bytes = UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
        UnsafeMutableRawBufferPointer(rebasing: buffer[count..<count + bytes.count]).copyMemory(from: bytes)
        count += bytes.count
    }

    /// `value` in decimal, zero-padded to at least `width` digits, with a minus sign if negative.
    mutating func append(_ value: Int64, width: Int) {
        if value < 0 { append("-") }
        var digits = 1
        var rest = value.magnitude / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        digits = max(digits, width)
        var magnitude = value.magnitude
        for index in stride(from: count + digits - 1, through: count, by: -1) {
            buffer[index] = UInt8(ascii: "0") + UInt8(magnitude % 10)
            magnitude /= 10
        }
        count += digits
    }
}
