import Foundation
import Testing

/// Code shown in README.md and docs/ is the code in this test target, verbatim: each
/// `<!-- compiled: PATH -->` marker in a document is followed by a ```swift block that
/// must equal the file at PATH, which this target compiles.
@Suite struct DocsMatchCodeTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func compiledBlocks(in document: String) throws -> [(path: String, code: String)] {
        let text = try String(contentsOf: root.appendingPathComponent(document), encoding: .utf8)
        var blocks: [(String, String)] = []
        var rest = Substring(text)
        while let marker = rest.range(of: "<!-- compiled: ") {
            let afterMarker = rest[marker.upperBound...]
            guard let close = afterMarker.range(of: " -->"),
                  let open = afterMarker.range(of: "```swift\n"),
                  let end = afterMarker[open.upperBound...].range(of: "\n```")
            else { break }
            blocks.append((String(afterMarker[..<close.lowerBound]), String(afterMarker[open.upperBound..<end.lowerBound])))
            rest = afterMarker[end.upperBound...]
        }
        return blocks
    }

    @Test("docs/architecture.md's module table names every module of Package.swift")
    func moduleTableNamesEveryModule() throws {
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        let declared = manifest.matches(of: /\.(?:target|executableTarget|systemLibrary)\(\s*name: "(\w+)"(?:,\s*dependencies: \[[^\]]*\])?(,\s*path: "Tests)?/)
            .filter { $0.2 == nil }  // test support lives under Tests/, not a module users see
            .map { String($0.1) }
        let architecture = try String(contentsOf: Self.root.appendingPathComponent("docs/architecture.md"), encoding: .utf8)
        let section = try #require(architecture.range(of: "## Modules").map { architecture[$0.upperBound...] })
        let table = try #require(section.split(separator: "```", omittingEmptySubsequences: false).dropFirst().first)
        let listed = Set(table.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
        #expect(declared.count >= 7, "found \(declared) in Package.swift")
        for module in declared {
            #expect(listed.contains(module), "docs/architecture.md's module table lacks \(module)")
        }
    }

    @Test(arguments: ["README.md", "docs/framing.md", "docs/bench.md"])
    func documentShowsCompiledCode(document: String) throws {
        let blocks = try Self.compiledBlocks(in: document)
        #expect(!blocks.isEmpty, "\(document) has no compiled examples")
        for block in blocks {
            let file = try String(contentsOf: Self.root.appendingPathComponent(block.path), encoding: .utf8)
            #expect(block.code == file.trimmingCharacters(in: .newlines), "\(document): the block marked \(block.path) differs from that file")
        }
    }
}
