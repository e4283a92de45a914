/// One frame received by an ``AsyncConnection``: its payload's bytes, immutable and
/// `Sendable`, valid for as long as the value is kept.
///
/// A frame is a slice of a chunk the connection copied it into: frames of one read share
/// a chunk, and a chunk whose frames have all been dropped is reused, so a consumer that
/// keeps up costs no allocation per frame (docs/async.md, "Memory").
///
/// It is a collection of bytes: `String(decoding: frame, as: UTF8.self)`, `Array(frame)`,
/// `frame.first`, or ``withUnsafeBytes(_:)`` for the memory itself.
public struct Frame: RandomAccessCollection, Sendable, Hashable, CustomStringConvertible {
    let storage: FrameStorage
    let offset: Int
    /// The number of bytes.
    public let count: Int

    init(storage: FrameStorage, offset: Int, count: Int) {
        self.storage = storage
        self.offset = offset
        self.count = count
    }

    /// A frame holding a copy of `bytes` (for tests, and to send stored bytes again).
    public init(_ bytes: some Collection<UInt8>) {
        let storage = FrameStorage(capacity: bytes.count)
        UnsafeMutableRawBufferPointer(start: storage.base, count: bytes.count).copyBytes(from: bytes)
        self.init(storage: storage, offset: 0, count: bytes.count)
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(position: Int) -> UInt8 {
        precondition(position >= 0 && position < count, "Frame index out of range")
        return storage.base.load(fromByteOffset: offset + position, as: UInt8.self)
    }

    /// Runs `body` with the frame's bytes, valid only during the call.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: storage.base + offset, count: count))
    }

    /// The bytes as a `RawSpan`, for APIs that take one, valid only during the call.
    public func withBytes<R, E: Error>(_ body: (RawSpan) throws(E) -> R) throws(E) -> R {
        try withUnsafeBytes { (buffer) throws(E) -> R in try body(unsafe RawSpan(_unsafeBytes: buffer)) }
    }

    /// The payload decoded as UTF-8 (invalid sequences become U+FFFD).
    public var string: String { String(decoding: self, as: UTF8.self) }

    public var description: String { string.debugDescription }

    public static func == (lhs: Frame, rhs: Frame) -> Bool {
        lhs.count == rhs.count && lhs.withUnsafeBytes { a in rhs.withUnsafeBytes { b in a.elementsEqual(b) } }
    }

    public func hash(into hasher: inout Hasher) {
        withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

/// Memory frames are copied into. Bytes below a published frame's end are never written
/// again while a frame refers to them: the arena writes only past ``used``, and rewinds a
/// chunk only when no frame holds it (it is uniquely referenced). That is what makes the
/// frames safe to read from any thread.
final class FrameStorage: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let capacity: Int
    /// Bytes handed out; changed only on the reactor thread, by the arena.
    var used = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(byteCount: Swift.max(capacity, 1), alignment: 16)
    }

    deinit {
        base.deallocate()
    }
}

/// Copies received frames into chunks, two at most kept per connection: the one being
/// filled and a spare that its frames may still hold. A chunk comes back into use once
/// the consumer has dropped all its frames, so steady traffic allocates nothing.
struct FrameArena {
    let chunkSize: Int
    private var current: FrameStorage?
    private var spare: FrameStorage?

    init(chunkSize: Int) {
        self.chunkSize = chunkSize
    }

    mutating func copy(_ bytes: RawSpan) -> Frame {
        bytes.withUnsafeBytes { copy($0) }
    }

    mutating func copy(_ bytes: UnsafeRawBufferPointer) -> Frame {
        let count = bytes.count
        // A frame as large as a quarter chunk gets memory of its own: chunks stay small.
        guard count * 4 <= chunkSize else {
            let storage = FrameStorage(capacity: count)
            storage.base.copyMemory(from: bytes.baseAddress!, byteCount: count)
            return Frame(storage: storage, offset: 0, count: count)
        }
        if current == nil || current!.capacity - current!.used < count { nextChunk() }
        let chunk = current!
        let offset = chunk.used
        if count > 0 { (chunk.base + offset).copyMemory(from: bytes.baseAddress!, byteCount: count) }
        chunk.used = offset + count
        return Frame(storage: chunk, offset: offset, count: count)
    }

    private mutating func nextChunk() {
        if current != nil, isKnownUniquelyReferenced(&current!) {
            current!.used = 0
            return
        }
        if spare != nil, isKnownUniquelyReferenced(&spare!) {
            swap(&current, &spare)
            current!.used = 0
            return
        }
        // Both still hold frames the consumer has: keep the newer one as the spare.
        spare = current
        current = FrameStorage(capacity: chunkSize)
    }

    /// Lets the chunks go (the frames handed out keep theirs alive).
    mutating func release() {
        current = nil
        spare = nil
    }
}
