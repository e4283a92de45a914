import Dispatch
import Foundation
import Logging
import ReactorCore
import Synchronization

/// Runs one benchmark: starts a reactor per thread with its share of the clients, reports
/// progress once a second, and gathers the figures. The run ends at its deadline whatever
/// the server does: the workers stop their clients at the end of the measured window, and
/// a worker that has not reported a little after that is stopped from outside.
public enum BenchRunner {
    /// Runs `options` and returns what it measured. `progress` is called on the calling
    /// thread about once a second; without it the workers do not compute the p99 it
    /// shows (a walk of the histogram each second).
    public static func run(
        _ options: BenchOptions, progress: ((ProgressSnapshot) -> Void)? = nil
    ) throws(BenchError) -> BenchResult {
        try options.validate()
        let spec = try CodecSpec(options)
        let address = try targetAddress(options)
        if let source = options.sourceAddresses.first, source.family != address.family {
            throw BenchError("--source addresses such as \(source.ip) are not of the family of the target \(address)")
        }
        let rssBefore = options.serverPID.flatMap { ProcessStats.memoryKiB(pid: $0, field: "VmRSS") }
        let schedule = RunSchedule(start: RunRecord.scheduledStart(options), warmup: options.warmup, duration: options.duration)
        let results = Mutex<[WorkerResult]>([])
        let done = DispatchSemaphore(value: 0)
        var threads: [(ReactorThread, WorkerProgress)] = []
        // Workers and their clients refer to each other; once a worker's thread has ended
        // (no callback can reach a client any more) its clients are let go.
        var workers: [WorkerHolder] = []
        defer { for holder in workers { holder.worker.releaseClients() } }
        let publishesP99 = progress != nil
        var logger = Logger(label: "reactor-bench")
        logger.logLevel = .critical
        for thread in 0..<options.threads {
            let share = clientRange(thread: thread, of: options.threads, connections: options.connections)
            let progressBox = WorkerProgress()
            do {
                // Open loop: requests leave on a schedule, and a timer a millisecond late
                // (epoll's resolution) would count in every corrected latency.
                let (reactorThread, holder) = try ReactorThread.start(
                    name: "bench-\(thread)", logger: logger, preciseTimers: options.rate != nil
                ) { reactor in
                    let worker = BenchWorker(
                        reactor: reactor, options: options, spec: spec, address: address, schedule: schedule, progress: progressBox,
                        publishesP99: publishesP99
                    ) { result in
                        results.withLock { $0.append(result) }
                        done.signal()
                    }
                    worker.start(clientIndices: share)
                    return WorkerHolder(worker)
                }
                threads.append((reactorThread, progressBox))
                workers.append(holder)
            } catch {
                for (started, _) in threads { started.stop() }
                throw BenchError("cannot start a reactor thread: \(error)")
            }
        }

        // Progress through the warmup, then the measured window; CPU is sampled at the
        // window's edges, as close as a sleeping thread gets.
        let reporter = ProgressReporter(schedule: schedule, workers: threads.map(\.1), progress: progress)
        sleep(until: schedule.start)
        let actualStart = Date().timeIntervalSince1970
        reporter.report(until: schedule.measureStart)
        let clientCPUStart = ProcessStats.ownCPUSeconds()
        let serverCPUStart = options.serverPID.flatMap { ProcessStats.cpuSeconds(pid: $0) }
        reporter.report(until: schedule.end)
        let clientCPU = ProcessStats.ownCPUSeconds() - clientCPUStart
        let serverCPUEnd = options.serverPID.flatMap { ProcessStats.cpuSeconds(pid: $0) }
        let peakRSS = options.serverPID.flatMap { ProcessStats.memoryKiB(pid: $0, field: "VmHWM") }
        let rssAtEnd = options.serverPID.flatMap { ProcessStats.memoryKiB(pid: $0, field: "VmRSS") }

        // The hard deadline: workers report at the end of the window; one that has not
        // within a few seconds is stopped without its figures.
        let cutoff = DispatchTime.now() + .seconds(3)
        var reported = 0
        while reported < threads.count, done.wait(timeout: cutoff) == .success { reported += 1 }
        for (thread, _) in threads { thread.stop() }

        var merged = WorkerResult(
            requests: 0, sent: 0, inFlightAtEnd: 0, answeredAfterEnd: 0, responseBytes: 0, errors: ErrorCounts(), warmupErrors: ErrorCounts(),
            latency: LatencyRecorder(highestTrackable: (options.hardDeadline + .seconds(60)).nanoseconds), openConnections: 0)
        let workerResults = results.withLock { $0 }
        for result in workerResults {
            merged.requests += result.requests
            merged.sent += result.sent
            merged.inFlightAtEnd += result.inFlightAtEnd
            merged.answeredAfterEnd += result.answeredAfterEnd
            merged.responseBytes += result.responseBytes
            merged.errors.add(result.errors)
            merged.warmupErrors.add(result.warmupErrors)
            merged.latency.add(result.latency)
            merged.openConnections += result.openConnections
            merged.hits += result.hits
            merged.misses += result.misses
            merged.reconnects += result.reconnects
            merged.statusCodes.merge(result.statusCodes, uniquingKeysWith: +)
        }
        let seconds = options.duration.seconds
        let corrected = LatencySummary(merged.latency.corrected)
        var result = BenchResult(
            target: "\(options.host):\(options.port)", protocol: options.protocol, protocolName: options.protocolName, mode: options.mode,
            connections: options.connections, depth: options.depth, size: options.size, rate: options.rate,
            threads: options.threads, durationSeconds: seconds, warmupSeconds: options.warmup.seconds,
            requests: merged.requests, sent: merged.sent, inFlightAtEnd: merged.inFlightAtEnd,
            answeredAfterEnd: merged.answeredAfterEnd,
            errors: merged.errors, warmupErrors: merged.warmupErrors,
            rps: Double(merged.requests) / seconds, bytesPerSecond: Double(merged.responseBytes) / seconds,
            latency: corrected,
            latencyUncorrected: options.rate == nil ? corrected : LatencySummary(merged.latency.uncorrected),
            clientCPUSeconds: clientCPU, clientCPUs: ProcessStats.allowedCPUCount(),
            serverCPUSeconds: serverCPUStart.flatMap { start in serverCPUEnd.map { $0 - start } },
            serverPeakRSSKiB: peakRSS)
        result.hits = merged.hits
        result.misses = merged.misses
        result.reconnects = merged.reconnects
        result.statusCodes = merged.statusCodes
        result.record = RunRecord(
            machine: ProcessInfo.processInfo.hostName, requestedStart: options.startAt, actualStart: actualStart,
            measureStart: RunRecord.unixTime(ofMonotonic: schedule.measureStart), measureEnd: RunRecord.unixTime(ofMonotonic: schedule.end),
            latency: merged.latency, isOpenLoop: options.rate != nil)
        if options.recordsIntervals {
            result.record?.intervals = RunRecord.intervals(
                snapshots: workerResults.map(\.intervals), finals: workerResults.map(\.latency.corrected),
                duration: seconds, highestTrackable: merged.latency.highestTrackable)
        }
        if options.mode == .idle {
            result.idleConnections = merged.openConnections
            // Memory per connection means something only when every connection was held:
            // with some failed, the growth is spread over the wrong count.
            let heldAll = merged.openConnections == options.connections && merged.errors.total == 0 && merged.warmupErrors.total == 0
            result.idleHeldAll = heldAll
            if heldAll, let rssBefore, let rssAtEnd {
                result.serverRSSPerConnectionBytes = Double(rssAtEnd - rssBefore) * 1024 / Double(merged.openConnections)
            }
        }
        return result
    }

    /// Carries a worker out of its thread, to let its clients go once the thread has ended.
    private final class WorkerHolder: @unchecked Sendable {
        let worker: BenchWorker
        init(_ worker: BenchWorker) { self.worker = worker }
    }

    /// The clients thread `thread` of `count` runs: an even split, the first threads
    /// taking one more when it does not divide.
    static func clientRange(thread: Int, of count: Int, connections: Int) -> Range<Int> {
        let base = connections / count
        let extra = connections % count
        let start = thread * base + Swift.min(thread, extra)
        return start..<(start + base + (thread < extra ? 1 : 0))
    }

    static func sleep(until deadline: UInt64) {
        let now = Reactor.now
        guard deadline > now else { return }
        var request = timespec(tv_sec: Int((deadline - now) / 1_000_000_000), tv_nsec: Int((deadline - now) % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0, errno == EINTR { request = remaining }
    }
}

/// Sums the workers' progress once a second for the progress callback.
private final class ProgressReporter {
    private let schedule: RunSchedule
    private let workers: [WorkerProgress]
    private let progress: ((ProgressSnapshot) -> Void)?
    private var lastResponses = 0
    private var lastTime: UInt64

    init(schedule: RunSchedule, workers: [WorkerProgress], progress: ((ProgressSnapshot) -> Void)?) {
        self.schedule = schedule
        self.workers = workers
        self.progress = progress
        lastTime = schedule.start
    }

    /// Sleeps to `end`, waking a second after the last report to report again.
    func report(until end: UInt64) {
        while true {
            let next = lastTime + 1_000_000_000
            guard next <= end else {
                BenchRunner.sleep(until: end)
                return
            }
            BenchRunner.sleep(until: next)
            let time = Reactor.now
            let responses = workers.reduce(0) { $0 + $1.responses.load(ordering: .relaxed) }
            progress?(ProgressSnapshot(
                elapsed: Double(time - schedule.start) / 1e9, warmingUp: time < schedule.measureStart,
                requests: workers.reduce(0) { $0 + $1.requests.load(ordering: .relaxed) },
                rate: Double(responses - lastResponses) / (Double(time - lastTime) / 1e9),
                p99: Double(workers.map { $0.p99.load(ordering: .relaxed) }.max() ?? 0) / 1000,
                errors: workers.reduce(0) { $0 + $1.errors.load(ordering: .relaxed) },
                openConnections: workers.reduce(0) { $0 + $1.openConnections.load(ordering: .relaxed) }))
            lastResponses = responses
            lastTime = time
        }
    }
}
