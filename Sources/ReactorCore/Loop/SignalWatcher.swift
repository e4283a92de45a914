import Glibc

/// Runs a closure on the reactor thread each time a signal arrives. Made by
/// ``Reactor/onSignal(_:_:)``; cancel it to restore the signal's previous handling.
///
/// libevent catches the signal with a handler that only writes to a socketpair, so the
/// closure runs in the loop like any callback and may do anything a callback may.
public final class SignalWatcher {
    let reactor: Reactor
    /// The signal number (SIGINT, SIGTERM, ...).
    public let signal: Int32
    private var events = LoopEvents(count: 1)
    private let body: () -> Void

    init(reactor: Reactor, signal: Int32, body: @escaping () -> Void) {
        self.reactor = reactor
        self.signal = signal
        self.body = body
    }

    /// Stops watching; the signal gets its previous disposition back.
    public func cancel() {
        guard events.isArmed(0) else { return }
        reactor.assertInLoop()
        events.disarm(0)  // the last event for a signal restores its disposition
        reactor.registry.remove(self)
    }

    fileprivate func start() -> Bool {
        events.assign(0, on: reactor.base, .signal(signal), owner: self) { _, _, context in
            LoopEvents.withOwner(context, SignalWatcher.self) { $0.body() }
        }
        guard events.arm(0) else {
            events.disarm(0)
            return false
        }
        // A process can start with the signal blocked: a parent thread's mask is inherited
        // (Foundation's Process spawns from threads that block most signals). Blocked in
        // every thread, the signal would stay pending and the watcher would never run.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, signal)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        reactor.registry.insert(.signalWatcher(self))
        return true
    }
}

extension Reactor {
    /// Handles `signal` on the reactor thread, typically SIGINT and SIGTERM for a
    /// graceful shutdown:
    ///
    /// ```swift
    /// for signal in [SIGINT, SIGTERM] {
    ///     try reactor.onSignal(signal) { reactor.shutdownGracefully() }
    /// }
    /// ```
    ///
    /// Only one reactor in a process can watch signals at a time (a libevent limit).
    @discardableResult
    public func onSignal(_ signal: Int32, _ body: @escaping () -> Void) throws(ReactorError) -> SignalWatcher {
        preconditionInLoop()
        guard state != .stopped else { throw ReactorError(.reactorStopped, operation: .signal) }
        let watcher = SignalWatcher(reactor: self, signal: signal, body: body)
        guard watcher.start() else {
            throw ReactorError(.eventBackend, operation: .signal, hint: "libevent could not watch signal \(signal)")
        }
        return watcher
    }
}
