/// A first-in first-out run of bytes: a connection's output the kernel has not taken
/// yet, or a framed connection's input that does not yet hold a whole frame.
///
/// One contiguous buffer with a read and a write index, both kept at the buffer's front.
/// Its storage comes from the reactor's ``BufferPool`` when the first byte arrives and goes
/// back when the last one is consumed, so an idle connection holds none (and pays one
/// pointer for the queue) and a busy one does not allocate per write or per partial frame. Not copyable: two copies would share, and both return,
/// the same storage. The owner calls ``release(pool:)`` when it is done with it.
package struct ByteQueue: ~Copyable {
    /// The buffer from the pool, nil while the queue is empty. Its first bytes are the
    /// ``Header``, the queued bytes follow: kept there rather than here, an empty queue costs
    /// its owner one pointer instead of four words (every connection has one, and a framed
    /// connection two: docs/performance.md, "Heap per idle connection").
    private var buffer: UnsafeMutableRawPointer?

    /// Where the queued bytes are in the buffer: offsets from its start.
    private struct Header {
        /// The buffer's size, as the pool gave it.
        var size: Int
        var start: Int
        var end: Int
    }

    /// The header's room at the front of a buffer, rounded up to 16 bytes.
    private static let headerSize = (MemoryLayout<Header>.size + 15) & ~15

    /// An empty queue; it takes storage on the first append.
    package init() {}

    @inline(__always)
    private static func header(_ buffer: UnsafeMutableRawPointer) -> UnsafeMutablePointer<Header> {
        buffer.assumingMemoryBound(to: Header.self)
    }

    package var count: Int {
        guard let buffer else { return 0 }
        let header = ByteQueue.header(buffer)
        return header.pointee.end &- header.pointee.start
    }

    /// A queue holds storage exactly while it holds bytes.
    package var isEmpty: Bool { buffer == nil }

    /// The queued bytes, oldest first, valid until the next mutation.
    package var bytes: UnsafeRawBufferPointer {
        guard let buffer else { return ByteQueue.none }
        let header = ByteQueue.header(buffer)
        return UnsafeRawBufferPointer(start: buffer + header.pointee.start, count: header.pointee.end &- header.pointee.start)
    }

    /// Appends up to three parts, any of them empty (a frame's header, payload and
    /// trailer), with one capacity check. Inlined: a reply per pipelined request comes
    /// through here, and the storage usually has room; the pool is asked for (and its
    /// reference taken) only when it does not.
    @inline(__always)
    package mutating func append(
        _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer = ByteQueue.none,
        _ c: UnsafeRawBufferPointer = ByteQueue.none, pool: @autoclosure () -> BufferPool
    ) {
        let total = a.count &+ b.count &+ c.count
        guard total > 0 else { return }
        let header: UnsafeMutablePointer<Header>
        if let buffer, ByteQueue.header(buffer).pointee.end &+ total <= ByteQueue.header(buffer).pointee.size {
            header = ByteQueue.header(buffer)
        } else {
            header = reserve(total, pool: pool())
        }
        let at = UnsafeMutableRawPointer(header) + header.pointee.end
        if a.count > 0 { at.copyMemory(from: a.baseAddress.unsafelyUnwrapped, byteCount: a.count) }
        if b.count > 0 { (at + a.count).copyMemory(from: b.baseAddress.unsafelyUnwrapped, byteCount: b.count) }
        if c.count == 1 {
            // A one-byte trailer (a newline, netstring's comma): a store, not a memmove call.
            (at + a.count + b.count).storeBytes(of: c.baseAddress.unsafelyUnwrapped.load(as: UInt8.self), as: UInt8.self)
        } else if c.count > 0 {
            (at + a.count + b.count).copyMemory(from: c.baseAddress.unsafelyUnwrapped, byteCount: c.count)
        }
        header.pointee.end &+= total
    }

    /// An empty part, for ``append(_:_:_:pool:)``.
    package static var none: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    /// Drops `n` sent bytes from the front; returns the storage to the pool once empty.
    package mutating func consume(_ n: Int, pool: BufferPool) {
        guard let buffer else { return }
        let header = ByteQueue.header(buffer)
        header.pointee.start &+= n
        if header.pointee.start == header.pointee.end { release(pool: pool) }
    }

    package mutating func release(pool: BufferPool) {
        if let buffer { pool.give(buffer, capacity: ByteQueue.header(buffer).pointee.size) }
        buffer = nil
    }

    /// Makes room for `extra` more bytes and returns the header: takes a buffer from the
    /// pool for an empty queue, slides the queued bytes to the front when that suffices,
    /// otherwise moves them to a larger buffer.
    @inline(never)
    private mutating func reserve(_ extra: Int, pool: BufferPool) -> UnsafeMutablePointer<Header> {
        let headerSize = ByteQueue.headerSize
        guard let buffer else {
            let (fresh, size) = pool.take(atLeast: headerSize + extra)
            self.buffer = fresh
            let header = fresh.bindMemory(to: Header.self, capacity: 1)
            header.initialize(to: Header(size: size, start: headerSize, end: headerSize))
            return header
        }
        let header = ByteQueue.header(buffer)
        let used = header.pointee.end - header.pointee.start
        if headerSize + used + extra <= header.pointee.size {
            // Enough room once the sent prefix is gone: slide the rest to the front.
            (buffer + headerSize).copyMemory(from: buffer + header.pointee.start, byteCount: used)
            header.pointee.start = headerSize
            header.pointee.end = headerSize + used
            return header
        }
        let (grown, size) = pool.take(atLeast: headerSize + used + extra)
        (grown + headerSize).copyMemory(from: buffer + header.pointee.start, byteCount: used)
        pool.give(buffer, capacity: header.pointee.size)
        self.buffer = grown
        let grownHeader = grown.bindMemory(to: Header.self, capacity: 1)
        grownHeader.initialize(to: Header(size: size, start: headerSize, end: headerSize + used))
        return grownHeader
    }
}

/// Free queue buffers kept by size class (16 KiB doubling up to 1 MiB) so connections
/// that fill and drain their queues do not call malloc each time. Bounded: at most
/// ``maxFreePerClass`` buffers wait in each class; larger buffers are freed at once.
/// One per reactor, used on its thread only.
package final class BufferPool {
    static let smallestClass = 16 * 1024
    static let classCount = 7
    static let maxFreePerClass = 64

    private var free: [[UnsafeMutableRawPointer]] = Array(repeating: [], count: BufferPool.classCount)

    func take(atLeast size: Int) -> (UnsafeMutableRawPointer, Int) {
        var capacity = BufferPool.smallestClass
        var sizeClass = 0
        while capacity < size {
            capacity *= 2
            sizeClass += 1
        }
        if sizeClass < BufferPool.classCount, let buffer = free[sizeClass].popLast() {
            return (buffer, capacity)
        }
        return (.allocate(byteCount: capacity, alignment: 16), capacity)
    }

    func give(_ buffer: UnsafeMutableRawPointer, capacity: Int) {
        let sizeClass = (capacity / BufferPool.smallestClass).trailingZeroBitCount
        if sizeClass < BufferPool.classCount, free[sizeClass].count < BufferPool.maxFreePerClass {
            free[sizeClass].append(buffer)
        } else {
            buffer.deallocate()
        }
    }

    func drain() {
        for sizeClass in free.indices {
            for buffer in free[sizeClass] { buffer.deallocate() }
            free[sizeClass].removeAll()
        }
    }

    deinit { drain() }
}
