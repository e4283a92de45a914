import Dispatch

/// Turns a host name into addresses. ``Reactor/connect(host:port:timeout:options:happyEyeballs:handler:)``
/// calls it on a helper thread, never on the reactor's, so it may block.
///
/// The default is ``SystemResolver`` (getaddrinfo). Give your own through
/// ``HappyEyeballsOptions/resolver`` to answer from a cache, a service directory or, in a
/// test, a fixed list.
public protocol HostResolver: Sendable {
    /// The addresses of `host` with `port`, in the resolver's order of preference.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/invalidAddress`` naming
    ///   the host when it has no address.
    func resolve(host: String, port: Int) throws(ReactorError) -> [SocketAddress]
}

/// The system resolver: `getaddrinfo` with `AI_ADDRCONFIG` (`/etc/hosts`, DNS, as the
/// system's name service configuration says). It blocks, which is why the reactor calls it
/// from a helper thread.
public struct SystemResolver: HostResolver {
    /// The system resolver.
    public init() {}

    /// See ``SocketAddress/resolve(host:port:)``.
    public func resolve(host: String, port: Int) throws(ReactorError) -> [SocketAddress] {
        try SocketAddress.resolve(host: host, port: port)
    }
}

/// How ``Reactor/connect(host:port:timeout:options:happyEyeballs:handler:)`` resolves a
/// name and races its addresses (Happy Eyeballs, RFC 8305).
public struct HappyEyeballsOptions: Sendable {
    /// How long an attempt may go unanswered before the next address is tried beside it
    /// (RFC 8305's "Connection Attempt Delay", whose recommended value is the default). A
    /// refused or unreachable attempt starts the next one at once.
    public var attemptDelay: Duration = .milliseconds(250)
    /// Where names are resolved; the system resolver unless set.
    public var resolver: any HostResolver = SystemResolver()

    /// The defaults: 250 ms between attempts, the system resolver.
    public init(attemptDelay: Duration = .milliseconds(250), resolver: any HostResolver = SystemResolver()) {
        self.attemptDelay = attemptDelay
        self.resolver = resolver
    }

    /// Checks the values.
    ///
    /// - Throws: ``ReactorError`` with code ``ReactorError/Code/invalidOption`` when
    ///   ``attemptDelay`` is negative.
    public func validate() throws(ReactorError) {
        guard attemptDelay >= .zero else {
            throw .invalidOption("attemptDelay", value: attemptDelay, hint: "it must not be negative")
        }
    }

    /// RFC 8305's order: the families interleaved, IPv6 first, each family in the
    /// resolver's order.
    public static func attemptOrder(_ addresses: [SocketAddress]) -> [SocketAddress] {
        var v6 = addresses.filter { $0.family == .ipv6 }[...]
        var v4 = addresses.filter { $0.family == .ipv4 }[...]
        var ordered: [SocketAddress] = []
        ordered.reserveCapacity(addresses.count)
        while !v6.isEmpty || !v4.isEmpty {
            if let next = v6.popFirst() { ordered.append(next) }
            if let next = v4.popFirst() { ordered.append(next) }
        }
        return ordered
    }
}

/// A connect to a host name in progress, made by
/// ``Reactor/connect(host:port:timeout:options:happyEyeballs:handler:)``: the name is
/// resolved off the loop, then its addresses race (Happy Eyeballs). The handler hears
/// ``ConnectionHandler/opened(_:)`` once, from the first attempt that connects, or
/// ``ConnectionHandler/connectFailed(_:)`` once, when every address failed, the name did
/// not resolve or the timeout passed. Cancel it to give up; the handler then hears nothing.
public final class PendingHostConnect {
    let reactor: Reactor
    /// The name (or numeric address) being connected to.
    public let host: String
    /// The port being connected to.
    public let port: Int
    /// The addresses the name resolved to, in the order they are tried; empty until then.
    public private(set) var addresses: [SocketAddress] = []
    private let options: ConnectionOptions
    private let eyeballs: HappyEyeballsOptions
    private let deadline: UInt64
    private var handler: (any ConnectionHandler)?
    private var untried: ArraySlice<SocketAddress> = []
    private var attempts: [PendingConnect] = []
    private var lastFailure: ReactorError?
    private var attemptTimer: ReactorTimer?
    private var deadlineTimer: ReactorTimer?

    init(
        reactor: Reactor, host: String, port: Int, timeout: Duration, options: ConnectionOptions,
        eyeballs: HappyEyeballsOptions, handler: any ConnectionHandler
    ) {
        self.reactor = reactor
        self.host = host
        self.port = port
        self.options = options
        self.eyeballs = eyeballs
        self.handler = handler
        deadline = Reactor.now &+ timeout.nanoseconds
    }

    /// True until a connection opens, the connect fails, or it is cancelled.
    public var isPending: Bool { handler != nil }

    /// The addresses with an attempt in flight now.
    public var attempting: [SocketAddress] { attempts.map(\.address) }

    /// Gives up: closes every attempt's socket; the handler is not called.
    public func cancel() {
        guard handler != nil else { return }
        reactor.assertInLoop()
        handler = nil
        finish()
    }

    func start(timeout: Duration) {
        do throws(ReactorError) {
            guard reactor.state != .stopped else { throw ReactorError(.reactorStopped, operation: .connect, host: host) }
            try options.validate()
            try eyeballs.validate()
        } catch {
            reactor.runSoon { [self] in fail(error) }
            return
        }
        reactor.registry.insert(.hostConnect(self))
        deadlineTimer = reactor.schedule(after: timeout) { [self] _ in
            fail(ReactorError(.timedOut, operation: .connect, host: host, hint: "no connection within the connect timeout"))
        }
        if let numeric = try? SocketAddress(ip: host, port: port) {
            resolved(.success([numeric]))
            return
        }
        // The resolver may block for seconds (DNS timeouts): it runs on a helper thread,
        // and its answer comes back through the reactor's mailbox.
        let handle = reactor.handle
        let resolver = eyeballs.resolver
        let name = host
        let number = port
        let me = ResolverHandoff(self)
        PendingHostConnect.resolverQueue.async {
            let answer: Result<[SocketAddress], ReactorError>
            do throws(ReactorError) {
                answer = .success(try resolver.resolve(host: name, port: number))
            } catch {
                answer = .failure(error)
            }
            handle.execute { _ in me.value.resolved(answer) }
        }
    }

    /// Resolvers run here, as many at once as there are connects waiting on one (libdispatch
    /// bounds its threads).
    private static let resolverQueue = DispatchQueue(label: "reactor.resolver", attributes: .concurrent)

    private func resolved(_ answer: Result<[SocketAddress], ReactorError>) {
        guard handler != nil else { return }
        switch answer {
        case .failure(var error):
            if error.host == nil, error.address == nil { error.host = host }
            fail(error)
        case .success(let list):
            addresses = HappyEyeballsOptions.attemptOrder(list)
            guard !addresses.isEmpty else {
                fail(ReactorError(.invalidAddress, operation: .resolve, host: host, hint: "no IPv4 or IPv6 address"))
                return
            }
            untried = addresses[...]
            startNextAttempt()
        }
    }

    /// Starts an attempt on the next address, and arms the delay after which the one
    /// after it starts alongside.
    private func startNextAttempt() {
        attemptTimer?.cancel()
        attemptTimer = nil
        guard handler != nil else { return }
        guard let address = untried.popFirst() else {
            if attempts.isEmpty { fail(lastFailure ?? ReactorError(.timedOut, operation: .connect, host: host)) }
            return
        }
        let now = Reactor.now
        let remaining = Duration.nanoseconds(Int64(deadline > now ? deadline - now : 1))
        let attempt = reactor.connect(to: address, timeout: remaining, options: options, handler: handler!)
        attempt.race = self
        attempts.append(attempt)
        if !untried.isEmpty {
            attemptTimer = reactor.schedule(after: eyeballs.attemptDelay) { [self] _ in startNextAttempt() }
        }
    }

    /// An attempt failed: the next address starts now, without waiting out the delay.
    func attemptFailed(_ attempt: PendingConnect, _ error: ReactorError) {
        attempts.removeAll { $0 === attempt }
        lastFailure = error
        startNextAttempt()
    }

    /// An attempt connected. The first wins and the others are cancelled; false tells a
    /// later one to close its socket.
    func attemptConnected(_ attempt: PendingConnect) -> Bool {
        attempts.removeAll { $0 === attempt }
        guard handler != nil else { return false }
        handler = nil
        finish()
        return true
    }

    private func fail(_ error: ReactorError) {
        guard let handler else { return }
        self.handler = nil
        finish()
        var failure = error
        if failure.host == nil { failure.host = host }
        handler.connectFailed(failure)
    }

    private func finish() {
        attemptTimer?.cancel()
        deadlineTimer?.cancel()
        attemptTimer = nil
        deadlineTimer = nil
        untried = []
        let losers = attempts
        attempts = []
        for attempt in losers { attempt.cancel() }
        reactor.registry.remove(self)
    }
}

/// A reactor-confined object carried through another thread that never touches it: the
/// resolver's thread holds it only to hand it back to the loop (and lets it go, if the
/// reactor has stopped, without calling it).
private struct ResolverHandoff<Value: AnyObject>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
