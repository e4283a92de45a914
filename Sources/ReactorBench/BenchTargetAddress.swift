import Dispatch
import ReactorCore
import Synchronization

extension BenchRunner {
    /// The address every client of a run uses. A numeric host is taken as it is. A name
    /// goes once through the reactor's own host connect (resolution off the loop, Happy
    /// Eyeballs between its addresses) and the address that connected first is the one
    /// every client then uses: all of them load the same server address, and churning
    /// clients measure the server's connects, not the resolver. UDP has no handshake to
    /// race, so a name there takes the resolver's first address (IPv4 first).
    static func targetAddress(_ options: BenchOptions) throws(BenchError) -> SocketAddress {
        if let numeric = try? SocketAddress(ip: options.host, port: options.port) { return numeric }
        guard options.isStream else {
            do {
                return try SystemResolver().resolve(host: options.host, port: options.port)[0]
            } catch {
                throw BenchError("cannot resolve \(options.host): \(error)")
            }
        }
        let outcome = Mutex<Result<SocketAddress, ReactorError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        let (host, port, timeout) = (options.host, options.port, options.connectTimeout)
        let thread: ReactorThread
        do {
            (thread, _) = try ReactorThread.start(name: "bench-resolve") { reactor in
                reactor.connect(host: host, port: port, timeout: timeout, handler: AddressProbe { result in
                    outcome.withLock { $0 = result }
                    done.signal()
                })
                return ()
            }
        } catch {
            throw BenchError("cannot start a reactor thread: \(error)")
        }
        defer { thread.stop() }
        // The host connect's own timeout ends it; the extra seconds only guard the wait.
        _ = done.wait(timeout: .now() + .milliseconds(Int(timeout.milliseconds) + 5000))
        switch outcome.withLock({ $0 }) {
        case .success(let address): return address
        case .failure(let error): throw BenchError("cannot connect to \(options.host):\(options.port): \(error)")
        case nil: throw BenchError("cannot connect to \(options.host):\(options.port): no answer")
        }
    }
}

/// Learns which address a host connect reached, then closes the connection.
private final class AddressProbe: ConnectionHandler {
    private let report: (Result<SocketAddress, ReactorError>) -> Void

    init(report: @escaping (Result<SocketAddress, ReactorError>) -> Void) { self.report = report }

    func opened(_ connection: Connection) {
        report(.success(connection.peerAddress))
        connection.close()
    }

    func received(_ bytes: RawSpan, on connection: Connection) {}

    func connectFailed(_ error: ReactorError) { report(.failure(error)) }
}

extension Duration {
    fileprivate var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
