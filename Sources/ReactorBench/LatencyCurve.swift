import Foundation

/// The throughput/latency curve of a search or sweep as SVG text: achieved requests/s
/// across, latency (log scale, ms) up, a point per step (green: met the target, red: did
/// not), the target as a dashed line and the found rate as a vertical line. A step whose
/// failures alone missed the target has no latency and sits on the top edge.
struct LatencyCurve {
    struct Point {
        var rate: Double
        var achieved: Double
        var latencyMicroseconds: Double?
        var meets: Bool?
    }

    var title: String
    var percentileName: String
    var points: [Point]
    var targetMicroseconds: Double?
    var foundRate: Double?

    private static let width = 720.0
    private static let height = 440.0
    private static let left = 80.0
    private static let right = 30.0
    private static let top = 50.0
    private static let bottom = 60.0

    var svg: String {
        let plotWidth = Self.width - Self.left - Self.right
        let plotHeight = Self.height - Self.top - Self.bottom
        let xMax = Swift.max(1, (points.map { Swift.max($0.achieved, $0.rate) } + [foundRate ?? 0]).max() ?? 1) * 1.05
        let latencies = points.compactMap(\.latencyMicroseconds).filter { $0 > 0 } + [targetMicroseconds].compactMap { $0 }
        // Whole decades of microseconds around everything drawn.
        let low = Foundation.pow(10, Foundation.floor(Foundation.log10(latencies.min() ?? 100)))
        let high = Foundation.pow(10, Swift.max(Foundation.ceil(Foundation.log10(latencies.max() ?? 1000)), Foundation.log10(low) + 1))
        func x(_ rate: Double) -> Double { Self.left + rate / xMax * plotWidth }
        func y(_ microseconds: Double?) -> Double {
            guard let microseconds, microseconds > 0 else { return Self.top }
            let share = (Foundation.log10(microseconds) - Foundation.log10(low)) / (Foundation.log10(high) - Foundation.log10(low))
            return Self.top + plotHeight * (1 - Swift.min(1, Swift.max(0, share)))
        }

        var out = """
            <?xml version="1.0" encoding="UTF-8"?>
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(Self.width))" height="\(Int(Self.height))" \
            viewBox="0 0 \(Int(Self.width)) \(Int(Self.height))" font-family="Helvetica, Arial, sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="#ffffff"/>
            <text x="10" y="22" font-size="15" font-weight="bold">\(BarChart.escape(title))</text>
            <text x="10" y="38" font-size="11" fill="#555555">\(BarChart.escape(percentileName)) latency from the intended send time (ms, log scale) by achieved requests/s</text>
            <line x1="\(f(Self.left))" y1="\(f(Self.top))" x2="\(f(Self.left))" y2="\(f(Self.top + plotHeight))" stroke="#333333"/>
            <line x1="\(f(Self.left))" y1="\(f(Self.top + plotHeight))" x2="\(f(Self.left + plotWidth))" y2="\(f(Self.top + plotHeight))" stroke="#333333"/>

            """
        var decade = low
        while decade <= high * 1.0001 {
            out += """
                <line x1="\(f(Self.left - 4))" y1="\(f(y(decade)))" x2="\(f(Self.left + plotWidth))" y2="\(f(y(decade)))" stroke="#e4e4e4"/>
                <text x="\(f(Self.left - 8))" y="\(f(y(decade) + 4))" text-anchor="end">\(Self.milliseconds(decade))</text>

                """
            decade *= 10
        }
        for tick in 0...4 {
            let rate = xMax / 1.05 * Double(tick) / 4
            out += """
                <text x="\(f(x(rate)))" y="\(f(Self.top + plotHeight + 18))" text-anchor="middle">\(BenchSummary.number(rate))</text>

                """
        }
        out += """
            <text x="\(f(Self.left + plotWidth / 2))" y="\(f(Self.height - 14))" text-anchor="middle">requests/s achieved</text>

            """
        if let targetMicroseconds {
            out += """
                <line class="target" x1="\(f(Self.left))" y1="\(f(y(targetMicroseconds)))" x2="\(f(Self.left + plotWidth))" \
                y2="\(f(y(targetMicroseconds)))" stroke="#c0392b" stroke-dasharray="6,4"/>
                <text x="\(f(Self.left + plotWidth - 4))" y="\(f(y(targetMicroseconds) - 6))" text-anchor="end" fill="#c0392b">target \(Self.milliseconds(targetMicroseconds)) ms</text>

                """
        }
        if let foundRate, let found = points.first(where: { $0.rate == foundRate }) {
            out += """
                <line class="found" x1="\(f(x(found.achieved)))" y1="\(f(Self.top))" x2="\(f(x(found.achieved)))" \
                y2="\(f(Self.top + plotHeight))" stroke="#1e8449" stroke-width="1.5"/>
                <text x="\(f(x(found.achieved) + 6))" y="\(f(Self.top + 14))" fill="#1e8449">found \(BenchSummary.number(foundRate)) req/s</text>

                """
        }
        let ordered = points.sorted { $0.rate < $1.rate }
        if ordered.count > 1 {
            let path = ordered.map { "\(f(x($0.achieved))),\(f(y($0.latencyMicroseconds)))" }.joined(separator: " ")
            out += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"#2f6db5\" stroke-width=\"1.5\"/>\n"
        }
        for point in ordered {
            let colour = point.meets.map { $0 ? "#1e8449" : "#c0392b" } ?? "#2f6db5"
            let latency = point.latencyMicroseconds.map { String(format: "%.1f", $0) } ?? "none"
            out += """
                <circle class="step" cx="\(f(x(point.achieved)))" cy="\(f(y(point.latencyMicroseconds)))" r="4" fill="\(colour)" \
                data-rate="\(f(point.rate))" data-achieved="\(f(point.achieved))" data-latency-us="\(latency)"/>

                """
        }
        return out + "</svg>\n"
    }

    private func f(_ value: Double) -> String { String(format: "%.1f", value) }

    private static func milliseconds(_ microseconds: Double) -> String {
        let value = microseconds / 1000
        return value >= 1 ? BenchSummary.number(value) : String(format: "%g", value)
    }
}
