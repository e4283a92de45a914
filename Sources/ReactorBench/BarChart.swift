import Foundation

/// A horizontal bar chart as SVG text: one bar per target, the baseline's bar in a
/// second colour, each bar labelled with its value and its ratio to the baseline.
struct BarChart {
    struct Bar {
        var label: String
        var value: Double
        var isBaseline: Bool
        /// The value against the baseline's, as text ("1.35x"), when there is one.
        var ratio: String?
    }

    var title: String
    var unit: String
    var bars: [Bar]

    private static let width = 720.0
    private static let labelWidth = 150.0
    private static let valueWidth = 190.0
    private static let barHeight = 26.0
    private static let gap = 10.0
    private static let top = 44.0

    var svg: String {
        let plotWidth = Self.width - Self.labelWidth - Self.valueWidth - 20
        let height = Self.top + Double(bars.count) * (Self.barHeight + Self.gap) + 30
        let largest = bars.map(\.value).max() ?? 0
        var out = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(Self.width))" height="\(Int(height))" \
            viewBox="0 0 \(Int(Self.width)) \(Int(height))" font-family="Helvetica, Arial, sans-serif" font-size="13">
            <rect width="100%" height="100%" fill="#ffffff"/>
            <text x="10" y="22" font-size="15" font-weight="bold">\(Self.escape(title))</text>
            <text x="10" y="38" font-size="11" fill="#555555">\(Self.escape(unit))</text>

            """
        for (index, bar) in bars.enumerated() {
            let y = Self.top + Double(index) * (Self.barHeight + Self.gap)
            let length = largest > 0 ? Swift.max(1, bar.value / largest * plotWidth) : 1
            let colour = bar.isBaseline ? "#8c8c8c" : "#2f6db5"
            let text = BenchSummary.number(bar.value) + (bar.ratio.map { "  (\($0))" } ?? "")
            out += """
                <text x="\(Self.labelWidth - 8)" y="\(Self.format(y + Self.barHeight * 0.68))" text-anchor="end">\(Self.escape(bar.label))</text>
                <rect x="\(Self.labelWidth)" y="\(Self.format(y))" width="\(Self.format(length))" height="\(Self.barHeight)" fill="\(colour)"/>
                <text x="\(Self.format(Self.labelWidth + length + 6))" y="\(Self.format(y + Self.barHeight * 0.68))">\(Self.escape(text))</text>

                """
        }
        let axisY = Self.top + Double(bars.count) * (Self.barHeight + Self.gap)
        out += """
            <line x1="\(Self.labelWidth)" y1="\(Self.top - 4)" x2="\(Self.labelWidth)" y2="\(Self.format(axisY))" stroke="#333333"/>
            <text x="10" y="\(Self.format(axisY + 20))" font-size="11" fill="#555555">grey: baseline</text>
            </svg>

            """
        return out
    }

    private static func format(_ value: Double) -> String { String(format: "%.1f", value) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
