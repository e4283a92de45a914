import ReactorCore

/// Decides whether a UDP service may answer a datagram: what makes the bundled UDP
/// services safe to expose. Every bundled UDP service that replies asks it first; one
/// guard may be shared by several services so that a source's budget covers them all.
/// Use it on the reactor thread only.
///
/// It refuses:
/// - datagrams from the small services' ports (and port 0), so two servers can never be
///   set answering each other forever by one spoofed datagram;
/// - replies beyond a per-source token bucket (``ReplyGuardOptions/repliesPerSecond``,
///   ``ReplyGuardOptions/burst``), so a spoofed source address (the victim of a
///   reflection attack) receives at most that rate, however fast the requests come.
///
/// Sources are tracked in a table of fixed size, allocated when the guard is made:
/// ``ReplyGuardOptions/maxTrackedSources`` entries in groups of 8 (a set-associative
/// cache keyed by a seeded hash of the IP address). A new source takes a free entry of its
/// group or the one seen least recently; the table never grows, and a decision allocates
/// nothing and makes no system call.
public final class ReplyGuard {
    /// The guard's settings.
    public let options: ReplyGuardOptions
    /// What the guard has decided so far.
    // Used on one reactor thread only; a dynamic exclusivity check per datagram cost more
    // than the decision itself.
    @exclusivity(unchecked) public private(set) var counters = ReplyGuardCounters()

    private struct Entry {
        var high: UInt64 = 0
        var low: UInt64 = 0
        var lastSeen: UInt64 = 0
        var tokens: Double = 0
        var isUsed = false
    }

    private static let ways = 8
    private let entries: UnsafeMutableBufferPointer<Entry>
    private let groups: Int
    private let ways: Int
    /// One bit per port (65,536 bits): raw memory, not an array, so the check per
    /// datagram has no bounds check or array header to load.
    private let refusedPorts: UnsafeMutablePointer<UInt64>
    private let tokensPerNanosecond: Double
    private let burst: Double
    private let seed: UInt64
    private let now: () -> UInt64

    /// A guard with `options`.
    ///
    /// - Parameters:
    ///   - options: the limits (``ReplyGuardOptions``).
    ///   - now: monotonic nanoseconds, for the token buckets; tests pass their own.
    /// - Throws: `ReactorError` when ``ReplyGuardOptions/validate()`` does.
    public init(_ options: ReplyGuardOptions, now: @escaping () -> UInt64 = { Reactor.now }) throws(ReactorError) {
        try options.validate()
        self.options = options
        self.now = now
        ways = min(Self.ways, options.maxTrackedSources)
        groups = (options.maxTrackedSources + ways - 1) / ways
        entries = .allocate(capacity: options.isRateLimited ? groups * ways : 0)
        entries.initialize(repeating: Entry())
        refusedPorts = .allocate(capacity: 65536 / 64)
        refusedPorts.initialize(repeating: 0, count: 65536 / 64)
        for port in options.refusedSourcePorts { refusedPorts[port / 64] |= 1 << UInt64(port % 64) }
        tokensPerNanosecond = options.repliesPerSecond / 1e9
        burst = Double(options.burst)
        seed = UInt64.random(in: .min ... .max)
    }

    /// A guard with the default options: small-service ports refused, 20 replies per
    /// second per source with bursts of 40, 4096 sources tracked.
    public convenience init() {
        try! self.init(ReplyGuardOptions())
    }

    deinit {
        entries.deallocate()
        refusedPorts.deallocate()
    }

    /// True if a reply to `sender` may go out now; counts the decision. When it returns
    /// true, one token of the sender's bucket is spent.
    public func permitsReply(to sender: SocketAddress) -> Bool {
        let port = sender.port
        guard refusedPorts[port &>> 6] & (1 &<< UInt64(port & 63)) == 0 else {
            counters.refusedSourcePort += 1
            return false
        }
        guard options.isRateLimited else {
            counters.allowed += 1
            return true
        }
        let (high, low) = sender.ipKey
        let time = now()
        let first = group(high: high, low: low) * ways
        var victim = first
        var victimIsFree = false
        for index in first..<first + ways {
            let entry = entries[index]
            if !entry.isUsed {
                if !victimIsFree {
                    victim = index
                    victimIsFree = true
                }
            } else if entry.high == high, entry.low == low {
                return spend(index, at: time)
            } else if !victimIsFree, entry.lastSeen < entries[victim].lastSeen {
                victim = index
            }
        }
        if !victimIsFree { counters.evictedSources += 1 }
        entries[victim] = Entry(high: high, low: low, lastSeen: time, tokens: burst, isUsed: true)
        return spend(victim, at: time)
    }

    /// Refills the bucket for the time since it was last seen, then takes a token if there is one.
    private func spend(_ index: Int, at time: UInt64) -> Bool {
        let elapsed = time > entries[index].lastSeen ? time - entries[index].lastSeen : 0
        let tokens = min(burst, entries[index].tokens + Double(elapsed) * tokensPerNanosecond)
        entries[index].lastSeen = time
        if tokens >= 1 {
            entries[index].tokens = tokens - 1
            counters.allowed += 1
            return true
        }
        entries[index].tokens = tokens
        counters.rateLimited += 1
        return false
    }

    /// The group of entries an address may live in: a seeded hash, so that an attacker
    /// cannot pick addresses that all land in the victim's group to evict it.
    private func group(high: UInt64, low: UInt64) -> Int {
        var hash = (high ^ seed) &* 0x9E37_79B9_7F4A_7C15
        hash = (hash ^ low ^ (hash >> 29)) &* 0xBF58_476D_1CE4_E5B9
        hash ^= hash >> 32
        return Int(hash.multipliedFullWidth(by: UInt64(groups)).high)
    }
}
