/// A TCP connection's life as a state machine, with no socket in it: ``Connection`` feeds
/// it events (the peer's FIN, a call to close, output drained, ...) and carries out the
/// action each transition names. Keeping the rules here, apart from the I/O, lets every
/// transition be tested on its own.
///
/// There is no connecting state: a ``Connection`` exists only once its socket is connected
/// (accepted, or an outgoing connect completed); until then the connect belongs to
/// ``Reactor/connect(to:from:timeout:options:handler:)``.
package struct ConnectionLifecycle: Equatable {
    /// Where the connection is. The cases in which writes are accepted come first, then
    /// the others that still count as ``Connection/Phase/open``: the checks on the hot
    /// path compare the raw value once.
    package enum State: UInt8, Sendable, CaseIterable {
        /// Reading and writing.
        case open
        /// The peer sent FIN and half-closure is allowed: writing only.
        case inputClosed
        /// ``Connection/shutdownOutput()`` was called: queued output goes out, then FIN;
        /// still reading.
        case outputDraining
        /// Both of the above: queued output goes out, then FIN, and the connection closes.
        case inputClosedOutputDraining
        /// Our FIN is sent after ``Connection/shutdownOutput()``; still reading.
        case outputClosed
        /// Closing gracefully: reading stopped, queued output goes out, then FIN and a
        /// short wait for the peer's.
        case closing
        /// Closing gracefully after the peer's FIN: queued output goes out, then FIN, and
        /// the socket closes without waiting.
        case closingInputClosed
        /// Our FIN is sent; waiting briefly for the peer's so that closing does not reset
        /// data the peer has not read yet.
        case lingering
        /// The socket is closed.
        case closed
    }

    /// What happened to the connection.
    package enum Event: Equatable {
        /// A read returned end of file.
        case peerClosedInput(halfClosureAllowed: Bool)
        /// ``Connection/close()``.
        case close
        /// ``Connection/shutdownOutput()``.
        case shutdownOutput
        /// The output queue is empty and no write batch is open.
        case outputDrained
        /// The wait for the peer's FIN ended (its timer, or a read error while waiting).
        case lingerEnded
        /// The connection must close now: abort, a socket error, a timeout, teardown.
        case finish(CloseReason)
    }

    /// What the connection must do for a transition.
    package enum Action: Equatable {
        /// Nothing: the event changes nothing in this state (a second close, say).
        case none
        /// Stop reading and tell the handler the peer's input ended.
        case notifyInputClosed
        /// Stop reading, start the close timer and flush what is queued.
        case drain
        /// Send FIN (shutdown of the sending side); stay open for reading.
        case shutdownOutput
        /// Send FIN and wait for the peer's, at most the linger timeout.
        case shutdownOutputAndLinger
        /// Send FIN, then close the socket with this reason.
        case shutdownOutputAndFinish(CloseReason)
        /// Close the socket with this reason.
        case finish(CloseReason)
    }

    package private(set) var state: State = .open

    package init() {}

    package init(state: State) { self.state = state }

    /// Why a graceful close, once under way, will end: ``CloseReason/closed`` after
    /// ``Connection/close()``, ``CloseReason/endOfFile`` after the peer's FIN.
    package var closeReason: CloseReason { closedByPeer ? .endOfFile : .closed }

    /// The one bit behind ``closeReason``: a `CloseReason` stored here would take the room
    /// of its largest case (a ``ReactorError``, over a hundred bytes) in every connection.
    private var closedByPeer = false

    /// Writes are accepted (the connection is open and its output not shut down).
    @inline(__always)
    package var acceptsWrites: Bool { state.rawValue <= State.inputClosed.rawValue }

    /// The connection counts as ``Connection/Phase/open``: reading, writing or both.
    @inline(__always)
    package var isOpen: Bool { state.rawValue <= State.outputClosed.rawValue }

    /// Output still has to be flushed (the public ``Connection/Phase/closing`` included).
    package var isFlushing: Bool { state.rawValue <= State.closingInputClosed.rawValue }

    /// Queued output draining moves the state on (to FIN, lingering or closed): the
    /// connection reports ``Event/outputDrained`` only then, not after every flush.
    package var waitsForDrain: Bool {
        switch state {
        case .outputDraining, .inputClosedOutputDraining, .closing, .closingInputClosed: true
        case .open, .inputClosed, .outputClosed, .lingering, .closed: false
        }
    }

    /// The peer's FIN has arrived.
    package var isInputClosed: Bool {
        switch state {
        case .inputClosed, .inputClosedOutputDraining, .closingInputClosed: true
        case .open, .outputDraining, .outputClosed, .closing, .lingering, .closed: false
        }
    }

    /// ``Connection/shutdownOutput()`` was called (its FIN may still wait for queued output).
    package var isOutputShutdown: Bool {
        switch state {
        case .outputDraining, .inputClosedOutputDraining, .outputClosed: true
        case .open, .inputClosed, .closing, .closingInputClosed, .lingering, .closed: false
        }
    }

    /// The public, coarser view.
    package var phase: Connection.Phase {
        switch state {
        case .open, .inputClosed, .outputDraining, .inputClosedOutputDraining, .outputClosed: .open
        case .closing, .closingInputClosed: .closing
        case .lingering: .lingering
        case .closed: .closed
        }
    }

    /// Whether the socket should be watched for input in this state, given the reasons to
    /// hold reading back that are not part of the life cycle.
    package func wantsInput(paused: Bool) -> Bool {
        switch state {
        case .open, .outputDraining, .outputClosed: !paused
        case .lingering: true
        case .inputClosed, .inputClosedOutputDraining, .closing, .closingInputClosed, .closed: false
        }
    }

    /// Applies `event`. Returns the action to carry out, or nil when the event cannot
    /// happen in this state (the state is left as it was): the connection treats that as
    /// a bug of its own.
    package mutating func handle(_ event: Event) -> Action? {
        switch (state, event) {
        case (.closed, .finish), (.closed, .close), (.closed, .shutdownOutput), (.closed, .outputDrained):
            return Action.none
        case (_, .finish(let reason)):
            state = .closed
            return .finish(reason)

        case (.open, .peerClosedInput(true)):
            state = .inputClosed
            return .notifyInputClosed
        case (.outputDraining, .peerClosedInput(true)):
            state = .inputClosedOutputDraining
            return .notifyInputClosed
        case (.open, .peerClosedInput(false)), (.outputDraining, .peerClosedInput(false)):
            state = .closingInputClosed
            closedByPeer = true
            return .drain
        case (.outputClosed, .peerClosedInput):
            state = .closed
            return .finish(.endOfFile)
        case (.lingering, .peerClosedInput), (.lingering, .lingerEnded):
            state = .closed
            return .finish(closeReason)

        case (.open, .close), (.outputDraining, .close), (.outputClosed, .close):
            state = .closing
            closedByPeer = false
            return .drain
        case (.inputClosed, .close), (.inputClosedOutputDraining, .close):
            state = .closingInputClosed
            closedByPeer = false
            return .drain
        case (.closing, .close), (.closingInputClosed, .close), (.lingering, .close):
            return Action.none

        case (.open, .shutdownOutput):
            state = .outputDraining
            return Action.none
        case (.inputClosed, .shutdownOutput):
            state = .inputClosedOutputDraining
            return Action.none
        case (.outputDraining, .shutdownOutput), (.inputClosedOutputDraining, .shutdownOutput), (.outputClosed, .shutdownOutput),
            (.closing, .shutdownOutput), (.closingInputClosed, .shutdownOutput), (.lingering, .shutdownOutput):
            return Action.none

        case (.open, .outputDrained), (.inputClosed, .outputDrained), (.outputClosed, .outputDrained), (.lingering, .outputDrained):
            return Action.none
        case (.outputDraining, .outputDrained):
            state = .outputClosed
            return .shutdownOutput
        case (.inputClosedOutputDraining, .outputDrained):
            state = .closed
            return .shutdownOutputAndFinish(.endOfFile)
        case (.closing, .outputDrained):
            state = .lingering
            return .shutdownOutputAndLinger
        case (.closingInputClosed, .outputDrained):
            state = .closed
            return .shutdownOutputAndFinish(closeReason)

        // Reading stops with the peer's FIN and while closing, so a second FIN cannot be
        // seen; the linger timer and the read that ends lingering exist only while lingering.
        case (.inputClosed, .peerClosedInput), (.inputClosedOutputDraining, .peerClosedInput),
            (.closing, .peerClosedInput), (.closingInputClosed, .peerClosedInput), (.closed, .peerClosedInput),
            (.open, .lingerEnded), (.inputClosed, .lingerEnded), (.outputDraining, .lingerEnded),
            (.inputClosedOutputDraining, .lingerEnded), (.outputClosed, .lingerEnded), (.closing, .lingerEnded),
            (.closingInputClosed, .lingerEnded), (.closed, .lingerEnded):
            return nil
        }
    }
}
