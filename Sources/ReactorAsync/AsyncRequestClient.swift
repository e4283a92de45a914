import ReactorCore
import ReactorFraming

/// A request/response client over one connection, with pipelining: any number of tasks
/// may call ``request(_:timeout:isolation:)-([UInt8],_,_)`` at once; requests go out in
/// the order they are made, without waiting for earlier replies, and the n-th frame that
/// comes back answers the n-th request.
///
/// ```swift
/// let client = try await AsyncRequestClient.connect(handle, host: "127.0.0.1", port: port, framing: .line)
/// let reply = try await client.request("GET greeting")
/// print(reply.string)
/// await client.close()
/// ```
///
/// A request that times out or whose task is cancelled breaks the order (its reply would
/// answer the next request), so the connection closes gracefully: that request throws
/// (`ReactorError.Code.timedOut`, or `CancellationError`), the requests
/// behind it throw `ReactorError`, and later ones find the connection
/// closed. A request cancelled before it went out (while it waited for writability)
/// closes the connection too: its caller cannot tell whether it had gone out. A frame that arrives when no request waits is a protocol error: it is logged
/// and the connection closes.
public final class AsyncRequestClient: Sendable {
    let connection: AsyncConnection
    /// The time a request waits for its reply unless it says otherwise (nil: no limit).
    public let requestTimeout: Duration?

    init(connection: AsyncConnection, requestTimeout: Duration?) {
        self.connection = connection
        self.requestTimeout = requestTimeout
    }

    /// Connects to a server and returns a client for it.
    ///
    /// - Parameters:
    ///   - handle: the reactor the connection lives on.
    ///   - host: a name or an address; a name is resolved off the loop (Happy Eyeballs).
    ///   - port: the server's port.
    ///   - framing: how requests and replies are framed.
    ///   - timeout: the connect timeout.
    ///   - requestTimeout: how long a request waits for its reply by default (10 s; nil: no limit).
    ///   - options: the connection's inbound watermarks and socket options.
    /// - Throws: `ReactorError` when the connect fails.
    public static func connect(
        _ handle: ReactorHandle, host: String, port: Int, framing: Framing, timeout: Duration = .seconds(10),
        requestTimeout: Duration? = .seconds(10), options: AsyncConnectionOptions = .init()
    ) async throws -> AsyncRequestClient {
        try await connect(
            handle, host: host, port: port, timeout: timeout, requestTimeout: requestTimeout, options: options
        ) { framing.makeFramer() }
    }

    /// Connects with a framer of your own; see ``connect(_:host:port:framing:timeout:requestTimeout:options:)``.
    public static func connect(
        _ handle: ReactorHandle, host: String, port: Int, timeout: Duration = .seconds(10),
        requestTimeout: Duration? = .seconds(10), options: AsyncConnectionOptions = .init(),
        makeFramer: @escaping @Sendable () -> any Framer
    ) async throws -> AsyncRequestClient {
        let connection = try await handle.connect(
            host: host, port: port, timeout: timeout, options: options, client: true, makeFramer: makeFramer)
        return AsyncRequestClient(connection: connection, requestTimeout: requestTimeout)
    }

    /// The reactor's executor: tasks that prefer it make requests with no thread hop.
    public var executor: ReactorExecutor { connection.executor }

    /// Sends `payload` as one frame and returns the frame that answers it.
    ///
    /// - Parameters:
    ///   - payload: the request, framed by the connection's framer.
    ///   - timeout: how long to wait for the reply; nil takes ``requestTimeout``.
    ///   - actor: the caller's isolation, so that a caller on the reactor needs no hop.
    /// - Throws: `ReactorError` (closed, timed out, reset),
    ///   `FramingError` when the payload cannot be framed, `CancellationError`.
    public func request(
        _ payload: [UInt8], timeout: Duration? = nil, isolation actor: isolated (any Actor)? = #isolation
    ) async throws -> Frame {
        let core = connection.core
        let limit = timeout ?? requestTimeout
        if core.executor.isCurrentThread {
            return try await core.request(isolation: actor, timeout: limit) { framed throws(FramingError) in try ConnectionCore.send(payload, on: framed) }
        }
        return try await withTaskExecutorPreference(core.executor) { [core] in
            try await core.requestHopped(payload, timeout: limit)
        }
    }

    /// Sends a string's UTF-8 as one frame; see ``request(_:timeout:isolation:)-([UInt8],_,_)``.
    public func request(
        _ payload: String, timeout: Duration? = nil, isolation actor: isolated (any Actor)? = #isolation
    ) async throws -> Frame {
        try await request(Array(payload.utf8), timeout: timeout, isolation: actor)
    }

    /// Closes gracefully once the requests sent are flushed, and waits until it is closed;
    /// requests still waiting for replies then throw.
    public func close() async {
        await connection.close()
    }
}

extension ConnectionCore {
    /// Nonisolated: runs on the task's preferred executor, the reactor.
    func requestHopped(_ payload: [UInt8], timeout: Duration?) async throws -> Frame {
        try await request(isolation: nil, timeout: timeout) { framed throws(FramingError) in try ConnectionCore.send(payload, on: framed) }
    }
}
