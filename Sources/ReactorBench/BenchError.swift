/// A benchmark that cannot run as asked (bad options, a server that will not start, a
/// file that cannot be written). Socket errors during a run are not thrown: they are
/// counted in ``ErrorCounts``.
public struct BenchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong and what to change.
    public let message: String

    /// An error with this message.
    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
