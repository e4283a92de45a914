// A plain POSIX UDP socket on the test's side of the wire, written independently of the
// framework's UDP code: blocking sends, receives bounded by poll() and a deadline.

import Foundation
import Glibc
import ReactorCore

/// A UDP socket in the test process, bound to `host` and `port` (0: any free port).
public final class UDPTestClient {
    public let fd: Int32
    public let address: SocketAddress
    public var port: Int { address.port }

    /// Binds the socket; `bufferSize` sets SO_SNDBUF and SO_RCVBUF (large datagrams need room).
    public init(host: String = "127.0.0.1", port: Int = 0, bufferSize: Int32 = 1 << 20) throws {
        let requested = try SocketAddress(ip: host, port: port)
        let domain = requested.family == .ipv4 ? AF_INET : AF_INET6
        let fd = socket(domain, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: \(String(cString: strerror(errno)))") }
        var size = bufferSize
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        guard withSockAddr(requested, { bind(fd, $0, $1) }) == 0 else {
            let error = errno
            Glibc.close(fd)
            throw TestFailure("bind \(requested): \(String(cString: strerror(error)))")
        }
        self.fd = fd
        self.address = requested.withPort(boundPort(of: fd))
    }

    deinit { Glibc.close(fd) }

    /// Sends one datagram to `destination`.
    public func send(_ bytes: [UInt8], to destination: SocketAddress) throws {
        let sent = bytes.withUnsafeBytes { buffer in
            withSockAddr(destination) { sendto(fd, buffer.baseAddress, buffer.count, 0, $0, $1) }
        }
        guard sent == bytes.count else { throw TestFailure("sendto \(destination): \(String(cString: strerror(errno)))") }
    }

    /// Sends equal-sized `datagrams` (the last may be shorter) as one UDP_SEGMENT (GSO)
    /// message, as QUIC stacks and load generators do; the kernel splits it.
    public func sendSegmented(_ datagrams: [[UInt8]], to destination: SocketAddress) throws {
        let whole = datagrams.flatMap { $0 }
        var size = UInt16(datagrams[0].count)
        let solUDP: Int32 = 17, udpSegment: Int32 = 103  // <netinet/udp.h>
        let sent = whole.withUnsafeBytes { buffer in
            withSockAddr(destination) { address, length in
                var part = iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress), iov_len: buffer.count)
                let controlSize = MemoryLayout<cmsghdr>.size + 8
                var control = [UInt8](repeating: 0, count: controlSize)
                return control.withUnsafeMutableBytes { controlBytes in
                    let header = controlBytes.baseAddress!.assumingMemoryBound(to: cmsghdr.self)
                    header.pointee.cmsg_level = solUDP
                    header.pointee.cmsg_type = udpSegment
                    header.pointee.cmsg_len = MemoryLayout<cmsghdr>.size + MemoryLayout<UInt16>.size
                    (controlBytes.baseAddress! + MemoryLayout<cmsghdr>.size).copyMemory(from: &size, byteCount: 2)
                    return withUnsafeMutablePointer(to: &part) { partPointer in
                        var message = msghdr()
                        message.msg_name = UnsafeMutableRawPointer(mutating: address)
                        message.msg_namelen = length
                        message.msg_iov = partPointer
                        message.msg_iovlen = 1
                        message.msg_control = controlBytes.baseAddress
                        message.msg_controllen = controlSize
                        return sendmsg(fd, &message, 0)
                    }
                }
            }
        }
        guard sent == whole.count else { throw TestFailure("sendmsg UDP_SEGMENT: \(String(cString: strerror(errno)))") }
    }

    /// The next datagram and its sender's port, or nil when none comes within `timeout`.
    public func receive(timeout: Duration = .seconds(5)) -> (bytes: [UInt8], fromPort: Int)? {
        let deadline = Deadline(timeout)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, deadline.remainingMilliseconds) > 0 else { return nil }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0, &length)
                    }
                }
            }
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return nil
            }
            let port = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
            }
            return (Array(buffer[..<count]), port)
        }
    }

    /// Every datagram that arrives until none has come for `quiet`.
    public func receiveAll(quiet: Duration = .milliseconds(300)) -> [[UInt8]] {
        var all: [[UInt8]] = []
        while let next = receive(timeout: quiet) { all.append(next.bytes) }
        return all
    }
}
