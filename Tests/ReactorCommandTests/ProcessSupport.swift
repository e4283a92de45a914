// What the integration tests need to know about the machine: CI, and whether Twisted is
// there (child processes and the `reactor` executable are in ReactorTestSupport).

import Foundation
import Glibc
import ReactorTestSupport

/// True when the environment variable CI is set (to anything but an empty string).
let runningInCI: Bool = !(ProcessInfo.processInfo.environment["CI"] ?? "").isEmpty

/// True when `python3 -c "import twisted"` succeeds (within 30 s).
let twistedAvailable: Bool = {
    guard let child = try? ChildProcess("/usr/bin/env", ["python3", "-c", "import twisted"]) else { return false }
    let end = ContinuousClock.now + .seconds(30)
    while child.process.isRunning, ContinuousClock.now < end { usleep(5000) }
    guard !child.process.isRunning else { return false }
    return child.process.terminationReason == .exit && child.process.terminationStatus == 0
}()

/// True when `python3 -c "import prometheus_client"` succeeds (within 30 s).
let prometheusClientAvailable: Bool = {
    guard let child = try? ChildProcess("/usr/bin/env", ["python3", "-c", "import prometheus_client"]) else { return false }
    let end = ContinuousClock.now + .seconds(30)
    while child.process.isRunning, ContinuousClock.now < end { usleep(5000) }
    guard !child.process.isRunning else { return false }
    return child.process.terminationReason == .exit && child.process.terminationStatus == 0
}()
