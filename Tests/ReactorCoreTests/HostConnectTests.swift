// Connects to host names: resolution off the loop, Happy Eyeballs (RFC 8305) between the
// addresses, and the errors that name the host.

import Glibc
import ReactorCore
import ReactorTestSupport
import Testing

/// A resolver that answers `addresses` after `delay`, blocking its thread as a slow DNS
/// server would block getaddrinfo's.
private struct StubResolver: HostResolver {
    var delay: Duration = .zero
    var addresses: [SocketAddress]

    func resolve(host: String, port: Int) throws(ReactorError) -> [SocketAddress] {
        if delay > .zero { usleep(UInt32(delay.milliseconds * 1000)) }
        return addresses
    }
}

/// The longest gap between two ticks of a repeating timer, and how many ticks there were.
private struct TickRecord: Sendable {
    var last: UInt64 = 0
    var longestGap: UInt64 = 0
    var ticks = 0
}

@Suite("Hostname connects", .timeLimit(.minutes(1)))
struct HostConnectTests {
    @Test("a resolver that takes 2 s does not hold up the reactor's timers")
    func slowResolverDoesNotBlockTheLoop() throws {
        let record = Locked(ConnectionRecord())
        let ticks = Locked(TickRecord())
        let started = ContinuousClock.now
        try withReactor(setup: { reactor in
            let listener = try reactor.listen(host: "127.0.0.1", port: 0) { _ in ByteEcho() }
            ticks.update { $0.last = Reactor.now }
            reactor.schedule(after: .milliseconds(10), repeating: .milliseconds(10)) { _ in
                let now = Reactor.now
                ticks.update {
                    $0.longestGap = max($0.longestGap, now - $0.last)
                    $0.last = now
                    $0.ticks += 1
                }
            }
            let resolver = StubResolver(delay: .seconds(2), addresses: [listener.address])
            reactor.connect(
                host: "slow.example", port: listener.address.port,
                happyEyeballs: HappyEyeballsOptions(resolver: resolver), handler: ProbeHandler(record: record))
        }) { _, _ in
            let opened = record.wait(timeout: .seconds(20)) { $0.opened > 0 || $0.connectFailed != nil }
            let elapsed = ContinuousClock.now - started
            #expect(opened?.opened == 1, "\(String(describing: opened?.connectFailed))")
            #expect(elapsed >= .milliseconds(1900), "the connect did not wait for the resolver: \(elapsed)")
            let seen = ticks.value
            // Blocking on the resolver would leave a 2 s gap; 500 ms leaves room for a
            // machine loaded by parallel tests.
            #expect(seen.longestGap < 500_000_000, "a timer tick came \(seen.longestGap / 1_000_000) ms after the one before")
            #expect(seen.ticks >= 10, "only \(seen.ticks) ticks in about 2 s")
        }
    }

    @Test("a dead IPv6 address and a live IPv4 one: connects over IPv4 after the attempt delay")
    func deadIPv6FallsBackToIPv4() throws {
        let silent = try SilentListener(host: "::1")
        defer { withExtendedLifetime(silent) {} }
        let deadAddress = silent.address
        let record = Locked(ConnectionRecord())
        let pending = ReactorBound<PendingHostConnect?>(nil)
        let started = ContinuousClock.now
        try withReactor(setup: { reactor in
            let listener = try reactor.listen(host: "127.0.0.1", port: 0) { _ in ByteEcho() }
            // IPv4 first from the resolver: Happy Eyeballs still tries IPv6 first.
            let resolver = StubResolver(addresses: [listener.address, deadAddress])
            pending.value = reactor.connect(
                host: "dual.example", port: listener.address.port, timeout: .seconds(30),
                happyEyeballs: HappyEyeballsOptions(resolver: resolver), handler: ProbeHandler(record: record))
            return listener.address
        }) { thread, live in
            let opened = try #require(record.wait(timeout: .seconds(20)) { $0.opened > 0 || $0.connectFailed != nil })
            let elapsed = ContinuousClock.now - started
            #expect(opened.opened == 1, "\(String(describing: opened.connectFailed))")
            #expect(opened.peer == live)
            #expect(elapsed >= .milliseconds(240), "IPv4 started before the attempt delay: \(elapsed)")
            // Far below the 30 s connect timeout the silent IPv6 attempt would have run into.
            #expect(elapsed < .seconds(10), "\(elapsed)")
            let state = try thread.sync { _ in
                (pending.value!.isPending, pending.value!.attempting.count, pending.value!.addresses.map(\.family))
            }
            #expect(state.0 == false)
            #expect(state.1 == 0, "the losing IPv6 attempt is still open")
            #expect(state.2 == [.ipv6, .ipv4])
        }
    }

    @Test("a refused IPv6 address starts IPv4 at once, without waiting out the attempt delay")
    func refusedIPv6StartsIPv4AtOnce() throws {
        let closed = try RawSocket(host: "::1")
        let refused = try SocketAddress(ip: "::1", port: closed.port)
        let record = Locked(ConnectionRecord())
        let started = ContinuousClock.now
        try withReactor(setup: { reactor in
            let listener = try reactor.listen(host: "127.0.0.1", port: 0) { _ in ByteEcho() }
            let eyeballs = HappyEyeballsOptions(
                attemptDelay: .seconds(30), resolver: StubResolver(addresses: [refused, listener.address]))
            reactor.connect(
                host: "dual.example", port: listener.address.port, timeout: .seconds(40), happyEyeballs: eyeballs,
                handler: ProbeHandler(record: record))
            return listener.address
        }) { _, live in
            let opened = try #require(record.wait(timeout: .seconds(20)) { $0.opened > 0 || $0.connectFailed != nil })
            #expect(opened.opened == 1, "\(String(describing: opened.connectFailed))")
            #expect(opened.peer == live)
            #expect(ContinuousClock.now - started < .seconds(20), "waited for the 30 s attempt delay")
        }
        withExtendedLifetime(closed) {}
    }

    @Test("every address refused: the last attempt's error, naming the host and the address")
    func allAddressesRefused() throws {
        let closed4 = try RawSocket(host: "127.0.0.1")
        let closed6 = try RawSocket(host: "::1")
        let addresses = [try SocketAddress(ip: "::1", port: closed6.port), try SocketAddress(ip: "127.0.0.1", port: closed4.port)]
        let record = Locked(ConnectionRecord())
        try withReactor(setup: { reactor in
            _ = reactor.connect(
                host: "refusing.example", port: 1,
                happyEyeballs: HappyEyeballsOptions(resolver: StubResolver(addresses: addresses)),
                handler: ProbeHandler(record: record))
        }) { _, _ in
            let seen = try #require(record.wait(timeout: .seconds(10)) { $0.connectFailed != nil })
            let error = try #require(seen.connectFailed)
            #expect(error.code == .connectionRefused)
            #expect(error.host == "refusing.example")
            #expect(error.address == addresses[1], "IPv6 is tried first, so IPv4 fails last")
            #expect(seen.opened == 0)
        }
        withExtendedLifetime((closed4, closed6)) {}
    }

    @Test("a name that does not resolve fails with invalidAddress, naming the host")
    func unknownName() throws {
        let record = Locked(ConnectionRecord())
        try withReactor(setup: { reactor in
            _ = reactor.connect(host: "no-such-host.invalid", port: 7, handler: ProbeHandler(record: record))
        }) { _, _ in
            let seen = try #require(record.wait(timeout: .seconds(15)) { $0.connectFailed != nil })
            let error = try #require(seen.connectFailed)
            #expect(error.code == .invalidAddress)
            #expect(error.operation == .resolve)
            #expect(error.host == "no-such-host.invalid")
            #expect(error.description.contains("no-such-host.invalid"), "\(error)")
            #expect(seen.opened == 0)
        }
    }

    @Test("the timeout covers resolution: a resolver slower than it gives timedOut, naming the host")
    func timeoutDuringResolution() throws {
        let record = Locked(ConnectionRecord())
        let address = try SocketAddress(ip: "127.0.0.1", port: 9)
        try withReactor(setup: { reactor in
            _ = reactor.connect(
                host: "slow.example", port: 9, timeout: .milliseconds(200),
                happyEyeballs: HappyEyeballsOptions(resolver: StubResolver(delay: .seconds(2), addresses: [address])),
                handler: ProbeHandler(record: record))
        }) { _, _ in
            let seen = try #require(record.wait(timeout: .seconds(10)) { $0.connectFailed != nil })
            let error = try #require(seen.connectFailed)
            #expect(error.code == .timedOut)
            #expect(error.host == "slow.example")
            #expect(error.description.contains("slow.example"), "\(error)")
        }
    }

    @Test("a host connect cancelled while resolving never calls its handler")
    func cancelWhileResolving() throws {
        let record = Locked(ConnectionRecord())
        try withReactor(setup: { reactor in
            let listener = try reactor.listen(host: "127.0.0.1", port: 0) { _ in ByteEcho() }
            let resolver = StubResolver(delay: .milliseconds(300), addresses: [listener.address])
            let pending = reactor.connect(
                host: "slow.example", port: listener.address.port,
                happyEyeballs: HappyEyeballsOptions(resolver: resolver), handler: ProbeHandler(record: record))
            pending.cancel()
            return pending.isPending
        }) { thread, stillPending in
            #expect(stillPending == false)
            usleep(600_000)  // past the resolver's answer
            let seen = record.value
            #expect(seen.opened == 0)
            #expect(seen.connectFailed == nil)
            let open = try thread.sync { $0.connectionCount }
            #expect(open == 0)
        }
    }

    @Test("a reactor that stops while a name resolves drops the answer, and the handler hears nothing")
    func stopWhileResolving() throws {
        let record = Locked(ConnectionRecord())
        let address = try SocketAddress(ip: "127.0.0.1", port: 9)
        try withReactor(setup: { reactor in
            let resolver = StubResolver(delay: .milliseconds(300), addresses: [address])
            _ = reactor.connect(
                host: "slow.example", port: 9, happyEyeballs: HappyEyeballsOptions(resolver: resolver),
                handler: ProbeHandler(record: record))
        }) { thread, _ in
            thread.stop()
            usleep(600_000)  // past the resolver's answer, which finds the mailbox closed
            let seen = record.value
            #expect(seen.opened == 0)
            #expect(seen.connectFailed == nil)
        }
    }

    @Test("Happy Eyeballs order: families interleaved, IPv6 first")
    func attemptOrder() throws {
        let a4 = try SocketAddress(ip: "127.0.0.1", port: 1)
        let b4 = try SocketAddress(ip: "127.0.0.2", port: 1)
        let c4 = try SocketAddress(ip: "127.0.0.3", port: 1)
        let a6 = try SocketAddress(ip: "::1", port: 1)
        let b6 = try SocketAddress(ip: "::2", port: 1)
        #expect(HappyEyeballsOptions.attemptOrder([a4, b4, c4, a6, b6]) == [a6, a4, b6, b4, c4])
        #expect(HappyEyeballsOptions.attemptOrder([a4, b4]) == [a4, b4])
        #expect(HappyEyeballsOptions.attemptOrder([]) == [])
    }
}
