// executor-bench: what a job enqueued on a ReactorExecutor costs, in heap allocations and
// nanoseconds. Benchmarks/budgets/budgets.sh holds the allocations to a budget of 0;
// Benchmarks/async/executor-bench.sh sets the nanoseconds beside SwiftNIO's event loop
// executor (Benchmarks/swift/Sources/nio-executor-bench runs the same cases there).
//
//   executor-bench CASE COUNT
//
//   yield    a task that prefers the reactor's executor yields COUNT times: each yield
//            goes through the reactor's queue from the reactor thread (two enqueues per
//            yield, by a gdb breakpoint that counted them). (Not an actor on the
//            reactor: `Task.yield()` is nonisolated, so an actor would hop off to the
//            global executor and back for each one.)
//   actor    a task that prefers the reactor's executor calls a method of an actor on the
//            reactor COUNT times (into the actor's executor and back to the task's: two
//            jobs per call)
//   inline   an actor on the reactor calls a method of another actor on the same reactor
//            COUNT times: one executor, so the runtime switches without enqueueing
//   hop      an actor on a second reactor calls a method of an actor on the first COUNT
//            times: each call enqueues one job on the first reactor from the second's
//            thread, and one on the second from the first's
//   global   a task on Swift's global concurrent executor calls a method of an actor on
//            the reactor COUNT times: a job onto the reactor from a pool thread, and one
//            back onto the pool (the pool's enqueue is Swift's, not the reactor's)
//   execute  the control: COUNT closures posted with `handle.execute` from another thread,
//            each capturing a reference, so each allocates its context: the count must
//            see at least one allocation per operation, or it sees nothing
//
// An uncounted warm-up of COUNT / 10 operations runs first. Prints
// `case=CASE count=COUNT ns_per_op=X cpu_ns_per_op=C allocations_per_op=Y`
// (C: CPU time of the whole process, every thread); the allocations are counted
// under LD_PRELOAD=Benchmarks/alloc/malloc_count.so (its `malloc_count_now`), all threads
// included, and are `n/a` without it.
import Glibc
import ReactorCore

/// The time and the allocations since it was made: made and read on one thread, inside
/// the code measured, so that no hop into or out of that code is counted.
struct Probe: Sendable {
    let allocationsBefore = mallocCountNow?()
    let start = ContinuousClock.now
    let cpuStart = processCPUTime()

    /// Nanoseconds of wall-clock time, nanoseconds of CPU time of the whole process (every
    /// thread), and allocations (nil without the counter) since `init`.
    func read() -> Measurement {
        let elapsed = ContinuousClock.now - start
        let cpu = processCPUTime() - cpuStart
        let after = mallocCountNow?()
        let ns = elapsed.components.seconds * 1_000_000_000 + elapsed.components.attoseconds / 1_000_000_000
        return Measurement(ns: ns, cpuNs: cpu, allocations: allocationsBefore.flatMap { before in after.map { $0 - before } })
    }
}

/// What a ``Probe`` read.
struct Measurement: Sendable {
    let ns: Int64
    let cpuNs: Int64
    let allocations: UInt?
}

/// CLOCK_PROCESS_CPUTIME_ID in nanoseconds: on a shared machine, steadier than the wall
/// clock (time the threads wait for a CPU is not in it).
func processCPUTime() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// malloc_count.c's running total, when it is preloaded.
let mallocCountNow: (@convention(c) () -> UInt)? = dlsym(nil, "malloc_count_now").map {
    unsafeBitCast($0, to: (@convention(c) () -> UInt).self)
}

/// An actor whose state lives on a reactor's thread.
actor Peer {
    let executor: ReactorExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    var calls = 0

    init(on executor: ReactorExecutor) {
        self.executor = executor
    }

    func call() {
        calls &+= 1
    }

    func calling(_ other: Peer, _ count: Int) async -> Measurement {
        let probe = Probe()
        for _ in 0..<count { await other.call() }
        return probe.read()
    }
}

/// The closures of the `execute` control write here, on the reactor thread only.
final class Tally: @unchecked Sendable {
    var value = 0
}

@main
struct ExecutorBench {
    static func main() async throws {
        let arguments = CommandLine.arguments
        let cases = ["yield", "actor", "inline", "hop", "global", "execute"]
        guard arguments.count == 3, cases.contains(arguments[1]), let count = Int(arguments[2]), count >= 10 else {
            print("usage: executor-bench yield|actor|inline|hop|global|execute COUNT (COUNT >= 10)")
            exit(2)
        }
        let name = arguments[1]
        let (thread, _) = try ReactorThread.start(name: "bench-a") { _ in }
        let (other, _) = try ReactorThread.start(name: "bench-b") { _ in }
        let executor = thread.handle.executor
        let peers = (Peer(on: executor), Peer(on: executor), Peer(on: other.handle.executor))
        _ = try await run(name, max(count / 10, 1), peers, thread.handle)
        let measured = try await run(name, count, peers, thread.handle)
        let perOp = measured.allocations.map { String(Double($0) / Double(count)) } ?? "n/a"
        print(
            "case=\(name) count=\(count) ns_per_op=\(Double(measured.ns) / Double(count))"
                + " cpu_ns_per_op=\(Double(measured.cpuNs) / Double(count)) allocations_per_op=\(perOp)")
        thread.stop()
        other.stop()
    }

    /// COUNT operations of case `name`; `peers` are an actor on the reactor of `handle`,
    /// another on it, and one on the other reactor. Not on the main actor: `execute` posts
    /// from a thread of the global executor.
    static func run(_ name: String, _ count: Int, _ peers: (Peer, Peer, Peer), _ handle: ReactorHandle) async throws
        -> Measurement
    {
        let (peer, sibling, remote) = peers
        switch name {
        case "yield":
            let executor = handle.executor
            return await Task(executorPreference: executor) {
                precondition(executor.isCurrentThread)
                let probe = Probe()
                for _ in 0..<count { await Task.yield() }
                return probe.read()
            }.value
        case "actor":
            let executor = handle.executor
            return await Task(executorPreference: executor) {
                precondition(executor.isCurrentThread)
                let probe = Probe()
                for _ in 0..<count { await peer.call() }
                return probe.read()
            }.value
        case "inline":
            return await sibling.calling(peer, count)
        case "hop":
            return await remote.calling(peer, count)
        case "global":
            return await Task.detached {
                precondition(!handle.executor.isCurrentThread)
                let probe = Probe()
                for _ in 0..<count { await peer.call() }
                return probe.read()
            }.value
        default:
            let tally = Tally()
            let probe = Probe()
            for _ in 0..<count { handle.execute { _ in tally.value &+= 1 } }
            let seen = try await handle.submit { _ in tally.value }
            precondition(seen == count)
            return probe.read()
        }
    }
}
