import Foundation

/// Runs blocking socket calls of a test's peer on a thread of their own, so they never
/// hold one of the few threads of Swift's cooperative pool that the code under test needs.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// A test's blocking peer handed to the thread that drives it (one thread at a time).
struct Peer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
