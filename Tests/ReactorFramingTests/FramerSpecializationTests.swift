// Every framer the module defines takes the specialized path through FramedConnection
// (code compiled for its type, see FramerEngine.swift), and one from elsewhere does not.
// The list of built-in framers is read from the module's sources, so a new framer that
// is not added to the one list in FramerEngine.swift fails here.

import Foundation
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

@Suite("Framer specialization")
struct FramerSpecializationTests {
    /// The public types of Sources/ReactorFraming that conform to `Framer`.
    static let builtInFramerTypes: Set<String> = {
        let folder = packageRoot.appendingPathComponent("Sources/ReactorFraming")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        var names: Set<String> = []
        let declaration = /public (?:struct|final class|enum) (\w+)\s*:[^{]*\bFramer\b/
        for file in files where file.hasSuffix(".swift") {
            let text = (try? String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)) ?? ""
            for match in text.matches(of: declaration) { names.insert(String(match.1)) }
        }
        return names
    }()

    @Test("the framer cases cover every built-in framer")
    func casesCoverEveryFramer() {
        #expect(Self.builtInFramerTypes.count >= 5, "found \(Self.builtInFramerTypes)")
        let covered = Set(FramerCase.all.map { String(describing: type(of: $0.makeFramer())) })
        #expect(covered == Self.builtInFramerTypes)
    }

    @Test("every built-in framer takes the specialized path", arguments: FramerCase.all)
    func builtInIsSpecialized(_ framerCase: FramerCase) {
        let framed = FramedConnection(framer: framerCase.makeFramer(), handler: Recorder())
        #expect(framed.isFramerSpecialized, "\(type(of: framerCase.makeFramer())) is missing from FramerEngine.swift's list")
    }

    @Test("a framer from another module goes through any Framer, and switching framers switches paths")
    func customIsNot() {
        let framed = FramedConnection(framer: TestOnlyFramer(), handler: Recorder())
        #expect(!framed.isFramerSpecialized)
        #expect(framed.framer is TestOnlyFramer, "the framer property shows the user's framer, not a wrapper")
        framed.framer = DelimiterFramer.line()
        #expect(framed.isFramerSpecialized)
        framed.framer = TestOnlyFramer()
        #expect(!framed.isFramerSpecialized)
    }
}

/// A framer defined outside ReactorFraming: one byte, one frame.
private struct TestOnlyFramer: Framer {
    var maxFrameLength: Int { 1 }

    mutating func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch {
        buffer.byteCount >= 1 ? .frame(payload: 0..<1, frameLength: 1) : .needMore(atLeast: 1)
    }

    func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int { 0 }
}
