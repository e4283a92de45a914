import ReactorCore

/// The framer a ``FramedConnection`` uses, behind a class specialized for its concrete
/// type. For the built-in framers the per-frame loop then calls `nextFrame` and
/// `encodeHeader` directly, where the optimizer can inline them, instead of through an
/// `any Framer` (a projection and a witness thunk per call, twice per echoed frame).
/// Framers from other modules go through ``AnyFramer``, which costs what `any` costs.
class FramerEngine {
    /// The framer's trailer in raw storage, so sending a frame reads it without retaining
    /// an array.
    let trailer: UnsafeRawBufferPointer

    init(trailer: [UInt8]) {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: trailer.count, alignment: 1)
        storage.copyBytes(from: trailer)
        self.trailer = UnsafeRawBufferPointer(storage)
    }

    deinit {
        trailer.deallocate()
    }

    /// The framer, as the public ``FramedConnection/framer`` property shows it.
    var framer: any Framer { fatalError("FramerEngine is abstract") }

    /// See ``Framer/maxFrameLength``.
    var maxFrameLength: Int { fatalError("FramerEngine is abstract") }

    /// See ``Framer/encodeHeader(for:into:)``.
    func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int {
        fatalError("FramerEngine is abstract")
    }

    /// Delivers whole frames from the front of `bytes` to the adapter's handler; see
    /// ``FramedConnection/deliverFrames(from:framer:engine:connection:)``.
    func deliverFrames(from bytes: UnsafeRawBufferPointer, to adapter: FramedConnection, connection: Connection) -> Int {
        fatalError("FramerEngine is abstract")
    }

    /// An engine specialized for `framer`'s concrete type when it is a built-in one.
    static func make(_ framer: any Framer) -> FramerEngine {
        switch framer {
        case let framer as DelimiterFramer: TypedFramerEngine(framer)
        case let framer as LengthPrefixFramer: TypedFramerEngine(framer)
        case let framer as NetstringFramer: TypedFramerEngine(framer)
        case let framer as FixedLengthFramer: TypedFramerEngine(framer)
        case let framer as RawFramer: TypedFramerEngine(framer)
        default: TypedFramerEngine(AnyFramer(base: framer))
        }
    }
}

final class TypedFramerEngine<F: Framer>: FramerEngine {
    @exclusivity(unchecked) private var typed: F

    init(_ framer: F) {
        typed = framer
        super.init(trailer: framer.trailer)
    }

    override var framer: any Framer {
        (typed as? AnyFramer)?.base ?? typed
    }

    override var maxFrameLength: Int { typed.maxFrameLength }

    @_specialize(exported: false, where F == DelimiterFramer)
    @_specialize(exported: false, where F == LengthPrefixFramer)
    @_specialize(exported: false, where F == NetstringFramer)
    @_specialize(exported: false, where F == FixedLengthFramer)
    @_specialize(exported: false, where F == RawFramer)
    override func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int {
        try TypedFramerEngine.encodeHeader(&typed, for: payload, into: header)
    }

    @_specialize(exported: false, where F == DelimiterFramer)
    @_specialize(exported: false, where F == LengthPrefixFramer)
    @_specialize(exported: false, where F == NetstringFramer)
    @_specialize(exported: false, where F == FixedLengthFramer)
    @_specialize(exported: false, where F == RawFramer)
    override func deliverFrames(from bytes: UnsafeRawBufferPointer, to adapter: FramedConnection, connection: Connection) -> Int {
        adapter.deliverFrames(from: bytes, framer: &typed, engine: self, connection: connection)
    }

    /// Calls the framer in place: a non-mutating call on a stored property would copy it
    /// (retaining what it holds, a delimiter array say) for every frame.
    @inline(__always)
    private static func encodeHeader(
        _ framer: inout F, for payload: RawSpan, into header: UnsafeMutableRawBufferPointer
    ) throws(FramingError) -> Int {
        try framer.encodeHeader(for: payload, into: header)
    }
}

/// Forwards to a framer known only as `any Framer`, one defined outside this module.
struct AnyFramer: Framer {
    var base: any Framer

    var maxFrameLength: Int { base.maxFrameLength }

    var trailer: [UInt8] { base.trailer }

    mutating func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        try base.nextFrame(in: buffer)
    }

    func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int {
        try base.encodeHeader(for: payload, into: header)
    }
}
