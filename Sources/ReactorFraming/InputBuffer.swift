/// Bytes received but not yet framed: the tail of a read that ended mid-frame, or the
/// rest of a read whose delivery was paused. Storage is allocated only while bytes are
/// waiting and freed once they are consumed, so an idle connection holds none.
struct InputBuffer {
    private var storage: UnsafeMutableRawPointer?
    private var capacity = 0
    private var start = 0
    private var end = 0

    var count: Int { end - start }
    var isEmpty: Bool { end == start }

    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage.map { UnsafeRawPointer($0 + start) }, count: end - start)
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, let source = bytes.baseAddress else { return }
        let used = end - start
        if end + bytes.count > capacity {
            if used + bytes.count <= capacity, let storage {
                storage.copyMemory(from: storage + start, byteCount: used)
            } else {
                var grown = Swift.max(capacity * 2, 4096)
                while grown < used + bytes.count { grown *= 2 }
                let fresh = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 16)
                if let storage {
                    fresh.copyMemory(from: storage + start, byteCount: used)
                    storage.deallocate()
                }
                storage = fresh
                capacity = grown
            }
            start = 0
            end = used
        }
        (storage! + end).copyMemory(from: source, byteCount: bytes.count)
        end += bytes.count
    }

    mutating func consume(_ n: Int) {
        start += n
        if start == end { release() }
    }

    mutating func release() {
        storage?.deallocate()
        storage = nil
        capacity = 0
        start = 0
        end = 0
    }
}
