// nio-echo: the SwiftNIO one-thread echo servers `reactor serve echo` is measured
// against (issue 3's framing-bench.sh, issue 5's `reactor bench suite`).
//
// Written the usual SwiftNIO way: one event loop (MultiThreadedEventLoopGroup with one
// thread), a ServerBootstrap (TCP_NODELAY on every connection) or a DatagramBootstrap,
// and per mode:
//   raw    every chunk read is written back
//   line   ByteToMessageHandler(LineBasedFrameDecoder()) from NIOExtras, one write per
//          line (the line + "\n")
//   int32  ByteToMessageHandler(LengthFieldBasedFrameDecoder(.fourBytes)) and
//          LengthFieldPrepender(.fourBytes) from NIOExtras (4-byte big-endian length)
//   udp    each datagram back to its sender (AddressedEnvelope); 64 KiB receive
//          buffers, so no datagram is cut short (NIO's default is 2048 bytes)
// Replies are flushed once per read burst, in channelReadComplete.
//
// Note: neither LineBasedFrameDecoder nor LengthFieldBasedFrameDecoder has a length
// limit; a peer can grow the cumulation buffer without bound (the reactor's framers
// refuse frames past 64 KiB).
//
// Usage: nio-echo raw|line|int32|udp HOST PORT      (PORT 0 picks a free port)
// Prints "listening tcp|udp HOST:PORT nio-MODE-echo" once ready; exits 0 on
// SIGINT/SIGTERM.

import Dispatch
import NIOCore
import NIOExtras
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a line to stderr (the `stderr` global is not concurrency-safe in Swift 6).
func printError(_ text: String) {
    var text = text + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    printError("nio-echo: \(message)")
    exit(1)
}

let arguments = CommandLine.arguments
let modes = ["raw", "line", "int32", "udp"]
guard arguments.count == 4, modes.contains(arguments[1]), let port = Int(arguments[3]), (0...65535).contains(port)
else {
    printError("usage: nio-echo raw|line|int32|udp HOST PORT")
    exit(2)
}
let mode = arguments[1]
let host = arguments[2]

// Many connections need many descriptors: take the whole hard limit.
var limit = rlimit()
if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

func tcpBootstrap(_ addHandlers: @escaping @Sendable (ChannelPipeline.SynchronousOperations) throws -> Void)
    -> ServerBootstrap
{
    ServerBootstrap(group: group)
        .serverChannelOption(.backlog, value: 1024)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try addHandlers(channel.pipeline.syncOperations) }
        }
}

let server: Channel
do {
    switch mode {
    case "raw":
        server = try tcpBootstrap { try $0.addHandler(RawEchoHandler()) }.bind(host: host, port: port).wait()
    case "line":
        server = try tcpBootstrap { pipeline in
            try pipeline.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
            try pipeline.addHandler(LineEchoHandler())
        }.bind(host: host, port: port).wait()
    case "int32":
        server = try tcpBootstrap { pipeline in
            try pipeline.addHandler(ByteToMessageHandler(LengthFieldBasedFrameDecoder(lengthFieldBitLength: .fourBytes)))
            try pipeline.addHandler(LengthFieldPrepender(lengthFieldBitLength: .fourBytes))
            try pipeline.addHandler(FrameEchoHandler())
        }.bind(host: host, port: port).wait()
    default:
        server = try DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65536))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramEchoHandler())
                }
            }
            .bind(host: host, port: port).wait()
    }
} catch {
    fail("cannot bind \(host):\(port): \(error)")
}
guard let address = server.localAddress, let boundPort = address.port, let ip = address.ipAddress else {
    fail("no local address")
}

// SIGINT/SIGTERM: close the server channel, which ends the wait below.
var signalSources: [DispatchSourceSignal] = []
for sig in [SIGINT, SIGTERM] {
    signal(sig, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
    source.setEventHandler { @Sendable in server.close(promise: nil) }
    source.resume()
    signalSources.append(source)
}

let transport = mode == "udp" ? "udp" : "tcp"
let shownHost = address.protocol == .inet6 ? "[\(ip)]" : ip
print("listening \(transport) \(shownHost):\(boundPort) nio-\(mode)-echo")
fflush(nil)

try? server.closeFuture.wait()
try? group.syncShutdownGracefully()
exit(0)
