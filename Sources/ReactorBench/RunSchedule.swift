import ReactorCore

/// The phases of a run on the monotonic clock (`Reactor/now`, the one clock every
/// timestamp of a run is taken from, on every thread), shared by every worker so their
/// windows line up.
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
