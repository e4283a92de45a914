import Glibc

/// Where the daytime and time services get the current date: the system's real-time clock
/// by default, or any other source of seconds, so that tests (and replays) can set the
/// date, for example past the RFC 868 era rollover of 2036.
public struct ServiceClock: Sendable {
    /// Returns the current time as whole seconds since 1970-01-01 00:00:00 UTC (negative
    /// before it). 64 bits, so dates past 2038 and 2106 are fine.
    public let secondsSince1970: @Sendable () -> Int64

    /// A clock that reads `secondsSince1970` every time a service asks.
    public init(secondsSince1970: @escaping @Sendable () -> Int64) {
        self.secondsSince1970 = secondsSince1970
    }

    /// The system's real-time clock (`clock_gettime(CLOCK_REALTIME)`, a vDSO call: no syscall).
    public static let system = ServiceClock {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec)
    }

    /// A clock stopped at `seconds` since 1970.
    public static func fixed(at seconds: Int64) -> ServiceClock {
        ServiceClock { seconds }
    }
}
