import Logging

extension Reactor {
    /// Raises the process's soft limit on open files (RLIMIT_NOFILE) to `target`, or to
    /// the hard limit when `target` is nil, never above the hard limit and never lower
    /// than it is. Returns the soft limit in force afterwards.
    ///
    /// Every connection and socket is a descriptor, and the soft limit is often far below
    /// the hard one (1024 against 524288 on many systems): a server that expects more than
    /// a few hundred connections calls this once at startup, before accepting. Listeners
    /// pause on EMFILE rather than fail (docs/architecture.md), but a raised limit keeps
    /// them from getting there. `reactor serve` and `reactor bench` call it.
    ///
    /// - Throws: ``ReactorError`` (operation ``ReactorError/Operation/setLimit``) when the
    ///   system refuses to read or set the limit.
    @discardableResult
    public static func raiseOpenFileLimit(to target: Int? = nil, logger: Logger? = nil) throws(ReactorError) -> Int {
        let limits: (soft: UInt64, hard: UInt64)
        switch System.openFileLimits() {
        case .success(let found): limits = found
        case .failure(let error): throw ReactorError(errno: error.code, operation: .setLimit)
        }
        let wanted = min(target.map { UInt64(max($0, 0)) } ?? limits.hard, limits.hard)
        guard wanted > limits.soft else { return Int(clamping: limits.soft) }
        let error = System.setOpenFileLimit(soft: wanted, hard: limits.hard)
        guard error == 0 else {
            var failure = ReactorError(errno: error, operation: .setLimit)
            failure.hint = "the open-file limit stays at \(limits.soft); raise the hard limit (ulimit -Hn, LimitNOFILE=) to go higher"
            throw failure
        }
        logger?.debug("raised the open-file limit from \(limits.soft) to \(wanted)")
        return Int(clamping: wanted)
    }
}
