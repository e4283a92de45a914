import ReactorCore

/// The framer a ``FramedConnection`` uses, with the two calls made per frame (find the
/// next frame, encode a header) compiled for its concrete type (see ``SpecializedFramer``).
/// For the built-in framers they then call `nextFrame` and `encodeHeader` directly, where
/// the optimizer can inline them, instead of through an `any Framer` (a projection and a
/// witness thunk per call, twice per echoed frame). Framers from other modules go through
/// ``AnyFramer``, which costs what `any` costs.
class FramerEngine {
    /// The framer's trailer in raw storage, so sending a frame reads it without retaining
    /// an array.
    let trailer: UnsafeRawBufferPointer
    private let code: FramerCode

    init(trailer: [UInt8], code: FramerCode) {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: trailer.count, alignment: 1)
        storage.copyBytes(from: trailer)
        self.trailer = UnsafeRawBufferPointer(storage)
        self.code = code
    }

    deinit {
        trailer.deallocate()
    }

    /// The framer, as the public ``FramedConnection/framer`` property shows it.
    var framer: any Framer { fatalError("FramerEngine is abstract") }

    /// See ``Framer/maxFrameLength``.
    var maxFrameLength: Int { fatalError("FramerEngine is abstract") }

    /// False for a framer from another module, which goes through ``AnyFramer``.
    var isSpecialized: Bool { fatalError("FramerEngine is abstract") }

    /// See ``Framer/encodeHeader(for:into:)``.
    @inline(__always)
    /// `decoded` is the payload of the frame being delivered (none outside delivery): a
    /// `payload` that is those very bytes may skip the framer's checks.
    final func encodeHeader(
        for payload: RawSpan, into header: UnsafeMutableRawBufferPointer, decoded: UnsafeRawBufferPointer
    ) throws(FramingError) -> Int {
        try code.encodeHeader(self, payload, header, decoded)
    }

    /// Delivers whole frames from the front of `bytes` to the adapter's handler; see
    /// ``FramedConnection/deliverFrames(from:framer:engine:connection:)``.
    @inline(__always)
    final func deliverFrames(from bytes: UnsafeRawBufferPointer, to adapter: FramedConnection, connection: Connection) -> Int {
        code.deliverFrames(self, bytes, adapter, connection)
    }

    /// An engine specialized for `framer`'s concrete type when it is a built-in one.
    static func make(_ framer: any Framer) -> FramerEngine {
        if let framer = framer as? any SpecializedFramer { return make(specialized: framer) }
        return TypedFramerEngine(AnyFramer(base: framer))
    }

    private static func make(specialized framer: some SpecializedFramer) -> FramerEngine {
        TypedFramerEngine(framer)
    }
}

/// A framer's per-frame calls, for one concrete type: see ``SpecializedFramer/code``.
struct FramerCode {
    let encodeHeader: (FramerEngine, RawSpan, UnsafeMutableRawBufferPointer, UnsafeRawBufferPointer) throws(FramingError) -> Int
    let deliverFrames: (FramerEngine, UnsafeRawBufferPointer, FramedConnection, Connection) -> Int
}

/// A framer whose engine calls it directly. The default ``code`` below becomes, in each
/// conformance, closures compiled for that concrete type; an engine calls them through
/// one indirect call each, with the framer's own methods inlined.
protocol SpecializedFramer: Framer {
    /// The per-frame calls for an engine of this framer type (a ``TypedFramerEngine``).
    static var code: FramerCode { get }

    /// True when ``encodeHeader(forDecoded:by:into:)`` skips checks, so that delivery
    /// records each payload it hands out; false by default.
    static var skipsChecksForDecoded: Bool { get }

    /// The header for a payload that this framer's own ``Framer/nextFrame(in:)`` just
    /// returned, unchanged (an echo): a framer whose checks such a payload always passes
    /// skips them. By default, ``Framer/encodeHeader(for:into:)``.
    static func encodeHeader(
        forDecoded payload: RawSpan, by framer: inout Self, into header: UnsafeMutableRawBufferPointer
    ) throws(FramingError) -> Int
}

extension SpecializedFramer {
    static var skipsChecksForDecoded: Bool { false }

    static func encodeHeader(
        forDecoded payload: RawSpan, by framer: inout Self, into header: UnsafeMutableRawBufferPointer
    ) throws(FramingError) -> Int {
        try framer.encodeHeader(for: payload, into: header)
    }

    static var code: FramerCode {
        FramerCode(
            encodeHeader: { engine, payload, header, decoded throws(FramingError) in
                try unsafeDowncast(engine, to: TypedFramerEngine<Self>.self).encodeHeaderInPlace(
                    for: payload, into: header, decoded: decoded)
            },
            deliverFrames: { engine, bytes, adapter, connection in
                unsafeDowncast(engine, to: TypedFramerEngine<Self>.self).deliverFramesInPlace(from: bytes, to: adapter, connection: connection)
            })
    }
}

// The built-in framers: adding one to the module means adding it here, and the test
// "every built-in framer takes the specialized path" fails until it is.
extension DelimiterFramer: SpecializedFramer {
    static var skipsChecksForDecoded: Bool { true }

    /// A payload this framer decoded is what came before the first delimiter of the stream
    /// (and within ``maxFrameLength``): it cannot hold the delimiter, nor end with bytes
    /// that form one with the trailer, so the scan ``encodeHeader(for:into:)`` makes (a
    /// memchr per echoed line) is skipped.
    static func encodeHeader(
        forDecoded payload: RawSpan, by framer: inout DelimiterFramer, into header: UnsafeMutableRawBufferPointer
    ) throws(FramingError) -> Int {
        0
    }
}
extension LengthPrefixFramer: SpecializedFramer {}
extension NetstringFramer: SpecializedFramer {}
extension FixedLengthFramer: SpecializedFramer {}
extension RawFramer: SpecializedFramer {}
// A framer from another module: the same code, calling it through `any Framer`.
extension AnyFramer: SpecializedFramer {}

final class TypedFramerEngine<F: SpecializedFramer>: FramerEngine {
    @exclusivity(unchecked) private var typed: F

    init(_ framer: F) {
        typed = framer
        super.init(trailer: framer.trailer, code: F.code)
    }

    override var framer: any Framer {
        (typed as? AnyFramer)?.base ?? typed
    }

    override var maxFrameLength: Int { typed.maxFrameLength }

    override var isSpecialized: Bool { !(F.self == AnyFramer.self) }

    /// Calls the framer in place: a non-mutating call on a stored property would copy it
    /// (retaining what it holds, a delimiter array say) for every frame.
    @inline(__always)
    func encodeHeaderInPlace(
        for payload: RawSpan, into header: UnsafeMutableRawBufferPointer, decoded: UnsafeRawBufferPointer
    ) throws(FramingError) -> Int {
        // A constant per framer type: the others pay nothing for the comparison.
        if F.skipsChecksForDecoded, decoded.baseAddress != nil,
           payload.withUnsafeBytes({ $0.baseAddress == decoded.baseAddress && $0.count == decoded.count }) {
            return try F.encodeHeader(forDecoded: payload, by: &typed, into: header)
        }
        return try Self.encodeHeader(&typed, for: payload, into: header)
    }

    @inline(__always)
    func deliverFramesInPlace(from bytes: UnsafeRawBufferPointer, to adapter: FramedConnection, connection: Connection) -> Int {
        adapter.deliverFrames(from: bytes, framer: &typed, engine: self, connection: connection)
    }

    @inline(__always)
    private static func encodeHeader(
        _ framer: inout F, for payload: RawSpan, into header: UnsafeMutableRawBufferPointer
    ) throws(FramingError) -> Int {
        try framer.encodeHeader(for: payload, into: header)
    }
}

/// Forwards to a framer known only as `any Framer`, one defined outside this module (and,
/// in ReactorBench, a user codec's response framer).
package struct AnyFramer: Framer {
    package var base: any Framer

    package init(base: any Framer) {
        self.base = base
    }

    package var maxFrameLength: Int { base.maxFrameLength }

    package var trailer: [UInt8] { base.trailer }

    package mutating func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        try base.nextFrame(in: buffer)
    }

    package func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int {
        try base.encodeHeader(for: payload, into: header)
    }
}
