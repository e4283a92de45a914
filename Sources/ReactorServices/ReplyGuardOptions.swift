import ReactorCore

/// What a ``ReplyGuard`` refuses. Every limit has a default; the defaults are safe to
/// expose on a network (docs/services.md says what each protects against).
public struct ReplyGuardOptions: Sendable, Equatable {
    /// The ports of the classic small services, and 0: echo 7, discard 9, daytime 13,
    /// qotd 17, chargen 19, time 37.
    public static let smallServicePorts = [0, 7, 9, 13, 17, 19, 37]

    /// Datagrams from these source ports are never answered (default
    /// ``smallServicePorts``): a datagram spoofed to come from another server's echo or
    /// chargen port would otherwise start a loop between the two servers that never ends.
    public var refusedSourcePorts: [Int] = ReplyGuardOptions.smallServicePorts
    /// Replies each source IP address may get per second, on average (default 20; 0 turns
    /// the rate limit off). It bounds what a spoofed source (the victim of a reflection
    /// attack) can be sent, and the work one host can ask of the server.
    public var repliesPerSecond: Double = 20
    /// Replies a source may get at once, before the rate applies (default 40): the size
    /// of each source's token bucket.
    public var burst: Int = 40
    /// Sources whose buckets are remembered at once (default 4096, about 160 KiB). The
    /// table is allocated once at this size and never grows; when it is full, the source
    /// seen least recently among those sharing a slot group is forgotten.
    public var maxTrackedSources: Int = 4096

    /// The defaults.
    public init() {}

    /// Whether a rate limit applies.
    public var isRateLimited: Bool { repliesPerSecond > 0 }

    /// Checks the values: a rate that is not negative and finite, a burst of at least 1
    /// when limiting, a table of 1 to 2^20 sources, ports from 0 to 65535.
    public func validate() throws(ReactorError) {
        guard repliesPerSecond >= 0, repliesPerSecond.isFinite else {
            throw .invalidOption("repliesPerSecond", value: repliesPerSecond, hint: "it must be 0 (no limit) or positive")
        }
        guard !isRateLimited || burst >= 1 else {
            throw .invalidOption("burst", value: burst, hint: "it must be at least 1 while replies are rate limited")
        }
        guard (1...(1 << 20)).contains(maxTrackedSources) else {
            throw .invalidOption("maxTrackedSources", value: maxTrackedSources, hint: "it must be from 1 to 1048576")
        }
        if let port = refusedSourcePorts.first(where: { !(0...65535).contains($0) }) {
            throw .invalidOption("refusedSourcePorts", value: port, hint: "a port is a number from 0 to 65535")
        }
    }
}

/// What a ``ReplyGuard`` has decided since it was made.
public struct ReplyGuardCounters: Sendable, Equatable {
    /// Replies allowed.
    public var allowed = 0
    /// Datagrams not answered because of their source port.
    public var refusedSourcePort = 0
    /// Datagrams not answered because their source had used its budget.
    public var rateLimited = 0
    /// Sources forgotten to make room for new ones (a high count means the table is too
    /// small for the traffic, or someone is spraying spoofed sources).
    public var evictedSources = 0

    /// All zero.
    public init() {}
}
