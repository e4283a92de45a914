// SocketAddress parsing and printing, and ReactorError classification and messages.

import Glibc
import ReactorCore
import Testing

@Suite("SocketAddress")
struct SocketAddressTests {
    @Test("IPv4 parses and prints")
    func ipv4() throws {
        let address = try SocketAddress(ip: "127.0.0.1", port: 7007)
        #expect(address.family == .ipv4)
        #expect(address.ip == "127.0.0.1")
        #expect(address.port == 7007)
        #expect(address.description == "127.0.0.1:7007")
    }

    @Test("IPv6 parses with or without brackets and prints in brackets")
    func ipv6() throws {
        let plain = try SocketAddress(ip: "::1", port: 80)
        let bracketed = try SocketAddress(ip: "[::1]", port: 80)
        #expect(plain.family == .ipv6)
        #expect(plain.ip == "::1")
        #expect(plain.description == "[::1]:80")
        #expect(bracketed == plain)
        let long = try SocketAddress(ip: "2001:0db8:0000:0000:0000:0000:0000:0001", port: 443)
        #expect(long.ip == "2001:db8::1", "printed in canonical form")
        #expect(long.description == "[2001:db8::1]:443")
    }

    @Test("equality and hashing compare family, address and port")
    func equality() throws {
        let v4 = try SocketAddress(ip: "10.1.2.3", port: 80)
        #expect(v4 == (try SocketAddress(ip: "10.1.2.3", port: 80)))
        #expect(v4 != (try SocketAddress(ip: "10.1.2.4", port: 80)))
        #expect(v4 != v4.withPort(81))
        let mapped = try SocketAddress(ip: "::ffff:10.1.2.3", port: 80)
        #expect(v4 != mapped, "an IPv4-mapped IPv6 address is another family")
        let v6 = try SocketAddress(ip: "2001:db8::1", port: 443)
        #expect(v6 == (try SocketAddress(ip: "2001:0db8:0:0:0:0:0:1", port: 443)))
        #expect(v6 != (try SocketAddress(ip: "2001:db8::2", port: 443)))
        #expect(v6 != (try SocketAddress(ip: "2001:db9::1", port: 443)), "the high word counts too")
        let set: Set = [v4, mapped, v6, try SocketAddress(ip: "10.1.2.3", port: 80), try SocketAddress(ip: "[2001:db8::1]", port: 443)]
        #expect(set.count == 3)
    }

    @Test("the port range is 0...65535", arguments: [0, 1, 65535])
    func validPorts(port: Int) throws {
        #expect(try SocketAddress(ip: "10.0.0.1", port: port).port == port)
    }

    @Test("ports outside 0...65535 are refused", arguments: [-1, 65536, 100_000])
    func invalidPorts(port: Int) {
        #expect {
            try SocketAddress(ip: "127.0.0.1", port: port)
        } throws: { error in
            guard let error = error as? ReactorError else { return false }
            return error.code == .invalidAddress && error.description.contains("65535")
        }
    }

    @Test(
        "non-numeric or malformed addresses are refused",
        arguments: ["", "localhost", "1.2.3", "256.1.1.1", "999.1.1.1", "1.2.3.4.5", ":::1", "[::1", "::1]", "[127.0.0.1]x", "abc"])
    func invalidAddresses(text: String) {
        #expect {
            try SocketAddress(ip: text, port: 80)
        } throws: { error in
            guard let error = error as? ReactorError else { return false }
            return error.code == .invalidAddress && error.host == text
        }
    }

    @Test("resolve accepts numeric addresses without a lookup and refuses names that do not resolve")
    func resolve() throws {
        #expect(try SocketAddress.resolve(host: "127.0.0.1", port: 5) == [try SocketAddress(ip: "127.0.0.1", port: 5)])
        #expect(try SocketAddress.resolve(host: "::1", port: 5) == [try SocketAddress(ip: "::1", port: 5)])
        #expect(throws: ReactorError.self) { try SocketAddress.resolve(host: "nonsense.invalid", port: 5) }
        #expect(throws: ReactorError.self) { try SocketAddress.resolve(host: "127.0.0.1", port: 70000) }
    }

    @Test("withPort changes only the port; equality and hashing follow address and port")
    func withPortAndEquality() throws {
        let address = try SocketAddress(ip: "::1", port: 1)
        let moved = address.withPort(2)
        #expect(moved.ip == "::1")
        #expect(moved.port == 2)
        #expect(moved != address)
        #expect(Set([address, moved, try SocketAddress(ip: "[::1]", port: 1)]).count == 2)
        #expect(try SocketAddress(ip: "127.0.0.1", port: 1) != SocketAddress(ip: "::1", port: 1))
    }
}

@Suite("ReactorError")
struct ReactorErrorTests {
    @Test(
        "errno values map to codes",
        arguments: [
            (EADDRINUSE, ReactorError.Code.addressInUse), (EADDRNOTAVAIL, .addressNotAvailable),
            (EACCES, .permissionDenied), (EPERM, .permissionDenied), (ECONNREFUSED, .connectionRefused),
            (ECONNRESET, .connectionReset), (EPIPE, .connectionReset), (ETIMEDOUT, .timedOut),
            (EHOSTUNREACH, .unreachable), (ENETUNREACH, .unreachable), (EMFILE, .tooManyOpenFiles),
            (ENFILE, .tooManyOpenFiles), (EINVAL, .system),
        ])
    func errnoCodes(errno: Int32, code: ReactorError.Code) {
        let error = ReactorError(errno: errno, operation: .connect)
        #expect(error.code == code)
        #expect(error.errno == errno)
    }

    @Test("a bind failure reads as one line: operation, address, cause, errno name, hint")
    func bindDescription() throws {
        let error = ReactorError(errno: EADDRINUSE, operation: .bind, address: try SocketAddress(ip: "127.0.0.1", port: 7007))
        #expect(error.description.hasPrefix("bind 127.0.0.1:7007: address already in use (EADDRINUSE); "), "\(error)")
        #expect(!error.description.contains("\n"))
    }

    @Test("a refused connect names the address and errno")
    func connectDescription() throws {
        let error = ReactorError(errno: ECONNREFUSED, operation: .connect, address: try SocketAddress(ip: "::1", port: 9))
        #expect(error.description == "connect [::1]:9: connection refused (ECONNREFUSED)")
    }

    @Test("errors without errno use the code's message, the host and the hint")
    func codeOnlyDescription() {
        let error = ReactorError(.invalidAddress, operation: .resolve, host: "nonsense.invalid", hint: "cannot resolve host")
        #expect(error.description == "resolve 'nonsense.invalid': invalid address; cannot resolve host")
        #expect(ReactorError(.reactorStopped, operation: .execute).description == "execute: the reactor has stopped")
    }

    @Test("CloseReason descriptions are readable")
    func closeReasonDescriptions() {
        #expect(CloseReason.endOfFile.description == "end of file")
        #expect(CloseReason.writeBufferLimitExceeded.description == "write buffer limit exceeded")
        let failure = CloseReason.failed(ReactorError(errno: EHOSTUNREACH, operation: .write))
        #expect(failure.description.hasPrefix("error: write: "))
    }

    @Test("inconsistent connection options are refused, naming the option and its value")
    func optionsValidate() {
        func refusal(_ change: (inout ConnectionOptions) -> Void) -> ReactorError? {
            var options = ConnectionOptions()
            change(&options)
            do {
                try options.validate()
                return nil
            } catch {
                return error
            }
        }
        #expect(refusal { _ in } == nil)
        let low = refusal { $0.writeBufferLowWatermark = $0.writeBufferHighWatermark }
        #expect(low?.code == .invalidOption)
        #expect(low?.option == "writeBufferLowWatermark")
        #expect(low?.value == "65536")
        #expect(
            low?.description
                == "check options: invalid writeBufferLowWatermark 65536; it must be at least 0 and below writeBufferHighWatermark (65536)")
        #expect(refusal { $0.writeBufferLimit = $0.writeBufferHighWatermark - 1 }?.option == "writeBufferLimit")
        #expect(refusal { $0.closeTimeout = .zero }?.option == "closeTimeout")
        #expect(refusal { $0.lingerTimeout = .seconds(-1) }?.option == "lingerTimeout")
        let idle = refusal { $0.idleTimeout = .zero }
        #expect(idle?.option == "idleTimeout")
        #expect(idle?.value == "0.0 seconds")
        #expect(refusal { $0.keepAlive = TCPKeepAlive(idle: .zero) }?.option == "keepAlive.idle")
        #expect(refusal { $0.keepAlive = TCPKeepAlive(idle: .seconds(32768)) }?.option == "keepAlive.idle")
        #expect(refusal { $0.keepAlive = TCPKeepAlive(idle: .seconds(1), interval: .seconds(-1)) }?.option == "keepAlive.interval")
        #expect(refusal { $0.keepAlive = TCPKeepAlive(idle: .seconds(1), count: 128) }?.option == "keepAlive.count")
        #expect(refusal { $0.keepAlive = TCPKeepAlive(idle: .milliseconds(1)) } == nil)
    }

    @Test("listener and UDP options are refused before a socket is opened")
    func listenerAndUDPOptionsValidate() throws {
        let reactor = try Reactor()
        var listener = ListenerOptions()
        listener.acceptBatch = 0
        #expect {
            try reactor.listen(host: "127.0.0.1", port: 0, options: listener) { _ in EchoBack() }
        } throws: { error in
            (error as? ReactorError).map { $0.code == .invalidOption && $0.option == "acceptBatch" && $0.value == "0" } ?? false
        }
        var udp = UDPOptions()
        udp.receiveBatch = 65
        #expect {
            try reactor.bindUDP(host: "127.0.0.1", port: 0, options: udp, handler: IgnoreDatagrams())
        } throws: { error in
            (error as? ReactorError).map {
                $0.description == "check options: invalid receiveBatch 65; it must be from 1 to 64"
            } ?? false
        }
    }
}

private final class EchoBack: ConnectionHandler {
    func received(_ bytes: RawSpan, on connection: Connection) { connection.write(bytes) }
}

private final class IgnoreDatagrams: DatagramHandler {
    func received(_ datagram: RawSpan, from sender: SocketAddress, on socket: UDPSocket) {}
}
