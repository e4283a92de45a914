// nio-line-echo: the SwiftNIO one-thread line echo that `reactor serve echo --framing
// line` is measured against (issue 3, Benchmarks/framing-bench.sh).
//
// Written the usual SwiftNIO way: one event loop (MultiThreadedEventLoopGroup with one
// thread), a ServerBootstrap, `ByteToMessageHandler(LineBasedFrameDecoder())` from
// NIOExtras splitting the stream into lines (without their "\n" or "\r\n"), and a
// handler that writes each line back followed by "\n" (one write per line), flushing
// once per read burst in channelReadComplete. TCP_NODELAY on every connection.
//
// Note: LineBasedFrameDecoder has no length limit; a peer that never sends "\n" grows
// the cumulation buffer without bound (the reactor's framer refuses past 64 KiB).
//
// Usage: nio-line-echo HOST PORT      (PORT 0 picks a free port)
// Prints "listening tcp HOST:PORT nio-line-echo" once ready; exits 0 on SIGINT/SIGTERM.

import Dispatch
import NIOCore
import NIOExtras
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

final class LineEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        // One write per line: the line and its "\n" in one buffer.
        var reply = context.channel.allocator.buffer(capacity: line.readableBytes + 1)
        reply.writeImmutableBuffer(line)
        reply.writeInteger(UInt8(ascii: "\n"))
        context.write(wrapOutboundOut(reply), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// Writes a line to stderr (the `stderr` global is not concurrency-safe in Swift 6).
func printError(_ text: String) {
    var text = text + "\n"
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

func fail(_ message: String) -> Never {
    printError("nio-line-echo: \(message)")
    exit(1)
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let port = Int(arguments[2]), (0...65535).contains(port) else {
    printError("usage: nio-line-echo HOST PORT")
    exit(2)
}
let host = arguments[1]

// Many connections need many descriptors: take the whole hard limit.
var limit = rlimit()
if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
    limit.rlim_cur = limit.rlim_max
    setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
            try channel.pipeline.syncOperations.addHandler(LineEchoHandler())
        }
    }

let server: Channel
do {
    server = try bootstrap.bind(host: host, port: port).wait()
} catch {
    fail("cannot listen on \(host):\(port): \(error)")
}
guard let address = server.localAddress, let boundPort = address.port, let ip = address.ipAddress else {
    fail("no local address")
}

// SIGINT/SIGTERM: close the listener, which ends the wait below.
var signalSources: [DispatchSourceSignal] = []
for sig in [SIGINT, SIGTERM] {
    signal(sig, SIG_IGN)
    let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
    source.setEventHandler { @Sendable in server.close(promise: nil) }
    source.resume()
    signalSources.append(source)
}

print(address.protocol == .inet6 ? "listening tcp [\(ip)]:\(boundPort) nio-line-echo" : "listening tcp \(ip):\(boundPort) nio-line-echo")
fflush(nil)

try? server.closeFuture.wait()
try? group.syncShutdownGracefully()
exit(0)
