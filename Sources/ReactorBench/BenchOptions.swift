import ReactorCore

/// What one `reactor bench` run does. Every field has a default; ``validate()`` checks
/// them together.
public struct BenchOptions: Sendable, Equatable {
    /// What each client does in a loop.
    public enum Mode: String, Sendable, CaseIterable {
        /// Requests over long-lived connections (closed loop, or open loop with a rate).
        case requests
        /// Connect, one request, close, again: connections per second.
        case churn
        /// Open the connections, one request each, then hold them idle; with a server pid,
        /// the server's memory per connection.
        case idle
    }

    /// The server's address or name.
    public var host: String = "127.0.0.1"
    /// The server's port (TCP, or UDP for ``BenchProtocol/udp``).
    public var port: Int = 7007
    /// The protocol spoken (and, for the echo protocols, whether over TCP or UDP).
    public var `protocol`: BenchProtocol = .raw
    /// A protocol of your own: when set, used instead of ``protocol``.
    public var codec: BenchCodecFactory? = nil
    /// `custom`: TCP or UDP.
    public var transport: Transport = .tcp

    /// The transports `custom` runs over.
    public enum Transport: String, Sendable, CaseIterable {
        /// Requests over TCP connections.
        case tcp
        /// Requests as UDP datagrams.
        case udp
    }

    /// A Redis or memcached command template and its share of the mix.
    public struct Command: Sendable, Equatable {
        /// Words split on spaces, then variables substituted (see docs/bench.md).
        public var text: String
        /// Relative frequency in the mix.
        public var weight: Int

        /// A command template with its weight in the mix.
        public init(_ text: String, weight: Int = 1) {
            self.text = text
            self.weight = weight
        }
    }

    /// `redis` and `memcached`: the commands, mixed by weight (`redis` with none: `PING`).
    public var commands: [Command] = []
    /// `{key}` is drawn from 0 ..< keyspace.
    public var keyspace: Int = 100_000
    /// How `{key}` is drawn.
    public var keyDistribution: KeyDistribution = .uniform
    /// `http`: paths, used round-robin.
    public var paths: [String] = ["/"]
    /// `http`: the method.
    public var method: String = "GET"
    /// `http`: extra header lines, `Name: value`.
    public var headers: [String] = []
    /// `http`: a body template (sent with its Content-Length).
    public var body: String? = nil
    /// `custom`: request templates, used round-robin.
    public var requests: [String] = []
    /// `custom`: the framing of requests and responses (`line`, `crlf`, `int8` ... `int64`,
    /// `netstring`, `fixed:N`, `delimiter:TEXT`); over UDP none.
    public var responseFraming: String? = nil
    /// `custom`: what a response's payload must be (`echo`, `any`, `exact:TEXT`,
    /// `prefix:TEXT`, `regex:RE`).
    public var expect: String = "echo"
    /// What each client does in a loop.
    public var mode: Mode = .requests
    /// Connections (UDP: sockets) in total, spread over the threads.
    public var connections: Int = 50
    /// Requests each connection keeps in flight (closed loop), or may have in flight at
    /// most (open loop).
    public var depth: Int = 1
    /// Payload bytes per request.
    public var size: Int = 64
    /// Requests per second in total (open loop), or nil for closed loop.
    public var rate: Double? = nil
    /// The measured time, after the warmup.
    public var duration: Duration = .seconds(10)
    /// Time run before measuring; its requests are not counted.
    public var warmup: Duration = .seconds(2)
    /// Reactors, each on its own thread with its share of the connections.
    public var threads: Int = 1
    /// How long a connect may take before it counts as an error.
    public var connectTimeout: Duration = .seconds(2)
    /// Local addresses the TCP connections bind to, one after another (the port is the
    /// kernel's to pick); empty: the kernel picks the address too. Spreading connection
    /// churn over several loopback addresses spares the kernel its search for a free
    /// ephemeral port of one address, which otherwise bounds churn (docs/bench.md).
    public var sourceAddresses: [SocketAddress] = []
    /// How long a request may wait for its response before it counts as an error (TCP:
    /// the connection is dropped and reopened; UDP: the datagram counts as lost).
    public var requestTimeout: Duration = .seconds(2)
    /// The server's process id: its CPU time and peak memory are then reported.
    public var serverPID: Int32? = nil
    /// Seeds the request content.
    public var seed: UInt64 = 1
    /// Checks every response against its request byte for byte (the default).
    public var verify: Bool = true
    /// The wall-clock time (Unix seconds) the run starts at, so that runs on several
    /// machines start together; nil: at once.
    public var startAt: Double? = nil
    /// Keeps a latency histogram per second of the measured window (`--histogram-log`).
    public var recordsIntervals = false

    /// The defaults.
    public init() {}

    /// The time the run may take in all before it is cut off: warmup, duration, and
    /// a grace period for connections to close.
    public var hardDeadline: Duration { warmup + duration + .seconds(3) }

    /// True when requests go over TCP connections (false: UDP datagrams).
    public var isStream: Bool {
        if let codec { return codec.isStream }
        switch self.protocol {
        case .udp: return false
        case .custom: return transport == .tcp
        default: return true
        }
    }

    /// The protocol's name in the summary and the JSON.
    public var protocolName: String { codec?.name ?? self.protocol.rawValue }

    /// Checks the options together; the message says what to change.
    public func validate() throws(BenchError) {
        func fail(_ message: String) -> BenchError { BenchError(message) }
        guard (1...65535).contains(port) else { throw fail("the port must be from 1 to 65535, not \(port)") }
        guard connections > 0 else { throw fail("--connections must be positive") }
        guard depth > 0 else { throw fail("--depth must be positive") }
        guard threads > 0, threads <= connections else { throw fail("--threads must be from 1 to --connections (\(connections))") }
        if codec == nil {
            guard size >= `protocol`.minimumSize else {
                throw fail("--size must be at least \(`protocol`.minimumSize) for \(`protocol`)")
            }
        }
        guard size <= 60_000 else { throw fail("--size must be at most 60000 bytes") }
        if let rate { guard rate > 0, rate.isFinite else { throw fail("--rate must be positive") } }
        guard duration > .zero else { throw fail("--duration must be positive") }
        guard warmup >= .zero else { throw fail("--warmup cannot be negative") }
        guard connectTimeout > .zero, requestTimeout > .zero else { throw fail("timeouts must be positive") }
        if !sourceAddresses.isEmpty {
            guard isStream else { throw fail("--source applies to TCP connections, not UDP") }
            try Self.checkOneFamily(sourceAddresses)
        }
        if let startAt { guard startAt > 0, startAt.isFinite else { throw fail("--start-at must be a time in Unix seconds") } }
        if mode != .requests {
            guard isStream else { throw fail("--mode \(mode) needs a TCP protocol, not udp") }
            guard rate == nil else { throw fail("--rate applies to --mode requests only") }
        }
        guard keyspace > 0, keyspace <= 1 << 40 else { throw fail("--keyspace must be from 1 to 2^40") }
        if transport == .udp, codec == nil, `protocol` != .custom { throw fail("--transport udp applies to --protocol custom (use --protocol udp for UDP echo)") }
        if codec == nil, !`protocol`.isEcho || `protocol` == .udp {
            _ = try CodecSpec(self)
        }
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
