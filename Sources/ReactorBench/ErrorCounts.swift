/// Errors seen during a run, by kind. None stops the run: a failed connection is
/// reopened and the count goes on.
public struct ErrorCounts: Sendable, Equatable {
    /// Connects refused (nothing listening, or the backlog full).
    public var refused = 0
    /// Connects that got no answer within the connect timeout.
    public var connectTimeout = 0
    /// Connects that failed otherwise (unreachable, no descriptors, ...).
    public var connectFailed = 0
    /// Connections reset by the server.
    public var reset = 0
    /// Connections the server closed (or that failed) while requests were in flight: a
    /// short response.
    public var closed = 0
    /// Requests with no response within the request timeout.
    public var timeout = 0
    /// Responses that do not answer their request: an echo that differs, a wrong value,
    /// key or reply type.
    public var wrongResponse = 0
    /// Well-formed error replies (a Redis `-ERR`, memcached `SERVER_ERROR`).
    public var serverError = 0
    /// HTTP responses with a status of 400 or more.
    public var httpStatus = 0
    /// Responses that are not valid frames of the protocol.
    public var framing = 0
    /// UDP requests whose datagram did not come back within the request timeout.
    public var lost = 0
    /// Sends the socket refused (UDP: dropped on a full buffer, or an ICMP error).
    public var sendFailed = 0

    /// No errors.
    public init() {}

    /// All errors together.
    public var total: Int {
        refused + connectTimeout + connectFailed + reset + closed + timeout + wrongResponse + serverError + httpStatus + framing
            + lost + sendFailed
    }

    /// Kind and count of every non-zero entry, in a fixed order, with the JSON names.
    public var nonZero: [(name: String, count: Int)] {
        all.filter { $0.count > 0 }
    }

    /// Kind and count of every entry, with the JSON names.
    public var all: [(name: String, count: Int)] {
        [
            ("refused", refused), ("connect_timeout", connectTimeout), ("connect_failed", connectFailed),
            ("reset", reset), ("closed", closed), ("timeout", timeout), ("wrong_response", wrongResponse),
            ("server_error", serverError), ("http_status", httpStatus), ("framing", framing), ("lost", lost), ("send_failed", sendFailed),
        ]
    }

    /// Adds another worker's counts.
    public mutating func add(_ other: ErrorCounts) {
        refused += other.refused
        connectTimeout += other.connectTimeout
        connectFailed += other.connectFailed
        reset += other.reset
        closed += other.closed
        timeout += other.timeout
        wrongResponse += other.wrongResponse
        serverError += other.serverError
        httpStatus += other.httpStatus
        framing += other.framing
        lost += other.lost
        sendFailed += other.sendFailed
    }
}
