/// A first-in first-out run of bytes: a connection's output the kernel has not taken
/// yet, or a framed connection's input that does not yet hold a whole frame.
///
/// One contiguous buffer with a read and a write index. Its storage comes from the
/// reactor's ``BufferPool`` when the first byte arrives and goes back when the last one
/// is consumed, so an idle connection holds none and a busy one does not allocate per
/// write or per partial frame. Not copyable: two copies would share, and both return,
/// the same storage. The owner calls ``release(pool:)`` when it is done with it.
package struct ByteQueue: ~Copyable {
    private var storage: UnsafeMutableRawPointer?
    private var capacity = 0
    private var start = 0
    private var end = 0

    /// An empty queue; it takes storage on the first append.
    package init() {}

    package var count: Int { end - start }
    package var isEmpty: Bool { end == start }

    /// The queued bytes, oldest first, valid until the next mutation.
    package var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage.map { UnsafeRawPointer($0 + start) }, count: end - start)
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
        if storage == nil || end &+ total > capacity { reserve(total, pool: pool()) }
        let at = storage.unsafelyUnwrapped + end
        if a.count > 0 { at.copyMemory(from: a.baseAddress.unsafelyUnwrapped, byteCount: a.count) }
        if b.count > 0 { (at + a.count).copyMemory(from: b.baseAddress.unsafelyUnwrapped, byteCount: b.count) }
        if c.count == 1 {
            // A one-byte trailer (a newline, netstring's comma): a store, not a memmove call.
            (at + a.count + b.count).storeBytes(of: c.baseAddress.unsafelyUnwrapped.load(as: UInt8.self), as: UInt8.self)
        } else if c.count > 0 {
            (at + a.count + b.count).copyMemory(from: c.baseAddress.unsafelyUnwrapped, byteCount: c.count)
        }
        end &+= total
    }

    /// An empty part, for ``append(_:_:_:pool:)``.
    package static var none: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nil, count: 0) }

    /// Drops `n` sent bytes from the front; returns the storage to the pool once empty.
    package mutating func consume(_ n: Int, pool: BufferPool) {
        start += n
        if start == end { release(pool: pool) }
    }

    package mutating func release(pool: BufferPool) {
        if let storage { pool.give(storage, capacity: capacity) }
        storage = nil
        capacity = 0
        start = 0
        end = 0
    }

    /// Makes room for `extra` more bytes: slides the queued bytes to the front when that
    /// suffices, otherwise moves them to a larger buffer from the pool.
    @inline(never)
    private mutating func reserve(_ extra: Int, pool: BufferPool) {
        let used = end - start
        if used + extra <= capacity, let storage {
            // Enough room once the sent prefix is gone: slide the rest to the front.
            storage.copyMemory(from: storage + start, byteCount: used)
        } else {
            let (grown, grownCapacity) = pool.take(atLeast: used + extra)
            if let storage {
                grown.copyMemory(from: storage + start, byteCount: used)
                pool.give(storage, capacity: capacity)
            }
            storage = grown
            capacity = grownCapacity
        }
        start = 0
        end = used
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
