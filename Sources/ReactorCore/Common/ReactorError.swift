import Glibc

/// An error from the reactor or one of its sockets: which operation failed, on which
/// address, with which errno, and what to do about it.
///
/// Match on ``code`` to handle a kind of failure; print the error (its ``description``)
/// to tell a person. The description is one line, for example:
/// `bind 127.0.0.1:7007: address already in use (EADDRINUSE); another process holds this port: choose another port or stop that process`.
public struct ReactorError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure, for matching.
    public enum Code: Sendable, Equatable {
        /// The address is already bound by another socket (EADDRINUSE).
        case addressInUse
        /// The address is not one of this host's (EADDRNOTAVAIL).
        case addressNotAvailable
        /// The host or port could not be parsed or resolved.
        case invalidAddress
        /// The operating system refused the operation (EACCES, EPERM).
        case permissionDenied
        /// Nothing listens at the remote address (ECONNREFUSED).
        case connectionRefused
        /// The peer reset the connection (ECONNRESET, EPIPE).
        case connectionReset
        /// The operation did not finish within its time limit.
        case timedOut
        /// No route to the host or network (EHOSTUNREACH, ENETUNREACH).
        case unreachable
        /// The process or system is out of file descriptors (EMFILE, ENFILE).
        case tooManyOpenFiles
        /// A connection queued more output than its write-buffer limit allows.
        case writeBufferLimitExceeded
        /// A datagram is larger than the socket or the path can carry (EMSGSIZE).
        case messageTooLong
        /// The socket's send buffer was full (EAGAIN, ENOBUFS); a datagram was dropped.
        case wouldBlock
        /// The reactor has stopped; it cannot run again or accept more work.
        case reactorStopped
        /// The call was made in a state that does not allow it (for example, `run()` from inside `run()`).
        case invalidState
        /// An options value was refused before anything was opened; ``ReactorError/option``
        /// names it and ``ReactorError/value`` holds what was given.
        case invalidOption
        /// libevent could not be set up as required (for example, no epoll backend).
        case eventBackend
        /// Any other operating-system error; see ``ReactorError/errno``.
        case system
    }

    /// What the reactor was doing when it failed.
    public enum Operation: String, Sendable, Equatable {
        /// Creating the reactor (libevent base, eventfd).
        case createReactor = "create reactor"
        /// Running the loop.
        case run
        /// Turning a host string into an address.
        case resolve
        /// Opening a socket.
        case socket
        /// Binding a socket to an address.
        case bind
        /// Listening for connections.
        case listen
        /// Accepting a connection.
        case accept
        /// Connecting to a peer.
        case connect
        /// Reading from a connection.
        case read
        /// Writing to a connection.
        case write
        /// Sending a datagram.
        case send
        /// Receiving datagrams.
        case receive
        /// Setting a socket option.
        case setOption = "set socket option"
        /// Checking an options value before anything opens.
        case checkOptions = "check options"
        /// Running work through a ``ReactorHandle``.
        case execute
        /// Watching a signal.
        case signal
        /// Pinning a reactor thread to a CPU.
        case pinThread = "pin thread"
        /// Reading or raising a resource limit (``Reactor/raiseOpenFileLimit(to:logger:)``).
        case setLimit = "set resource limit"
    }

    /// The kind of failure.
    public var code: Code
    /// The operation that failed.
    public var operation: Operation
    /// The address involved, when there is one.
    public var address: SocketAddress?
    /// A host string that could not be turned into an address, for ``Code/invalidAddress``.
    public var host: String?
    /// The errno value from the failing system call, when there was one.
    public var errno: Int32?
    /// What to do about it, when there is something useful to say.
    public var hint: String?
    /// The refused option's name, as spelled in its options type, for ``Code/invalidOption``.
    public var option: String?
    /// The refused value, as text, for ``Code/invalidOption``.
    public var value: String?

    /// Creates an error; the framework makes these, but handlers may too.
    public init(
        _ code: Code, operation: Operation, address: SocketAddress? = nil, host: String? = nil,
        errno: Int32? = nil, hint: String? = nil
    ) {
        self.code = code
        self.operation = operation
        self.address = address
        self.host = host
        self.errno = errno
        self.hint = hint
    }

    /// An options value that is refused: `option` is its name, `value` what was given, and
    /// `hint` the rule it breaks.
    public static func invalidOption(_ option: String, value: some Sendable, hint: String) -> ReactorError {
        var error = ReactorError(.invalidOption, operation: .checkOptions, hint: hint)
        error.option = option
        error.value = "\(value)"
        return error
    }

    /// An error from a failed system call, classified by its errno.
    public init(errno error: Int32, operation: Operation, address: SocketAddress? = nil) {
        let code: Code
        var hint: String?
        switch error {
        case EADDRINUSE:
            code = .addressInUse
            hint = "another socket holds this port: choose another port or stop the process that has it"
        case EADDRNOTAVAIL:
            code = .addressNotAvailable
            hint = "the address is not assigned to this host"
        case EACCES, EPERM:
            code = .permissionDenied
            hint = operation == .bind ? "ports below 1024 need root or CAP_NET_BIND_SERVICE" : nil
        case ECONNREFUSED: code = .connectionRefused
        case ECONNRESET, EPIPE: code = .connectionReset
        case ETIMEDOUT: code = .timedOut
        case EHOSTUNREACH, ENETUNREACH: code = .unreachable
        case EMSGSIZE:
            code = .messageTooLong
            hint = "a UDP datagram carries at most 65,507 bytes over IPv4 (65,527 over IPv6)"
        case EAGAIN, ENOBUFS:
            code = .wouldBlock
            hint = operation == .send ? "the send buffer is full and the datagram was dropped; raise sendBufferSize or send less" : nil
        case EMFILE, ENFILE:
            code = .tooManyOpenFiles
            hint = "raise the open-file limit (ulimit -n) or lower the connection limit"
        default: code = .system
        }
        self.init(code, operation: operation, address: address, errno: error, hint: hint)
    }

    /// One line: operation, address, cause, errno name, and hint.
    public var description: String {
        var text = operation.rawValue
        if let address { text += " \(address)" } else if let host { text += " '\(host)'" }
        text += ": "
        if let option, let value {
            text += "invalid \(option) \(value)"
        } else if let errno {
            text += ReactorError.systemMessage(errno)
            if let name = System.errnoName(errno) { text += " (\(name))" }
        } else {
            text += codeMessage
        }
        if let hint { text += "; \(hint)" }
        return text
    }

    private var codeMessage: String {
        switch code {
        case .addressInUse: "address already in use"
        case .addressNotAvailable: "address not available"
        case .invalidAddress: "invalid address"
        case .permissionDenied: "permission denied"
        case .connectionRefused: "connection refused"
        case .connectionReset: "connection reset by peer"
        case .timedOut: "timed out"
        case .unreachable: "unreachable"
        case .tooManyOpenFiles: "too many open files"
        case .writeBufferLimitExceeded: "write buffer limit exceeded"
        case .messageTooLong: "message too long"
        case .wouldBlock: "resource temporarily unavailable"
        case .reactorStopped: "the reactor has stopped"
        case .invalidState: "not allowed in this state"
        case .invalidOption: "invalid option"
        case .eventBackend: "libevent backend unavailable"
        case .system: "system error"
        }
    }

    static func systemMessage(_ error: Int32) -> String {
        guard let message = strerror(error) else { return "errno \(error)" }
        // strerror capitalises ("Connection refused"); the rest of the line is lower case.
        let text = String(cString: message)
        return text.prefix(1).lowercased() + text.dropFirst()
    }
}
