// nio-executor-bench: the cases of Benchmarks/async/ExecutorBench (executor-bench) on
// SwiftNIO's event loop executor (an EventLoop as a SerialExecutor), for
// Benchmarks/async/executor-bench.sh to set beside the reactor's.
//
//   nio-executor-bench CASE COUNT
//
//   yield    a task on the event loop yields COUNT times: each yield enqueues its job on
//            the loop from the loop's thread
//   actor    a task on the event loop calls a method of an actor on that loop COUNT
//            times
//
// An EventLoop is no TaskExecutor in this SwiftNIO, so for `yield` and `actor` a task runs
// on the loop as SwiftNIO has it run: the singleton group (one loop here) installed as
// Swift concurrency's global executor (NIOSingletons'
// unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor).
//   inline   an actor on a loop calls a method of another actor on the same loop COUNT
//            times (one executor: the runtime switches without enqueueing)
//   hop      an actor on a second loop calls a method of an actor on the first COUNT
//            times: one job enqueued on each loop from the other's thread per call
//   global   a task on Swift's global concurrent executor (its cooperative pool) calls a
//            method of an actor on a loop COUNT times
//
// The loops are a MultiThreadedEventLoopGroup of two threads (the singleton for `yield`
// and `actor`).
// An uncounted warm-up of COUNT / 10 operations runs first. Prints
// `case=CASE count=COUNT ns_per_op=X cpu_ns_per_op=C allocations_per_op=Y`
// (C: CPU time of the whole process, every thread), the allocations under
// LD_PRELOAD=Benchmarks/alloc/malloc_count.so (its `malloc_count_now`), else `n/a`.

import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// malloc_count.c's running total, when it is preloaded.
let mallocCountNow: (@convention(c) () -> UInt)? = dlsym(nil, "malloc_count_now").map {
    unsafeBitCast($0, to: (@convention(c) () -> UInt).self)
}

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

/// An actor whose state lives on an event loop's thread.
actor Peer {
    let loop: any EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.executor.asUnownedSerialExecutor() }
    var calls = 0

    init(on loop: any EventLoop) {
        self.loop = loop
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

@main
struct NIOExecutorBench {
    static func main() async {
        let arguments = CommandLine.arguments
        let cases = ["yield", "actor", "inline", "hop", "global"]
        guard arguments.count == 3, cases.contains(arguments[1]), let count = Int(arguments[2]), count >= 10 else {
            print("usage: nio-executor-bench yield|actor|inline|hop|global COUNT (COUNT >= 10)")
            exit(2)
        }
        let name = arguments[1]
        let loop: any EventLoop
        let otherLoop: any EventLoop
        if name == "actor" || name == "yield" {
            NIOSingletons.groupLoopCountSuggestion = 1
            guard NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor() else {
                print("nio-executor-bench: cannot install the event loop as the global executor")
                exit(1)
            }
            loop = MultiThreadedEventLoopGroup.singleton.next()
            otherLoop = loop
        } else {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
            loop = group.next()
            otherLoop = group.next()
        }
        let peers = (Peer(on: loop), Peer(on: loop), Peer(on: otherLoop))
        _ = await run(name, max(count / 10, 1), peers, loop)
        let measured = await run(name, count, peers, loop)
        let perOp = measured.allocations.map { String(Double($0) / Double(count)) } ?? "n/a"
        print(
            "case=\(name) count=\(count) ns_per_op=\(Double(measured.ns) / Double(count))"
                + " cpu_ns_per_op=\(Double(measured.cpuNs) / Double(count)) allocations_per_op=\(perOp)")
        exit(0)
    }

    /// COUNT operations of case `name`; `peers` are an actor on `loop`, another on
    /// `loop`, and one on the other loop.
    static func run(_ name: String, _ count: Int, _ peers: (Peer, Peer, Peer), _ loop: any EventLoop) async
        -> Measurement
    {
        let (peer, sibling, remote) = peers
        switch name {
        case "yield":
            return await Task.detached {
                precondition(loop.inEventLoop)
                let probe = Probe()
                for _ in 0..<count { await Task.yield() }
                return probe.read()
            }.value
        case "actor":
            // Detached, so not on the main actor: with the loop installed as the global
            // executor, the task runs there.
            return await Task.detached {
                precondition(loop.inEventLoop)
                let probe = Probe()
                for _ in 0..<count { await peer.call() }
                return probe.read()
            }.value
        case "inline":
            return await sibling.calling(peer, count)
        case "hop":
            return await remote.calling(peer, count)
        default:
            return await Task.detached {
                precondition(!loop.inEventLoop)
                let probe = Probe()
                for _ in 0..<count { await peer.call() }
                return probe.read()
            }.value
        }
    }
}
