// docs/services.md shows code from this target verbatim, and names the limits the code has.

import Foundation
import ReactorCore
import ReactorServices
import ReactorTestSupport
import Testing

@Suite("docs/services.md")
struct ServicesDocTests {
    static let document = packageRoot.appendingPathComponent("docs/services.md")

    @Test("the example after each `<!-- compiled: PATH -->` marker is the file at PATH")
    func compiledExample() throws {
        let text = try String(contentsOf: Self.document, encoding: .utf8)
        let marker = "<!-- compiled: Tests/ReactorServicesTests/ServicesDocExample.swift -->\n```swift\n"
        let start = try #require(text.range(of: marker), "the marker is missing")
        let end = try #require(text[start.upperBound...].range(of: "\n```"))
        let file = try String(
            contentsOf: packageRoot.appendingPathComponent("Tests/ReactorServicesTests/ServicesDocExample.swift"), encoding: .utf8)
        #expect(String(text[start.upperBound..<end.lowerBound]) == file.trimmingCharacters(in: .newlines))
    }

    @Test("the defaults it states are the code's")
    func defaults() throws {
        let text = try String(contentsOf: Self.document, encoding: .utf8)
        let options = ReplyGuardOptions()
        for fact in [
            "\(Int(options.repliesPerSecond)) replies per second", "burst of \(options.burst)",
            "\(options.maxTrackedSources) sources", "\(ChargenDatagramHandler.linesPerReply * 74) bytes",
            "\(QuoteList.maxReplyLength) bytes", "\(QuoteList.maxFileSize / 1024 / 1024) MiB",
        ] {
            #expect(text.contains(fact), "docs/services.md should say '\(fact)'")
        }
    }
}
