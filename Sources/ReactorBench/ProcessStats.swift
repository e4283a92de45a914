import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// CPU time and memory of a process, read from /proc (Linux).
public enum ProcessStats {
    /// User plus system CPU seconds of process `pid` (utime + stime in /proc/PID/stat),
    /// or nil when it cannot be read.
    public static func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name (which may hold spaces) start at field 3 (state).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// A `Vm...` figure in KiB from /proc/PID/status (`VmHWM` for the peak resident set,
    /// `VmRSS` for the current one), or nil.
    public static func memoryKiB(pid: Int32, field: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        }
        return nil
    }

    /// CPU seconds this process has used, every thread (getrusage).
    public static func ownCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// CPUs this process may run on.
    public static func allowedCPUCount() -> Int {
        var set = cpu_set_t()
        guard let getAffinity = affinityCall("sched_getaffinity"), getAffinity(0, MemoryLayout<cpu_set_t>.size, &set) == 0 else { return ProcessInfo.processInfo.activeProcessorCount }
        return Int(withUnsafeBytes(of: set) { bytes in bytes.reduce(0) { $0 + $1.nonzeroBitCount } })
    }

    /// Restricts the calling thread, and the threads it starts afterwards, to `cpus`.
    public static func pin(to cpus: [Int]) throws(BenchError) {
        var set = cpu_set_t()
        withUnsafeMutableBytes(of: &set) { bytes in
            for cpu in cpus where cpu >= 0 && cpu < bytes.count * 8 {
                bytes[cpu / 8] |= UInt8(1) << (cpu % 8)
            }
        }
        guard let setAffinity = affinityCall("sched_setaffinity"), setAffinity(0, MemoryLayout<cpu_set_t>.size, &set) == 0 else {
            throw BenchError("cannot pin to CPUs \(cpus.map(String.init).joined(separator: ",")): \(String(cString: strerror(errno)))")
        }
    }

    private typealias AffinityCall = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32

    /// glibc's sched_get/setaffinity, which its Swift module hides (they need _GNU_SOURCE).
    private static func affinityCall(_ name: String) -> AffinityCall? {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
        return unsafeBitCast(symbol, to: AffinityCall.self)
    }

    /// Parses a CPU list such as `1`, `0,2` or `2-3`.
    public static func parseCPUList(_ text: String) -> [Int]? {
        var cpus: [Int] = []
        for part in text.split(separator: ",") {
            let bounds = part.split(separator: "-", maxSplits: 1).map { Int($0) }
            guard let low = bounds.first ?? nil, low >= 0 else { return nil }
            let high = bounds.count == 2 ? bounds[1] : low
            guard let high, high >= low else { return nil }
            cpus.append(contentsOf: low...high)
        }
        return cpus.isEmpty ? nil : cpus
    }
}
