/// A value that may be touched only on its reactor's thread, carried through `Sendable`
/// closures and across tasks (SwiftNIO's `NIOLoopBound` is the model).
///
/// The box itself is `Sendable`; reading or writing ``value`` anywhere but on the
/// reactor thread traps, in release builds too. So a closure for
/// ``ReactorHandle/execute(_:)`` can carry a connection without an `@unchecked Sendable`
/// wrapper of its own:
///
/// ```swift
/// let bound = LoopBound(connection, reactor: reactor)
/// handle.execute { _ in bound.value.write("tick\n") }
/// ```
///
/// For state several closures share and change, box a class (``LoopBoundBox``).
public struct LoopBound<Value>: @unchecked Sendable {
    /// The executor of the reactor the value belongs to.
    public let executor: ReactorExecutor
    private var stored: Value

    /// Binds `value` to `reactor`. Call it on the reactor thread.
    public init(_ value: Value, reactor: Reactor) {
        self.init(value, executor: reactor.executor)
    }

    /// Binds `value` to the reactor behind `executor`. Call it on the reactor thread.
    public init(_ value: Value, executor: ReactorExecutor) {
        executor.checkIsolated()
        self.executor = executor
        self.stored = value
    }

    /// The value. Traps off the reactor thread.
    public var value: Value {
        get {
            executor.checkIsolated()
            return stored
        }
        set {
            executor.checkIsolated()
            stored = newValue
        }
    }
}

/// A mutable value shared by reference and bound to one reactor's thread: the class form
/// of ``LoopBound``, for state that several `Sendable` closures change.
public final class LoopBoundBox<Value>: @unchecked Sendable {
    // The box is the shared reference; the thread check is LoopBound's.
    private var bound: LoopBound<Value>

    /// The executor of the reactor the value belongs to.
    public var executor: ReactorExecutor { bound.executor }

    /// Binds `value` to `reactor`. Call it on the reactor thread.
    public init(_ value: Value, reactor: Reactor) {
        bound = LoopBound(value, reactor: reactor)
    }

    /// The value. Traps off the reactor thread.
    public var value: Value {
        get { bound.value }
        set { bound.value = newValue }
    }
}
