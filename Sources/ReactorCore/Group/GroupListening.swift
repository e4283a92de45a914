import Synchronization

/// How a ``ReactorGroup`` spreads the connections of one port over its reactors.
public enum GroupListenMode: String, Sendable, CaseIterable {
    /// One SO_REUSEPORT listener per reactor: the kernel picks one per connection by a
    /// hash of its addresses, so the spread is even only on average, and no reactor waits
    /// on another. The default (docs/architecture.md gives the measurements).
    case reusePort = "reuseport"
    /// One listener on the first reactor accepts every connection and hands each socket
    /// to the next reactor in turn, through its mailbox: an exact balance, at the price of
    /// a cross-thread wake-up per connection and an acceptor that all connections queue on.
    case acceptor
}

/// A port a ``ReactorGroup`` listens on.
public struct GroupListener: Sendable {
    /// The bound address; with port 0 requested, the port the kernel chose.
    public let address: SocketAddress
    /// How connections are spread.
    public let mode: GroupListenMode
}

extension ReactorGroup {
    /// Listens for TCP connections on every reactor of the group.
    ///
    /// `makeHandler` is called once on each reactor's thread and returns that reactor's
    /// handler factory, which is called on the same thread for each connection the reactor
    /// gets: state the factory captures is per reactor and needs no lock.
    ///
    /// - Parameters:
    ///   - host: a numeric address or a name, resolved once, blocking, before listening.
    ///   - port: the port; 0 lets the kernel choose one, which every reactor then shares.
    ///   - mode: ``GroupListenMode/reusePort`` (default) or ``GroupListenMode/acceptor``.
    ///     With `reusePort` every reactor's socket sets SO_REUSEPORT whatever `options`
    ///     says, and `maxConnections` applies to each; with `acceptor` the one socket sets
    ///     it as `options` says, and `maxConnections` counts the whole group.
    ///   - options: the listeners' limits (``ListenerOptions``).
    ///   - connectionOptions: the limits of every connection accepted (``ConnectionOptions``).
    ///   - makeHandler: called once per reactor, on its thread; returns that reactor's
    ///     handler factory.
    /// - Throws: ``ReactorError`` as ``Reactor/listen(on:options:connectionOptions:makeHandler:)``;
    ///   the sockets already opened are closed again.
    @discardableResult
    public func listen(
        host: String, port: Int, mode: GroupListenMode = .reusePort, options: ListenerOptions = .init(),
        connectionOptions: ConnectionOptions = .init(),
        makeHandler: @escaping @Sendable (Reactor) -> (Connection) -> any ConnectionHandler
    ) throws -> GroupListener {
        let address = try SocketAddress.resolve(host: host, port: port)[0]
        switch mode {
        case .reusePort:
            let shared = options.withReusePort
            let first = try perform(on: 0) { reactor in
                try reactor.listen(on: address, options: shared, connectionOptions: connectionOptions,
                                   makeHandler: makeHandler(reactor)).address
            }
            do {
                for index in 1..<Swift.max(count, 1) {
                    try perform(on: index) { reactor in
                        _ = try reactor.listen(on: first, options: shared, connectionOptions: connectionOptions,
                                               makeHandler: makeHandler(reactor))
                    }
                }
            } catch {
                closeListeners(on: first)
                throw error
            }
            return GroupListener(address: first, mode: mode)
        case .acceptor:
            let receivers = try performOnAll { reactor in
                ReceiverBox(HandOffReceiver(reactor: reactor, options: connectionOptions, makeHandler: makeHandler(reactor)))
            }
            let bound = try perform(on: 0) { reactor in
                let receiver = receivers[0].receiver
                let listener = try reactor.listen(on: address, options: options, connectionOptions: connectionOptions,
                                                  makeHandler: receiver.makeHandler)
                let acceptor = ListenerBox(listener, handle: reactor.handle)
                for box in receivers { box.receiver.acceptor = acceptor }
                var next = 0
                listener.handOff = { fd, peer, draining, proxied in
                    let target = receivers[next]
                    next = next + 1 == receivers.count ? 0 : next + 1
                    if target.receiver.reactor === reactor {
                        target.receiver.adopt(fd: fd, peer: peer, draining: draining, proxied: proxied)
                    } else if !target.handle.execute({ _ in
                        target.receiver.adopt(fd: fd, peer: peer, draining: draining, proxied: proxied)
                    }) {
                        // That reactor has stopped: the socket cannot be served anywhere now.
                        Socket.close(fd)
                        listener.connectionClosed()
                    }
                }
                return listener.address
            }
            return GroupListener(address: bound, mode: mode)
        }
    }

    /// Binds a UDP socket on every reactor of the group, all with SO_REUSEPORT: the kernel
    /// gives each datagram to one of them by a hash of its addresses, so one sender's
    /// datagrams all reach the same reactor (and the same handler).
    ///
    /// `makeHandler` runs once on each reactor's thread and makes its socket's handler.
    ///
    /// - Returns: the bound address; with port 0 requested, the port the kernel chose.
    /// - Throws: ``ReactorError`` as ``Reactor/bindUDP(on:options:handler:)``; the sockets
    ///   already bound are closed again.
    @discardableResult
    public func bindUDP(
        host: String, port: Int, options: UDPOptions = UDPOptions(),
        makeHandler: @escaping @Sendable (Reactor) -> any DatagramHandler
    ) throws -> SocketAddress {
        let address = try SocketAddress.resolve(host: host, port: port)[0]
        let shared = options.withReusePort
        let first = try perform(on: 0) { reactor in
            try reactor.bindUDP(on: address, options: shared, handler: makeHandler(reactor)).localAddress
        }
        do {
            for index in 1..<Swift.max(count, 1) {
                try perform(on: index) { reactor in
                    _ = try reactor.bindUDP(on: first, options: shared, handler: makeHandler(reactor))
                }
            }
        } catch {
            executeOnAll { reactor in
                for case .udpSocket(let socket) in reactor.registry.entries(where: \.opensConnections)
                where socket.localAddress == first { socket.close() }
            }
            throw error
        }
        return first
    }

    private func closeListeners(on address: SocketAddress) {
        executeOnAll { reactor in
            for case .listener(let listener) in reactor.registry.entries(where: \.opensConnections)
            where listener.address == address { listener.close() }
        }
    }
}

extension Reactor {
    /// The first step of a group's graceful shutdown: every acceptor hands what waits in
    /// its backlog to the reactors, then closes.
    func drainAcceptors() {
        for case .listener(let listener) in registry.entries(where: \.opensConnections) where listener.handOff != nil {
            listener.drainAndClose()
        }
    }
}

/// A reactor's end of a group's acceptor: makes a connection of each socket handed to
/// it, on its own thread, and tells the acceptor when one closes.
final class HandOffReceiver: ConnectionSource {
    let reactor: Reactor
    let makeHandler: (Connection) -> any ConnectionHandler
    /// Set once, on the acceptor's thread, before any socket is handed over (the mailbox
    /// post that carries the first one orders the write before the reads).
    var acceptor: ListenerBox?
    private let config: ConnectionConfig

    init(reactor: Reactor, options: ConnectionOptions, makeHandler: @escaping (Connection) -> any ConnectionHandler) {
        self.reactor = reactor
        self.config = ConnectionConfig(options)
        self.makeHandler = makeHandler
        config.source = self
    }

    /// `proxied`: the PROXY header the acceptor read, and the bytes that came after it.
    func adopt(fd: Int32, peer: SocketAddress, draining: Bool, proxied: ProxiedStart?) {
        guard reactor.state != .stopped else {
            Socket.close(fd)
            connectionClosed()
            return
        }
        let connection = Connection(reactor: reactor, fd: fd, peer: proxied?.info.header.source ?? peer, config: config)
        connection.proxyInfo = proxied?.info
        let handler = makeHandler(connection)
        connection.start(handler: draining || reactor.isShuttingDown ? ShutdownGrace(handler, reactor: reactor) : handler)
        if let payload = proxied?.payload, !payload.isEmpty { payload.withUnsafeBytes { connection.receivedWithHeader($0) } }
    }

    func connectionClosed() {
        guard let acceptor else { return }
        if acceptor.listener.reactor === reactor {
            acceptor.listener.connectionClosed()
        } else {
            acceptor.handle.execute { _ in acceptor.listener.connectionClosed() }
        }
    }
}

/// A receiver carried to the acceptor's thread; only its own reactor's thread calls it
/// (the acceptor compares reactors, and posts to the others through `handle`).
struct ReceiverBox: @unchecked Sendable {
    let receiver: HandOffReceiver
    let handle: ReactorHandle

    init(_ receiver: HandOffReceiver) {
        self.receiver = receiver
        self.handle = receiver.reactor.handle
    }
}

/// The acceptor carried to the receivers' threads; they touch it only in work posted
/// to its own reactor through `handle`.
final class ListenerBox: @unchecked Sendable {
    let listener: TCPListener
    let handle: ReactorHandle

    init(_ listener: TCPListener, handle: ReactorHandle) {
        self.listener = listener
        self.handle = handle
    }
}

extension ListenerOptions {
    var withReusePort: ListenerOptions {
        var options = self
        options.reusePort = true
        return options
    }
}

extension UDPOptions {
    var withReusePort: UDPOptions {
        var options = self
        options.reusePort = true
        return options
    }
}
