#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC in nanoseconds: the one clock every timestamp of a run is taken from,
/// on every thread (a vDSO call, no syscall).
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// The phases of a run on the monotonic clock, shared by every worker so their windows
/// line up.
struct RunSchedule: Sendable {
    /// When clients start connecting and sending.
    let start: UInt64
    /// From here on requests count (start plus the warmup).
    let measureStart: UInt64
    /// The end of the measured window; every client stops here.
    let end: UInt64

    init(start: UInt64, warmup: Duration, duration: Duration) {
        self.start = start
        measureStart = start + warmup.nanoseconds
        end = measureStart + duration.nanoseconds
    }
}
