/// A one-shot or repeating timer on a ``Reactor``, made by ``Reactor/schedule(after:repeating:_:)``.
///
/// Keep it to cancel it; dropping it does not cancel it. The reactor holds a scheduled
/// timer until it fires (one-shot), is cancelled, or the reactor stops.
public final class ReactorTimer {
    let reactor: Reactor
    var deadline: UInt64
    let interval: UInt64?
    var body: ((ReactorTimer) -> Void)?
    var sequence: UInt64 = 0
    var heapIndex = -1

    init(reactor: Reactor, deadline: UInt64, interval: UInt64?, body: @escaping (ReactorTimer) -> Void) {
        self.reactor = reactor
        self.deadline = deadline
        self.interval = interval
        self.body = body
    }

    /// True until the timer has fired (one-shot) or been cancelled.
    public var isScheduled: Bool { heapIndex >= 0 }

    /// Stops the timer; its closure will not run again. Cancelling twice, or after a
    /// one-shot timer fired, does nothing.
    public func cancel() {
        reactor.preconditionInLoop()
        body = nil
        guard heapIndex >= 0 else { return }
        reactor.cancel(self)
    }
}

/// The reactor's timers: a binary min-heap ordered by (deadline, sequence), so equal
/// deadlines fire first-in first-out. One libevent timer is armed for the earliest.
/// A class, not a struct: timer callbacks schedule and cancel timers while the queue
/// is firing, which a mutating struct method would forbid.
final class TimerQueue {
    private var heap: [ReactorTimer] = []
    private var nextSequence: UInt64 = 0
    private(set) var isFiring = false
    /// Set while the reactor measures its loop latency (``Reactor/startSamplingTimerLatency(capacity:)``).
    var latencySampler: TimerLatencySampler?

    var first: ReactorTimer? { heap.first }
    var isEmpty: Bool { heap.isEmpty }

    func insert(_ timer: ReactorTimer) {
        timer.sequence = nextSequence
        nextSequence &+= 1
        timer.heapIndex = heap.count
        heap.append(timer)
        siftUp(heap.count - 1)
    }

    func remove(_ timer: ReactorTimer) {
        let index = timer.heapIndex
        guard index >= 0, index < heap.count, heap[index] === timer else { return }
        let last = heap.removeLast()
        timer.heapIndex = -1
        guard index < heap.count else { return }
        heap[index] = last
        last.heapIndex = index
        siftDown(index)
        siftUp(index)
    }

    func removeAll() {
        for timer in heap {
            timer.heapIndex = -1
            timer.body = nil
        }
        heap.removeAll()
    }

    /// Runs every timer due at `now`. Timers scheduled while firing wait for the next
    /// pass even if already due, so a zero-delay timer that reschedules itself cannot
    /// hold the loop.
    func fireDue(now: UInt64) {
        isFiring = true
        defer { isFiring = false }
        let firstNewSequence = nextSequence
        while let timer = heap.first, timer.deadline <= now, timer.sequence < firstNewSequence {
            remove(timer)
            guard let body = timer.body else { continue }
            // The clock is read again per timer: earlier callbacks of this pass delay it too.
            if let latencySampler { latencySampler.record(System.monotonicNanoseconds &- timer.deadline) }
            if let interval = timer.interval {
                var next = timer.deadline &+ interval
                if next <= now { next = now &+ interval }
                timer.deadline = next
                insert(timer)
            } else {
                timer.body = nil
            }
            body(timer)
        }
    }

    private func ordered(_ a: ReactorTimer, before b: ReactorTimer) -> Bool {
        a.deadline != b.deadline ? a.deadline < b.deadline : a.sequence < b.sequence
    }

    private func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard ordered(heap[child], before: heap[parent]) else { return }
            swapAt(child, parent)
            child = parent
        }
    }

    private func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            guard left < heap.count else { return }
            let right = left + 1
            let child = right < heap.count && ordered(heap[right], before: heap[left]) ? right : left
            guard ordered(heap[child], before: heap[parent]) else { return }
            swapAt(child, parent)
            parent = child
        }
    }

    private func swapAt(_ i: Int, _ j: Int) {
        heap.swapAt(i, j)
        heap[i].heapIndex = i
        heap[j].heapIndex = j
    }
}
