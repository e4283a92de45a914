/// The requests a stream connection has in flight, oldest first, in fixed storage: a
/// ring of at most `capacity` entries, each with the bytes of its request (room for
/// `requestRoom` bytes), allocated once per client.
struct InFlightQueue {
    let capacity: Int
    let requestRoom: Int
    private let intended: UnsafeMutablePointer<UInt64>
    private let sent: UnsafeMutablePointer<UInt64>
    private let length: UnsafeMutablePointer<Int>
    private let tag: UnsafeMutablePointer<UInt64>
    private let requests: UnsafeMutableRawBufferPointer
    private var head = 0
    /// Entries in the queue.
    private(set) var count = 0

    init(capacity: Int, requestRoom: Int) {
        self.capacity = capacity
        self.requestRoom = requestRoom
        intended = .allocate(capacity: capacity)
        sent = .allocate(capacity: capacity)
        length = .allocate(capacity: capacity)
        tag = .allocate(capacity: capacity)
        requests = .allocate(byteCount: Swift.max(capacity * requestRoom, 1), alignment: 8)
    }

    /// Frees the storage; the owner calls it once, from its deinit.
    func deallocate() {
        intended.deallocate()
        sent.deallocate()
        length.deallocate()
        tag.deallocate()
        requests.deallocate()
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
        (UnsafeRawBufferPointer(rebasing: requests[(slot * requestRoom)..<(slot * requestRoom + length[slot])]), tag[slot])
    }

    /// Adds an entry and returns a buffer for its request; ``commit(_:length:tag:)`` records what was written.
    @inline(__always)
    mutating func append(intended intendedAt: UInt64, sent sentAt: UInt64) -> (slot: Int, buffer: BenchRequestBuffer) {
        var tail = head + count
        if tail >= capacity { tail -= capacity }
        intended[tail] = intendedAt
        sent[tail] = sentAt
        count += 1
        let room = UnsafeMutableRawBufferPointer(rebasing: requests[(tail * requestRoom)..<((tail + 1) * requestRoom)])
        return (tail, BenchRequestBuffer(storage: room))
    }

    @inline(__always)
    func commit(_ slot: Int, length bytes: Int, tag value: UInt64) {
        length[slot] = bytes
        tag[slot] = value
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

    mutating func removeAll() {
        head = 0
        count = 0
    }
}
