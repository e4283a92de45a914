// The OS boundary's results on real sockets: what Socket's calls return for data, an
// empty non-blocking socket, a full one, the peer's FIN and a failure, so that callers
// can rely on IOResult instead of errno.

import Glibc
@testable import ReactorCore
import Testing

/// A connected pair of non-blocking stream sockets, closed at the end of the test.
private final class SocketPair {
    let left: Int32
    let right: Int32

    init() throws {
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds) == 0)
        left = fds[0]
        right = fds[1]
    }

    deinit {
        close(left)
        close(right)
    }
}

@Suite("Socket results")
struct SocketResultTests {
    @Test("read: bytes are done(n), an empty socket would block, the peer's shutdown is end of file")
    func readResults() throws {
        let pair = try SocketPair()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
        defer { buffer.deallocate() }
        #expect(Socket.read(pair.left, into: buffer) == .wouldBlock)
        let sent = Array("hello".utf8).withUnsafeBytes { Socket.send(pair.right, $0) }
        #expect(sent == .done(5))
        #expect(Socket.read(pair.left, into: buffer) == .done(5))
        #expect(Array(buffer.prefix(5)) == Array("hello".utf8))
        Socket.shutdownOutput(pair.right)
        #expect(Socket.read(pair.left, into: buffer) == .endOfFile)
    }

    @Test("send: done(n) until the socket is full, then it would block; three parts go in one call, in order")
    func sendResults() throws {
        let pair = try SocketPair()
        let chunk = [UInt8](repeating: 7, count: 64 * 1024)
        var total = 0
        var last = IOResult.done(0)
        // Bounded: the kernel's buffer for an AF_UNIX pair is far below 64 MiB.
        for _ in 0..<1024 {
            last = chunk.withUnsafeBytes { Socket.send(pair.left, $0) }
            guard case .done(let count) = last else { break }
            total += count
        }
        #expect(last == .wouldBlock, "after \(total) bytes")
        #expect(total > 0)

        let other = try SocketPair()
        let result = Array("ab".utf8).withUnsafeBytes { a in
            Array("".utf8).withUnsafeBytes { b in
                Array("cd".utf8).withUnsafeBytes { c in Socket.send(other.left, a, b, c) }
            }
        }
        #expect(result == .done(4))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
        defer { buffer.deallocate() }
        #expect(Socket.read(other.right, into: buffer) == .done(4))
        #expect(Array(buffer.prefix(4)) == Array("abcd".utf8))
    }

    @Test("a closed peer is failed(EPIPE) for send, with no SIGPIPE; a bad descriptor is failed(EBADF)")
    func failures() throws {
        var pair: SocketPair? = try SocketPair()
        let left = try #require(pair).left
        let survivor = dup(left)
        defer { close(survivor) }
        pair = nil  // closes both ends
        let result = Array("x".utf8).withUnsafeBytes { Socket.send(survivor, $0) }
        #expect(result == .failed(EPIPE) || result == .failed(ECONNRESET))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 1)
        defer { buffer.deallocate() }
        #expect(Socket.read(-1, into: buffer) == .failed(EBADF))
    }

    @Test("accept on a listener with nobody waiting would block; a waiting connect is done, with its peer")
    func acceptResults() throws {
        let address = try SocketAddress(ip: "127.0.0.1", port: 0)
        let listener = try Socket.open(.stream, for: address, SocketSettings(reuseAddress: true))
        defer { close(listener) }
        try Socket.bind(listener, to: address)
        try Socket.listen(listener, backlog: 4, address: address)
        #expect(Socket.accept(listener).result == .wouldBlock)

        let bound = try #require(SocketAddress.of(fd: listener, peer: false))
        let client = try Socket.open(.stream, for: bound)
        defer { close(client) }
        let connect = Socket.connect(client, to: bound)
        #expect(connect == .done(0) || connect == .wouldBlock)
        var accepted = Socket.accept(listener)
        for _ in 0..<100 where accepted.result == .wouldBlock {
            usleep(10_000)
            accepted = Socket.accept(listener)
        }
        #expect(accepted.result == .done(1))
        #expect(accepted.peer?.ip == "127.0.0.1")
        if accepted.fd >= 0 { close(accepted.fd) }
    }
}
