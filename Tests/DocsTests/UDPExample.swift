import ReactorCore

/// Answers every datagram with its bytes in upper case (ASCII letters only), to its sender.
final class Shout: DatagramHandler {
    func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {
        var reply = datagram.copyBytes()
        for index in reply.indices where (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(reply[index]) {
            reply[index] -= 32
        }
        socket.send(reply, to: sender)
    }

    func truncated(length: Int, from sender: SocketAddress, on socket: UDPSocket) {
        socket.send("too long: \(length) bytes", to: sender)
    }
}

/// Serves `Shout` on a UDP port of the kernel's choosing; returns the bound address.
func serveShout(on reactor: Reactor) throws -> SocketAddress {
    var options = UDPOptions()
    options.maxDatagramSize = 512
    return try reactor.bindUDP(host: "127.0.0.1", port: 0, options: options, handler: Shout()).localAddress
}
