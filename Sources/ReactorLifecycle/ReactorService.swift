import Logging
import ReactorCore
import ServiceLifecycle

/// A reactor on a thread of its own, run as a swift-service-lifecycle `Service`, so it
/// starts and stops with the rest of a `ServiceGroup`:
///
/// ```swift
/// let echo = ReactorService(name: "echo") { reactor in
///     try reactor.listen(host: "0.0.0.0", port: 7007) { _ in EchoHandler() }
/// }
/// let group = ServiceGroup(services: [echo], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await group.run()
/// ```
///
/// `setup` runs on the reactor thread before the loop starts; an error it throws ends
/// `run()` with that error. Graceful shutdown of the group becomes
/// ``Reactor/shutdownGracefully(timeout:)`` (stop accepting, let connections flush);
/// cancelling the task stops the reactor at once. `run()` returns once the reactor
/// has stopped and released everything.
public struct ReactorService: Service, CustomStringConvertible {
    /// The reactor thread's name, also the service's description.
    public let name: String
    /// How long connections may take to flush on graceful shutdown.
    public let shutdownTimeout: Duration
    /// The reactor's ``ReactorCore/Reactor/outputBudget``.
    public let outputBudget: Int
    private let logger: Logger
    private let setup: @Sendable (Reactor) throws -> Void

    /// A service that runs `setup` on a new reactor, then the reactor's loop.
    public init(
        name: String = "reactor", logger: Logger = Logger(label: "reactor"),
        shutdownTimeout: Duration = .seconds(10), outputBudget: Int = Reactor.defaultOutputBudget,
        setup: @escaping @Sendable (Reactor) throws -> Void
    ) {
        self.name = name
        self.logger = logger
        self.shutdownTimeout = shutdownTimeout
        self.outputBudget = outputBudget
        self.setup = setup
    }

    public var description: String { name }

    public func run() async throws {
        let (thread, _) = try ReactorThread.start(name: name, logger: logger, outputBudget: outputBudget, setup: setup)
        let handle = thread.handle
        let timeout = shutdownTimeout
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await thread.stopped()
            } onGracefulShutdown: {
                handle.shutdownGracefully(timeout: timeout)
            }
        } onCancel: {
            handle.stop()
        }
        thread.join()
    }
}
