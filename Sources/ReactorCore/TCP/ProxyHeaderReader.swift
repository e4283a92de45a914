import Glibc

/// How a listener's PROXY protocol stage fared (``TCPListener/proxyCounters``).
public struct ProxyProtocolCounters: Sendable, Equatable {
    /// Headers read in full; each became a connection.
    public var accepted = 0
    /// Connections aborted for bytes that are not a valid header.
    public var malformed = 0
    /// Aborted for a header over its limit.
    public var tooLong = 0
    /// Aborted for a v2 CRC32C that does not match.
    public var badChecksum = 0
    /// Closed by the peer before the header was complete.
    public var truncated = 0
    /// Aborted for a header not complete within the timeout.
    public var timedOut = 0
    /// Aborted for coming from outside the trusted networks.
    public var untrusted = 0

    /// No counts yet.
    public init() {}

    /// Every refusal together.
    public var refused: Int { malformed + tooLong + badChecksum + truncated + timedOut + untrusted }

    mutating func count(_ kind: ProxyHeaderError.Kind) {
        switch kind {
        case .malformed: malformed += 1
        case .tooLong: tooLong += 1
        case .badChecksum: badChecksum += 1
        case .truncated: truncated += 1
        case .timedOut: timedOut += 1
        case .untrusted: untrusted += 1
        }
    }
}

/// An accepted socket whose PROXY header had not fully arrived when it was accepted: the
/// stage before the connection exists. It reads into the reactor's shared buffer, feeds
/// the parser, and when the header is whole hands the socket to
/// ``TCPListener/openProxied(fd:peer:header:payload:)``. Connections after it never see
/// this code: the header is read once.
///
/// It counts as one of the listener's connections (so ``ListenerOptions/maxConnections``
/// bounds these too), and keeps a graceful shutdown waiting until it is done.
final class ProxyHeaderReader {
    let reactor: Reactor
    private let fd: Int32
    private let peer: SocketAddress
    private let listener: TCPListener
    private var parser: ProxyHeaderParser
    private var events = LoopEvents(count: 1)
    private var timer: ReactorTimer?
    private var isOpen = true
    private let draining: Bool

    init(
        reactor: Reactor, fd: Int32, peer: SocketAddress, listener: TCPListener, parser: ProxyHeaderParser,
        options: ProxyProtocolOptions, draining: Bool
    ) {
        self.draining = draining
        self.reactor = reactor
        self.fd = fd
        self.peer = peer
        self.listener = listener
        self.parser = parser
        events.assign(0, on: reactor.base, .readable(fd), owner: self) { _, _, context in
            LoopEvents.withOwner(context, ProxyHeaderReader.self) { $0.readable() }
        }
        events.arm(0)
        timer = reactor.schedule(after: options.headerTimeout) { [unowned self] _ in
            refuse(ProxyHeaderError(.timedOut, "not complete within \(options.headerTimeout)"))
        }
        reactor.registerProxyHeader(self)
    }

    private func readable() {
        guard isOpen else { return }
        switch ProxyHeaderReader.readHeader(fd: fd, peer: peer, into: reactor.readBuffer, parser: &parser) {
        case .waiting:
            return
        case .complete(let header, let payload):
            stop()
            listener.openProxied(fd: fd, peer: peer, header: header, payload: payload, draining: draining)
            // Unregistered after the connection registered, so a graceful shutdown never
            // sees zero in between.
            reactor.unregisterProxyHeader(self)
        case .refused(let error):
            refuse(error)
        }
    }

    /// What one read did for a header.
    enum Outcome {
        case waiting
        case complete(ProxyHeader, payload: UnsafeRawBufferPointer)
        case refused(ProxyHeaderError)
    }

    /// One read into `buffer` fed to `parser`; the payload lies in `buffer`.
    static func readHeader(
        fd: Int32, peer: SocketAddress, into buffer: UnsafeMutableRawBufferPointer, parser: inout ProxyHeaderParser
    ) -> Outcome {
        switch Socket.read(fd, into: buffer) {
        case .done(let count):
            let bytes = UnsafeRawBufferPointer(start: buffer.baseAddress, count: count)
            do throws(ProxyHeaderError) {
                guard case .complete(let header, let consumed) = try parser.parse(bytes) else { return .waiting }
                return .complete(header, payload: UnsafeRawBufferPointer(rebasing: bytes[consumed...]))
            } catch {
                return .refused(error)
            }
        case .wouldBlock:
            return .waiting
        case .endOfFile:
            return .refused(ProxyHeaderError(.truncated, "the peer closed after \(parser.bufferedCount) byte(s) of the header"))
        case .failed(let error):
            return .refused(ProxyHeaderError(.truncated, "\(ReactorError(errno: error, operation: .read, address: peer))"))
        }
    }

    /// Aborts the socket (RST), counts and logs why.
    private func refuse(_ error: ProxyHeaderError) {
        guard isOpen else { return }
        stop()
        Socket.closeWithReset(fd)
        listener.proxyHeaderRefused(error, from: peer)
        reactor.unregisterProxyHeader(self)
    }

    /// The reactor tears down: abort without counting.
    func abortForTeardown() {
        guard isOpen else { return }
        stop()
        Socket.closeWithReset(fd)
        listener.connectionClosed()
        reactor.unregisterProxyHeader(self)
    }

    private func stop() {
        isOpen = false
        events.disarm(0)
        timer?.cancel()
        timer = nil
    }
}

/// A connection whose PROXY header a group's acceptor read, on its way to the reactor
/// that serves it: the header and balancer, and the bytes that came after the header
/// (copied: the acceptor's read buffer is its own).
struct ProxiedStart: Sendable {
    let info: ProxyInfo
    let payload: [UInt8]
}

/// Logs refusals at most once a second, with how many were left out in between: a flood
/// of bad headers costs one line a second, not one per connection.
struct RefusalLog {
    private var lastLogged: UInt64 = 0
    private var suppressed = 0

    /// The number of refusals left out since the last line, or nil to leave this one out too.
    mutating func admit(now: UInt64) -> Int? {
        guard lastLogged == 0 || now &- lastLogged >= 1_000_000_000 else {
            suppressed += 1
            return nil
        }
        lastLogged = now
        defer { suppressed = 0 }
        return suppressed
    }
}

extension TCPListener {
    /// An accepted socket on a PROXY-protocol listener: refused at once from an untrusted
    /// source, else read until its header is whole.
    /// `draining`: accepted by a graceful shutdown's drain of the backlog.
    func readProxyHeader(fd: Int32, peer: SocketAddress, options: ProxyProtocolOptions, draining: Bool) {
        if let trusted = options.trustedSources, !trusted.contains(where: { $0.contains(peer) }) {
            Socket.closeWithReset(fd)
            proxyHeaderRefused(
                ProxyHeaderError(.untrusted, "\(peer.ip) is outside the trusted networks (\(trusted.map(\.description).joined(separator: ", ")))"),
                from: peer)
            return
        }
        // The header usually arrives with the connection (a balancer sends it at once): one
        // read at accept then opens the connection with no reader, timer or event of its own.
        var parser = ProxyHeaderParser(accepting: options.versions, maxV2Length: options.maxV2Length)
        switch ProxyHeaderReader.readHeader(fd: fd, peer: peer, into: reactor.readBuffer, parser: &parser) {
        case .complete(let header, let payload):
            openProxied(fd: fd, peer: peer, header: header, payload: payload, draining: draining)
        case .refused(let error):
            Socket.closeWithReset(fd)
            proxyHeaderRefused(error, from: peer)
        case .waiting:
            _ = ProxyHeaderReader(
                reactor: reactor, fd: fd, peer: peer, listener: self, parser: parser, options: options, draining: draining)
        }
    }

    /// The header is whole: the connection takes over the socket, with the client as its
    /// peer (LOCAL, UNKNOWN and families the reactor does not speak keep the socket's
    /// own), and gets the bytes that came after the header as its first read. On a
    /// group's acceptor, the socket, header and bytes go to the reactor whose turn it is.
    func openProxied(fd: Int32, peer: SocketAddress, header: ProxyHeader, payload: UnsafeRawBufferPointer, draining: Bool) {
        let info = ProxyInfo(header: header, balancer: peer)
        proxyCounters.accepted += 1
        reactor.tally.proxyHeaders.accepted += 1
        // A header completed after the shutdown began is served like what a drain accepted:
        // its first input (what came with the header, or what follows within 1 s), then closed.
        if let handOff {
            handOff(fd, peer, draining || reactor.isShuttingDown, ProxiedStart(info: info, payload: Array(payload)))
            return
        }
        let connection = Connection(reactor: reactor, fd: fd, peer: header.source ?? peer, config: config)
        connection.proxyInfo = info
        open(connection, draining: draining)
        if !payload.isEmpty { connection.receivedWithHeader(payload) }
    }

    /// Counts a refused header, logs it unless a line went out less than a second ago,
    /// and frees the connection's slot.
    func proxyHeaderRefused(_ error: ProxyHeaderError, from peer: SocketAddress) {
        proxyCounters.count(error.kind)
        reactor.tally.proxyHeaders.count(error.kind)
        if let suppressed = refusalLog.admit(now: Reactor.now) {
            let more = suppressed > 0 ? " (\(suppressed) more refused since the last such line)" : ""
            reactor.logger.warning(
                "connection aborted: \(error)\(more)", metadata: ["listener": "\(address)", "peer": "\(peer)"])
        }
        connectionClosed()
    }
}
