/// The requests a stream connection has in flight, oldest first, in fixed storage
/// allocated once per client: their times and tags in rings of `capacity` entries, their
/// bytes packed one after the other in a ring of `capacity + 1` times `requestRoom` bytes.
///
/// Packed, the requests built in one event lie side by side and leave in one write
/// (``takeUnsent(_:)``) instead of one write each: callgrind counted the write of each
/// request (the connection's checks, a copy into its output queue, the budget) at about
/// a tenth of a pipelined Redis request. Where they wrap around the ring, the two pieces
/// still leave in one `sendmsg`, so in one TCP segment: written one after the other, a
/// fifth of Redis GET batches (50 x 16) went out as two segments, each costing the
/// server's core a segment's receive and its acknowledgement.
struct InFlightQueue {
    let capacity: Int
    let requestRoom: Int
    private let intended: UnsafeMutablePointer<UInt64>
    private let sent: UnsafeMutablePointer<UInt64>
    private let start: UnsafeMutablePointer<Int>
    private let length: UnsafeMutablePointer<Int>
    private let tag: UnsafeMutablePointer<UInt64>
    private let bytes: UnsafeMutableRawBufferPointer
    private var head = 0
    /// Entries in the queue.
    private(set) var count = 0
    /// Where the next request's bytes go.
    private var end = 0
    /// The first byte of the requests not yet taken by ``takeUnsent(_:)``.
    private var unsentStart = 0
    /// When the unsent requests wrapped around the ring: where the first part ends (the
    /// second runs from 0 to `end`); -1 when they did not.
    private var unsentWrapEnd = -1

    init(capacity: Int, requestRoom: Int) {
        self.capacity = capacity
        self.requestRoom = requestRoom
        intended = .allocate(capacity: capacity)
        sent = .allocate(capacity: capacity)
        start = .allocate(capacity: capacity)
        length = .allocate(capacity: capacity)
        tag = .allocate(capacity: capacity)
        // One room more than the entries: whatever the lengths, the free stretch ahead of
        // `end` (or at the start, after wrapping) holds a whole room while an entry is free.
        bytes = .allocate(byteCount: Swift.max((capacity + 1) * requestRoom, 1), alignment: 8)
    }

    /// Frees the storage; the owner calls it once, from its deinit.
    func deallocate() {
        intended.deallocate()
        sent.deallocate()
        start.deallocate()
        length.deallocate()
        tag.deallocate()
        bytes.deallocate()
    }

    var isFull: Bool { count == capacity }

    /// The oldest entry's slot.
    var oldest: Int { head }

    /// The oldest entry's intended and actual send times.
    @inline(__always)
    var oldestTimes: (intended: UInt64, sent: UInt64) { (intended[head], sent[head]) }

    /// Slot `slot`'s request bytes and tag.
    @inline(__always)
    func request(_ slot: Int) -> (bytes: UnsafeRawBufferPointer, tag: UInt64) {
        (UnsafeRawBufferPointer(start: bytes.baseAddress! + start[slot], count: length[slot]), tag[slot])
    }

    /// Adds an entry and returns a buffer of `requestRoom` bytes for its request;
    /// ``commit(_:length:tag:)`` records what was written.
    @inline(__always)
    mutating func append(intended intendedAt: UInt64, sent sentAt: UInt64) -> (slot: Int, buffer: BenchRequestBuffer) {
        precondition(count < capacity, "InFlightQueue: append to a full queue")
        var tail = head + count
        if tail >= capacity { tail -= capacity }
        intended[tail] = intendedAt
        sent[tail] = sentAt
        count += 1
        if end + requestRoom > bytes.count { wrap() }
        start[tail] = end
        return (tail, BenchRequestBuffer(storage: UnsafeMutableRawBufferPointer(start: bytes.baseAddress! + end, count: requestRoom)))
    }

    /// Goes on at the start of the ring: the entries in flight end within a room of the
    /// end (or are behind the start), so with one entry free the first room is free.
    @inline(never)
    private mutating func wrap() {
        if unsentStart == end {
            unsentStart = 0
        } else {
            // Two wraps between takes would need more unsent bytes than the entries hold.
            precondition(unsentWrapEnd < 0, "InFlightQueue: wrapped twice with requests unsent")
            unsentWrapEnd = end
        }
        end = 0
    }

    /// Records the request just built in `slot`'s buffer: its length and tag.
    @inline(__always)
    mutating func commit(_ slot: Int, length bytes: Int, tag value: UInt64) {
        length[slot] = bytes
        tag[slot] = value
        end += bytes
    }

    /// Calls `body` once with the bytes of the requests committed since the last call,
    /// oldest first, in two pieces: where they wrap around the ring, the second piece is
    /// the part from the ring's start, otherwise it is empty. Marks them taken. Nothing
    /// committed since: `body` is not called.
    @inline(__always)
    mutating func takeUnsent(_ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) -> Void) {
        let base = UnsafeRawPointer(bytes.baseAddress!)
        if unsentWrapEnd >= 0 {
            body(
                UnsafeRawBufferPointer(start: base + unsentStart, count: unsentWrapEnd - unsentStart),
                UnsafeRawBufferPointer(start: base, count: end))
            unsentWrapEnd = -1
        } else {
            guard end > unsentStart else { return }
            body(UnsafeRawBufferPointer(start: base + unsentStart, count: end - unsentStart), UnsafeRawBufferPointer(start: nil, count: 0))
        }
        unsentStart = end
    }

    /// The intended send time of the entry `offset` places after the oldest.
    func intended(at offset: Int) -> UInt64 {
        var slot = head + offset
        if slot >= capacity { slot -= capacity }
        return intended[slot]
    }

    @inline(__always)
    mutating func removeOldest() {
        head += 1
        if head == capacity { head = 0 }
        count -= 1
    }

    /// Empties the queue, requests not yet taken included.
    mutating func removeAll() {
        head = 0
        count = 0
        end = 0
        unsentStart = 0
        unsentWrapEnd = -1
    }
}
