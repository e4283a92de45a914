/// What a ``UDPSocket`` tells the code that owns it. Every hook runs on the reactor thread.
///
/// Only ``received(_:from:on:)`` is required:
///
/// ```swift
/// final class UDPEcho: DatagramHandler {
///     func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
///         socket.send(datagram, to: sender)
///     }
/// }
/// ```
public protocol DatagramHandler: AnyObject {
    /// The socket is bound (and connected, for ``Reactor/connectUDP(to:options:handler:)``)
    /// and watched by the reactor. Called after the call that made it returns.
    func opened(_ socket: UDPSocket)

    /// One whole datagram arrived. `datagram` is a view into the reactor's receive area,
    /// valid only during this call; copy what must outlive it. Replies sent from here are
    /// batched into one `sendmmsg` after the receive batch.
    func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket)

    /// A datagram of `length` bytes arrived, longer than ``UDPOptions/maxDatagramSize``.
    /// Its bytes were dropped rather than passed on as if whole; ``UDPCounters/truncated``
    /// counts it. The default does nothing more.
    func truncated(length: Int, from sender: SocketAddress, on socket: UDPSocket)

    /// A send or receive failed: a dropped datagram (``ReactorError/Code/wouldBlock``), one
    /// too large (``ReactorError/Code/messageTooLong``), or an ICMP "port unreachable" on a
    /// connected socket (``ReactorError/Code/connectionRefused``). Counted in
    /// ``UDPSocket/counters``; never fatal: the socket stays open. The default does nothing more.
    func errorCaught(_ error: ReactorError, on socket: UDPSocket)

    /// The socket is closed. Called once, after the call that closed it returns.
    func closed(_ socket: UDPSocket)
}

extension DatagramHandler {
    public func opened(_ socket: UDPSocket) {}
    public func truncated(length: Int, from sender: SocketAddress, on socket: UDPSocket) {}
    public func errorCaught(_ error: ReactorError, on socket: UDPSocket) {}
    public func closed(_ socket: UDPSocket) {}
}
