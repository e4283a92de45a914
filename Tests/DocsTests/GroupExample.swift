import ReactorCore

/// Counts the connections its reactor served: one per reactor, made on that reactor's
/// thread, so it needs no lock.
final class ReactorTally {
    var served = 0
}

/// Echo on every reactor of a group, on one port. Each reactor's factory shares that
/// reactor's tally.
func serveEchoOnGroup(_ group: ReactorGroup) throws -> GroupListener {
    try group.listen(host: "127.0.0.1", port: 0) { _ in
        let tally = ReactorTally()
        return { _ in
            tally.served += 1
            return Echo()
        }
    }
}
