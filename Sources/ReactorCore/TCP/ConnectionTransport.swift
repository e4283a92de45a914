import Glibc

/// The calls through which a ``Connection`` moves bytes: on its socket (``Socket``), or,
/// for tests, on a ``MemoryTransport`` (the connection's descriptor is then -1). Both
/// answer with the same ``IOResult``, so the connection's logic is the same on both, and
/// the socket path pays one comparison for the choice.
///
/// A plain value (the memory transport is held as one retain taken here and given back by
/// ``releaseMemory()`` in the connection's deinit), so passing it along the write path
/// costs no reference counting.
struct ConnectionTransport {
    // The pointer first: the descriptor then sits in the struct's last four bytes, and the
    // connection's next stored property can use the four after it.
    private let unmanagedMemory: Unmanaged<MemoryTransport>?
    let fd: Int32

    init(fd: Int32) {
        self.fd = fd
        self.unmanagedMemory = nil
    }

    init(memory: MemoryTransport) {
        self.fd = -1
        self.unmanagedMemory = .passRetained(memory)
    }

    /// Gives back the retain of the memory transport; the owner calls it once, last.
    func releaseMemory() {
        unmanagedMemory?.release()
    }

    private var memory: MemoryTransport { unmanagedMemory.unsafelyUnwrapped.takeUnretainedValue() }

    var isMemory: Bool { fd < 0 }

    @inline(__always)
    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        if fd >= 0 { return Socket.read(fd, into: buffer) }
        return memory.read(into: buffer)
    }

    @inline(__always)
    func send(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        if fd >= 0 { return Socket.send(fd, bytes) }
        return memory.send(bytes, ByteQueue.none, ByteQueue.none)
    }

    /// One gathered send of three parts (`sendmsg`), any of them empty.
    @inline(__always)
    func send(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer) -> IOResult {
        if fd >= 0 { return Socket.send(fd, a, b, c) }
        return memory.send(a, b, c)
    }

    func shutdownOutput() {
        if fd >= 0 { Socket.shutdownOutput(fd) } else { memory.isOutputShutdown = true }
    }

    /// Closes; with `reset`, the peer sees RST and unsent data is dropped.
    func close(reset: Bool) {
        if fd < 0 {
            memory.closed(reset: reset)
        } else if reset {
            Socket.closeWithReset(fd)
        } else {
            Socket.close(fd)
        }
    }
}

/// A connection's socket in memory, for tests that need no kernel: the bytes the peer
/// sends wait in ``inbound`` until the connection reads them, what the connection sends
/// lands in ``written``, and ``sendWindow`` stands for the room in the kernel's send
/// buffer (a send beyond it would block). SwiftNIO's `EmbeddedChannel` is the model.
///
/// ``EmbeddedConnection`` (in ReactorTestSupport) drives a connection over one.
package final class MemoryTransport {
    /// Bytes the peer sent that the connection has not read yet.
    package var inbound: [UInt8] = []
    /// The peer sent FIN after ``inbound``.
    package var inboundEnded = false
    /// The most bytes one read returns (a real socket hands over what has arrived; tests
    /// use it to split a stream across reads).
    package var readLimit = Int.max
    /// Everything the connection sent, in order.
    package var written: [UInt8] = []
    /// Sends that took bytes (system calls, on a socket).
    package private(set) var sends = 0
    /// How many more bytes sends may take before they would block (EAGAIN).
    package var sendWindow = Int.max
    /// The errno the next send fails with, once (ECONNRESET: the peer reset).
    package var failNextSend: Int32?
    /// The connection shut down its sending side (FIN).
    package internal(set) var isOutputShutdown = false
    /// The connection closed the socket.
    package private(set) var isClosed = false
    /// It closed with a reset (RST: SO_LINGER 0).
    package private(set) var wasReset = false

    package init() {}

    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        guard !inbound.isEmpty else { return inboundEnded ? .endOfFile : .wouldBlock }
        let count = Swift.min(inbound.count, buffer.count, readLimit)
        inbound.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: count) }
        inbound.removeFirst(count)
        return .done(count)
    }

    func send(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer) -> IOResult {
        if let error = failNextSend {
            failNextSend = nil
            return .failed(error)
        }
        if isOutputShutdown { return .failed(EPIPE) }
        var taken = 0
        for part in [a, b, c] {
            let take = Swift.min(part.count, sendWindow - taken)
            written.append(contentsOf: UnsafeRawBufferPointer(rebasing: part[..<take]))
            taken += take
        }
        guard taken > 0 || a.count + b.count + c.count == 0 else { return .wouldBlock }
        sendWindow -= taken
        sends += 1
        return .done(taken)
    }

    func closed(reset: Bool) {
        isClosed = true
        wasReset = reset
    }
}
