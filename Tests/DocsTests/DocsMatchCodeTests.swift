import Foundation
import Testing

/// Code shown in README.md, docs/ and the DocC articles is the code in this test target,
/// verbatim: each `<!-- compiled: PATH -->` marker in a document is followed by a
/// ```swift block that must equal the file at PATH, which this target compiles.
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

    @Test(arguments: [
        "README.md", "docs/framing.md", "docs/bench.md",
        "Sources/ReactorCore/ReactorCore.docc/GettingStarted.md",
        "Sources/ReactorCore/ReactorCore.docc/EmbeddingAReactor.md",
        "Sources/ReactorCore/ReactorCore.docc/BackpressureAndLimits.md",
        "Sources/ReactorCore/ReactorCore.docc/UDPDatagrams.md",
        "Sources/ReactorCore/ReactorCore.docc/UsingEveryCore.md",
        "Sources/ReactorFraming/ReactorFraming.docc/FramingAndWritingAFramer.md",
        "Sources/ReactorBench/ReactorBench.docc/BenchmarkingAServer.md",
        "Sources/ReactorAsync/ReactorAsync.docc/AsyncConnections.md",
    ])
    func documentShowsCompiledCode(document: String) throws {
        let blocks = try Self.compiledBlocks(in: document)
        #expect(!blocks.isEmpty, "\(document) has no compiled examples")
        for block in blocks {
            let file = try String(contentsOf: Self.root.appendingPathComponent(block.path), encoding: .utf8)
            #expect(block.code == file.trimmingCharacters(in: .newlines), "\(document): the block marked \(block.path) differs from that file")
        }
    }
    @Test("README's minimum Swift is Package.swift's tools version, and the sources need no later Swift")
    func swiftVersionAgrees() throws {
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        let tools = try #require(manifest.firstMatch(of: /swift-tools-version: ?(\d+)\.(\d+)/))
        let toolsVersion = (Int(tools.1)!, Int(tools.2)!)
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let stated = try #require(readme.firstMatch(of: /Swift (\d+)\.(\d+)\s+or\s+later/), "README names no minimum Swift")
        #expect((Int(stated.1)!, Int(stated.2)!) == toolsVersion, "README says Swift \(stated.1).\(stated.2), Package.swift \(tools.1).\(tools.2)")
        // RawSpan and `unsafe` expressions (SE-0447, SE-0458) arrived with Swift 6.2.
        let core = try String(contentsOf: Self.root.appendingPathComponent("Sources/ReactorCore/TCP/Connection.swift"), encoding: .utf8)
        if core.contains("RawSpan") || core.contains("unsafe RawSpan") {
            #expect(toolsVersion >= (6, 2), "the sources use RawSpan, which needs Swift 6.2")
        }
    }

    @Test("docs/api.md names every public function and initializer of ReactorCore, ReactorFraming and ReactorLifecycle")
    func apiOverviewNamesEveryEntryPoint() throws {
        let api = try String(contentsOf: Self.root.appendingPathComponent("docs/api.md"), encoding: .utf8)
        let spans = api.matches(of: /`([^`\n]+)`/).map { String($0.1) }
        var checked = 0
        for module in ["ReactorCore", "ReactorFraming", "ReactorLifecycle"] {
            let folder = Self.root.appendingPathComponent("Sources/\(module)")
            let files = try #require(FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil))
                .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" }
            for file in files {
                var type = ""
                for line in try String(contentsOf: file, encoding: .utf8).split(separator: "\n") {
                    if let declared = line.firstMatch(of: /^(?:public |package )?(?:final )?(?:class|struct|enum|extension|protocol) (\w+)/) {
                        type = String(declared.1)
                    }
                    guard let entry = line.firstMatch(of: /^    public (?:static |mutating |convenience )*(?:func (\w+)|init\b)/) else { continue }
                    let name = entry.1.map { "\($0)(" } ?? "\(type)("
                    if name == "hash(" { continue }  // Hashable
                    checked += 1
                    #expect(spans.contains { $0.contains(name) }, "docs/api.md does not name \(type).\(name) (\(file.lastPathComponent))")
                }
            }
        }
        #expect(checked > 50, "found only \(checked) entry points")
    }
}
