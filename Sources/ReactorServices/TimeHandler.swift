import ReactorCore

/// RFC 868 time over TCP: on connect, 4 bytes, the seconds since 1900-01-01 00:00:00 UTC
/// as a big-endian 32-bit number, then a graceful close. Anything the client sends is
/// ignored.
///
/// 32 bits of seconds from 1900 run out on 2036-02-07 at 06:28:16 UTC; from then the
/// count starts again from 0 (it is taken modulo 2^32), which is what RFC 868 clients
/// such as `rdate` expect: they place the value in the era nearest their own clock.
public final class TimeHandler: ConnectionHandler {
    /// Seconds from 1900-01-01 to 1970-01-01: 70 years, 17 of them leap years.
    public static let secondsFrom1900To1970: Int64 = 2_208_988_800

    private let clock: ServiceClock

    /// A new handler, one per connection, reading the date from `clock`.
    public init(clock: ServiceClock = .system) {
        self.clock = clock
    }

    public func opened(_ connection: Connection) {
        Self.withReply(secondsSince1970: clock.secondsSince1970()) { connection.write($0) }
        connection.close()
    }

    public func received(_ bytes: RawSpan, on connection: Connection) {}

    /// The RFC 868 value for a time given in seconds since 1970: seconds since 1900,
    /// modulo 2^32 (so 2036-02-07 06:28:16 UTC is 0 again).
    public static func timestamp(secondsSince1970 seconds: Int64) -> UInt32 {
        UInt32(truncatingIfNeeded: seconds &+ secondsFrom1900To1970)
    }

    /// Lends the 4-byte reply for `seconds` to `body`.
    @discardableResult
    static func withReply<R>(secondsSince1970 seconds: Int64, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        withUnsafeBytes(of: timestamp(secondsSince1970: seconds).bigEndian, body)
    }
}
