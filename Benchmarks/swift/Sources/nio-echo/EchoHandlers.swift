// The channel handlers of nio-echo, one per mode. Each writes its replies without
// flushing and flushes once per read burst, in channelReadComplete, as SwiftNIO's
// examples do.

import NIOCore

/// raw: every chunk read goes straight back.
final class RawEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// line: after `ByteToMessageHandler(LineBasedFrameDecoder())`, which passes each line
/// without its "\n" or "\r\n"; one write per line, the line and its "\n" in one buffer.
final class LineEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
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

/// int32: between `ByteToMessageHandler(LengthFieldBasedFrameDecoder)`, which passes
/// each payload without its length, and `LengthFieldPrepender`, which writes the length
/// back in front of each reply: the payload goes back as it came.
final class FrameEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

/// udp: every datagram goes back to the address it came from. Errors are not fatal
/// (one peer's failed send must not close the socket every peer shares).
final class DatagramEchoHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let datagram = unwrapInboundIn(data)
        context.write(wrapOutboundOut(AddressedEnvelope(remoteAddress: datagram.remoteAddress, data: datagram.data)),
                      promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {}
}
