// The connection's state machine on its own, no socket: every state against every
// event, the legal transitions with the action each asks for, the impossible ones
// rejected with the state unchanged, and the close reason a graceful close ends with.

import ReactorCore
import Testing

typealias State = ConnectionLifecycle.State
typealias Event = ConnectionLifecycle.Event
typealias Action = ConnectionLifecycle.Action

/// One event of each kind (both flavours of the peer's FIN).
let allEvents: [Event] = [
    .peerClosedInput(halfClosureAllowed: true), .peerClosedInput(halfClosureAllowed: false), .close, .shutdownOutput,
    .outputDrained, .lingerEnded, .finish(.aborted),
]

/// The whole table: for each state and event, the state after it and the action, or nil
/// when the event cannot happen there. States reached from `.open` close with
/// `CloseReason.closed` unless a FIN started the close (see the reason tests below).
func expected(_ state: State, _ event: Event) -> (State, Action)? {
    switch (state, event) {
    case (.closed, .peerClosedInput), (.closed, .lingerEnded): nil
    case (.closed, _): (.closed, .none)
    case (_, .finish(let reason)): (.closed, .finish(reason))

    case (.open, .peerClosedInput(true)): (.inputClosed, .notifyInputClosed)
    case (.open, .peerClosedInput(false)): (.closingInputClosed, .drain)
    case (.open, .close): (.closing, .drain)
    case (.open, .shutdownOutput): (.outputDraining, .none)
    case (.open, .outputDrained): (.open, .none)
    case (.open, .lingerEnded): nil

    case (.inputClosed, .peerClosedInput): nil
    case (.inputClosed, .close): (.closingInputClosed, .drain)
    case (.inputClosed, .shutdownOutput): (.inputClosedOutputDraining, .none)
    case (.inputClosed, .outputDrained): (.inputClosed, .none)
    case (.inputClosed, .lingerEnded): nil

    case (.outputDraining, .peerClosedInput(true)): (.inputClosedOutputDraining, .notifyInputClosed)
    case (.outputDraining, .peerClosedInput(false)): (.closingInputClosed, .drain)
    case (.outputDraining, .close): (.closing, .drain)
    case (.outputDraining, .shutdownOutput): (.outputDraining, .none)
    case (.outputDraining, .outputDrained): (.outputClosed, .shutdownOutput)
    case (.outputDraining, .lingerEnded): nil

    case (.inputClosedOutputDraining, .peerClosedInput): nil
    case (.inputClosedOutputDraining, .close): (.closingInputClosed, .drain)
    case (.inputClosedOutputDraining, .shutdownOutput): (.inputClosedOutputDraining, .none)
    case (.inputClosedOutputDraining, .outputDrained): (.closed, .shutdownOutputAndFinish(.endOfFile))
    case (.inputClosedOutputDraining, .lingerEnded): nil

    case (.outputClosed, .peerClosedInput): (.closed, .finish(.endOfFile))
    case (.outputClosed, .close): (.closing, .drain)
    case (.outputClosed, .shutdownOutput): (.outputClosed, .none)
    case (.outputClosed, .outputDrained): (.outputClosed, .none)
    case (.outputClosed, .lingerEnded): nil

    case (.closing, .peerClosedInput): nil
    case (.closing, .close): (.closing, .none)
    case (.closing, .shutdownOutput): (.closing, .none)
    case (.closing, .outputDrained): (.lingering, .shutdownOutputAndLinger)
    case (.closing, .lingerEnded): nil

    case (.closingInputClosed, .peerClosedInput): nil
    case (.closingInputClosed, .close): (.closingInputClosed, .none)
    case (.closingInputClosed, .shutdownOutput): (.closingInputClosed, .none)
    case (.closingInputClosed, .outputDrained): (.closed, .shutdownOutputAndFinish(.closed))
    case (.closingInputClosed, .lingerEnded): nil

    case (.lingering, .peerClosedInput): (.closed, .finish(.closed))
    case (.lingering, .close): (.lingering, .none)
    case (.lingering, .shutdownOutput): (.lingering, .none)
    case (.lingering, .outputDrained): (.lingering, .none)
    case (.lingering, .lingerEnded): (.closed, .finish(.closed))
    }
}

@Suite("Connection state machine")
struct ConnectionLifecycleStateTests {
    @Test("every legal transition gives the state and action of the table", arguments: State.allCases)
    func legalTransitions(_ state: State) {
        for event in allEvents {
            guard let (next, action) = expected(state, event) else { continue }
            var machine = ConnectionLifecycle(state: state)
            #expect(machine.handle(event) == action, "\(state) on \(event)")
            #expect(machine.state == next, "\(state) on \(event)")
        }
    }

    @Test("an event that cannot happen in a state is rejected and leaves the state as it was", arguments: State.allCases)
    func illegalTransitionsRejected(_ state: State) {
        var rejected = 0
        for event in allEvents where expected(state, event) == nil {
            var machine = ConnectionLifecycle(state: state)
            #expect(machine.handle(event) == nil, "\(state) on \(event)")
            #expect(machine.state == state)
            rejected += 1
        }
        // The peer's FIN cannot come twice, nor once reading has stopped for a close;
        // the linger timer only runs while lingering.
        let expectedRejections: [State: Int] = [
            .open: 1, .inputClosed: 3, .outputDraining: 1, .inputClosedOutputDraining: 3, .outputClosed: 1,
            .closing: 3, .closingInputClosed: 3, .lingering: 0, .closed: 3,
        ]
        #expect(rejected == expectedRejections[state])
    }

    @Test("the coarse phase, writes, input and half-closure flags of each state")
    func derivedViews() {
        let views: [State: (Connection.Phase, writes: Bool, inputClosed: Bool, outputShutdown: Bool)] = [
            .open: (.open, true, false, false),
            .inputClosed: (.open, true, true, false),
            .outputDraining: (.open, false, false, true),
            .inputClosedOutputDraining: (.open, false, true, true),
            .outputClosed: (.open, false, false, true),
            .closing: (.closing, false, false, false),
            .closingInputClosed: (.closing, false, true, false),
            .lingering: (.lingering, false, false, false),
            .closed: (.closed, false, false, false),
        ]
        for state in State.allCases {
            let machine = ConnectionLifecycle(state: state)
            let view = views[state]!
            #expect(machine.phase == view.0, "\(state)")
            #expect(machine.isOpen == (view.0 == .open), "\(state)")
            #expect(machine.acceptsWrites == view.writes, "\(state)")
            #expect(machine.isInputClosed == view.inputClosed, "\(state)")
            #expect(machine.isOutputShutdown == view.outputShutdown, "\(state)")
        }
    }

    @Test("exactly the states whose next step waits for output to drain say so")
    func waitsForDrain() {
        for state in State.allCases {
            var machine = ConnectionLifecycle(state: state)
            let action = machine.handle(.outputDrained)
            #expect(ConnectionLifecycle(state: state).waitsForDrain == (action != Action.none), "\(state)")
        }
    }

    @Test("input is watched while open for reading (unless paused) and while lingering, never otherwise")
    func inputInterest() {
        for state in State.allCases {
            let machine = ConnectionLifecycle(state: state)
            let reads = [State.open, .outputDraining, .outputClosed].contains(state)
            #expect(machine.wantsInput(paused: false) == (reads || state == .lingering), "\(state)")
            #expect(machine.wantsInput(paused: true) == (state == .lingering), "\(state) paused")
        }
    }

    @Test("a graceful close ends with the reason it began with: closed after close(), end of file after the peer's FIN")
    func closeReasons() {
        var closed = ConnectionLifecycle()
        #expect(closed.handle(.close) == .drain)
        #expect(closed.handle(.outputDrained) == .shutdownOutputAndLinger)
        #expect(closed.handle(.peerClosedInput(halfClosureAllowed: false)) == .finish(.closed))

        var lingeredOut = ConnectionLifecycle()
        _ = lingeredOut.handle(.close)
        _ = lingeredOut.handle(.outputDrained)
        #expect(lingeredOut.handle(.lingerEnded) == .finish(.closed))

        var byPeer = ConnectionLifecycle()
        #expect(byPeer.handle(.peerClosedInput(halfClosureAllowed: false)) == .drain)
        #expect(byPeer.closeReason == .endOfFile)
        #expect(byPeer.handle(.outputDrained) == .shutdownOutputAndFinish(.endOfFile))

        var halfThenClose = ConnectionLifecycle()
        #expect(halfThenClose.handle(.peerClosedInput(halfClosureAllowed: true)) == .notifyInputClosed)
        #expect(halfThenClose.handle(.close) == .drain)
        #expect(halfThenClose.handle(.outputDrained) == .shutdownOutputAndFinish(.closed))

        var bothHalves = ConnectionLifecycle()
        _ = bothHalves.handle(.shutdownOutput)
        #expect(bothHalves.handle(.outputDrained) == .shutdownOutput)
        #expect(bothHalves.handle(.peerClosedInput(halfClosureAllowed: true)) == .finish(.endOfFile))
        #expect(bothHalves.state == .closed)
    }

    @Test("finish closes from every state but closed, with the reason given, once")
    func finishFromEverywhere() {
        for state in State.allCases where state != .closed {
            var machine = ConnectionLifecycle(state: state)
            #expect(machine.handle(.finish(.timedOut)) == .finish(.timedOut))
            #expect(machine.state == .closed)
            #expect(machine.handle(.finish(.aborted)) == Action.none)
        }
    }
}
