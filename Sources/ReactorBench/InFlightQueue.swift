/// The requests a stream connection has in flight, oldest first, in fixed storage: a
/// ring of at most `capacity` entries, allocated once per client.
struct InFlightQueue {
    let capacity: Int
    private let intended: UnsafeMutablePointer<UInt64>
    private let sent: UnsafeMutablePointer<UInt64>
    private let request: UnsafeMutablePointer<Int>
    private var head = 0
    /// Entries in the queue.
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = capacity
        intended = .allocate(capacity: capacity)
        sent = .allocate(capacity: capacity)
        request = .allocate(capacity: capacity)
    }

    /// Frees the storage; the owner calls it once, from its deinit.
    func deallocate() {
        intended.deallocate()
        sent.deallocate()
        request.deallocate()
    }

    var isFull: Bool { count == capacity }

    /// The oldest entry's request index, intended and actual send times.
    @inline(__always)
    var oldest: (request: Int, intended: UInt64, sent: UInt64) {
        (request[head], intended[head], sent[head])
    }

    @inline(__always)
    mutating func append(request index: Int, intended intendedAt: UInt64, sent sentAt: UInt64) {
        var tail = head + count
        if tail >= capacity { tail -= capacity }
        request[tail] = index
        intended[tail] = intendedAt
        sent[tail] = sentAt
        count += 1
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
