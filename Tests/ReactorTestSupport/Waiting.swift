// Waiting with deadlines, and values shared between a reactor thread and the test.
//
// Rules the helpers follow so that a bug fails a test instead of hanging the suite:
// every wait has a deadline, every socket call that can block is bounded by poll(),
// and every reactor thread is stopped and joined with a timeout.

import Dispatch
import Foundation
import Glibc
import ReactorCore
import Synchronization
import Testing

/// A test-side failure with a message that says what did not happen.
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Duration {
    /// The duration in whole milliseconds (rounded down).
    public var milliseconds: Int {
        let (seconds, attoseconds) = components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}

/// A point in monotonic time; `remainingMilliseconds` counts down to zero.
public struct Deadline {
    public let end: ContinuousClock.Instant
    public init(_ timeout: Duration) { end = .now + timeout }
    public var hasPassed: Bool { ContinuousClock.now >= end }
    /// What is left, at least zero.
    public var remaining: Duration { max(end - ContinuousClock.now, .zero) }
    /// Milliseconds left, for poll(); at least 0.
    public var remainingMilliseconds: Int32 {
        let left = end - ContinuousClock.now
        return left <= .zero ? 0 : Int32(clamping: left.milliseconds + 1)
    }
}

/// Polls `condition` every millisecond, blocking the calling thread, until it holds or
/// `timeout` passes. Returns whether it held.
@discardableResult
public func waitUntil(timeout: Duration = .seconds(5), _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Deadline(timeout)
    while true {
        if try condition() { return true }
        if deadline.hasPassed { return false }
        usleep(1000)
    }
}

/// Polls `condition` every millisecond, without blocking a thread, until it holds or
/// `timeout` passes; throws a failure naming `what` on timeout.
public func eventually(
    _ what: @autoclosure () -> String, timeout: Duration = .seconds(10), _ condition: () throws -> Bool
) async throws {
    let end = ContinuousClock.now + timeout
    while true {
        if try condition() { return }
        if ContinuousClock.now >= end { throw TestFailure("timed out after \(timeout) waiting for \(what())") }
        try await Task.sleep(for: .milliseconds(1))
    }
}

/// A value shared between the reactor thread and the test, behind a mutex.
public final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    public init(_ value: Value) { mutex = Mutex(value) }
    public var value: Value { mutex.withLock { $0 } }
    public func set(_ value: Value) { mutex.withLock { $0 = value } }
    @discardableResult
    public func update<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    /// Waits (blocking) until `condition` holds for the value; returns it then, or nil on timeout.
    public func wait(timeout: Duration = .seconds(5), until condition: (Value) -> Bool) -> Value? {
        var result: Value?
        waitUntil(timeout: timeout) {
            let current = value
            if condition(current) { result = current }
            return result != nil
        }
        return result
    }
}

/// Something that belongs to one reactor thread and is only ever touched there (inside
/// its callbacks or `handle.execute` jobs). The `@unchecked Sendable` is that promise.
public final class ReactorBound<Value>: @unchecked Sendable {
    public var value: Value
    public init(_ value: Value) { self.value = value }
}

extension ReactorThread {
    /// Stops the reactor and joins its thread; records an issue if that takes too long.
    public func stopAndJoin(timeout: Duration = .seconds(10), sourceLocation: SourceLocation = #_sourceLocation) {
        handle.stop()
        joinWithin(timeout, sourceLocation: sourceLocation)
    }

    /// Joins the thread (on a helper thread, so a stuck reactor fails the test instead of
    /// hanging it), recording an issue if it has not ended within `timeout`.
    @discardableResult
    public func joinWithin(_ timeout: Duration, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        let done = DispatchSemaphore(value: 0)
        Thread { [self] in
            join()
            done.signal()
        }.start()
        let joined = done.wait(timeout: .now() + .milliseconds(timeout.milliseconds)) == .success
        if !joined { Issue.record("the reactor thread did not end within \(timeout)", sourceLocation: sourceLocation) }
        return joined
    }
}
