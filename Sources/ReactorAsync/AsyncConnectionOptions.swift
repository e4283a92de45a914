import ReactorCore

/// Limits of the async layer's inbound buffer. Every limit has a default.
///
/// Backpressure: when frames received but not yet taken by the consumer pass either
/// high watermark, the connection stops reading the socket (the kernel's buffers fill
/// and TCP slows the peer); it reads again once the consumer has brought both down to
/// their low watermarks. What is buffered stays under the high watermark plus one frame
/// (at most the framer's `Framer.maxFrameLength`) plus the rest of the
/// read in progress (at most the reactor's read buffer, 64 KiB by default), which waits
/// in the framed connection undelivered.
public struct AsyncConnectionOptions: Sendable, Equatable {
    /// Bytes buffered for the consumer above which reading pauses (default 256 KiB).
    public var highWatermarkBytes = 256 * 1024
    /// Bytes buffered at or below which reading resumes (default 128 KiB).
    public var lowWatermarkBytes = 128 * 1024
    /// Frames buffered above which reading pauses (default 256).
    public var highWatermarkFrames = 256
    /// Frames buffered at or below which reading resumes (default 128).
    public var lowWatermarkFrames = 128
    /// The size of the chunks received frames are copied into (default 16 KiB); a frame
    /// over a quarter of it gets memory of its own. A busy connection keeps two chunks.
    public var chunkSize = 16 * 1024
    /// The underlying connection's options (write watermarks, limits, timeouts).
    public var connection = ConnectionOptions()

    /// The defaults.
    public init() {}

    /// Checks the limits.
    ///
    /// - Throws: `ReactorError` with code `ReactorError.Code.invalidOption`.
    public func validate() throws(ReactorError) {
        guard highWatermarkBytes > 0 else {
            throw .invalidOption("highWatermarkBytes", value: highWatermarkBytes, hint: "it must be positive")
        }
        guard lowWatermarkBytes >= 0, lowWatermarkBytes <= highWatermarkBytes else {
            throw .invalidOption("lowWatermarkBytes", value: lowWatermarkBytes, hint: "it must be between 0 and highWatermarkBytes")
        }
        guard highWatermarkFrames > 0 else {
            throw .invalidOption("highWatermarkFrames", value: highWatermarkFrames, hint: "it must be positive")
        }
        guard lowWatermarkFrames >= 0, lowWatermarkFrames <= highWatermarkFrames else {
            throw .invalidOption("lowWatermarkFrames", value: lowWatermarkFrames, hint: "it must be between 0 and highWatermarkFrames")
        }
        guard chunkSize >= 256 else { throw .invalidOption("chunkSize", value: chunkSize, hint: "it must be at least 256") }
        try connection.validate()
    }
}
