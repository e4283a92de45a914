// `reactor bench` finding capacity and merging runs, as a child process: the sweep's
// table, JSON, SVG curve and histogram log; a target nothing meets; runs started together
// with --start-at and merged by `reactor bench merge`; refusals.

import Foundation
import ReactorBench
import ReactorCore
import ReactorTestSupport
import Testing

#if canImport(FoundationXML)
import FoundationXML
#endif

@Suite("reactor bench: capacity and merge", .serialized, .timeLimit(.minutes(2)))
struct CapacityCommandTests {
    @Test func theCommandRefusesCapacityOptionsThatCannotApply() throws {
        for arguments in [["--slo", "p99"], ["--slo", "p99<5ms", "--mode", "churn"], ["--sweep", "10:5:1"],
                          ["--sweep", "10:20:5", "--rate", "100"], ["--out", "/tmp/x"], ["--start-at", "0"]] {
            let child = try ChildProcess.reactor(["bench", "127.0.0.1:7"] + arguments)
            let status = child.waitForExit(timeout: .seconds(10))
            #expect(status != nil && status != 0, "\(arguments)")
            #expect(!child.standardError.isEmpty, "\(arguments) says why")
        }
    }

    /// Two load processes started together by --start-at, merged by `reactor bench merge`:
    /// the counts add up, the skew is recorded, and the merged percentiles are those of
    /// the added histograms.
    @Test func runsStartedTogetherMergeIntoOneResult() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("merge-cli-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let startAt = Int(Date().timeIntervalSince1970) + 2
        try withEchoServer { server in
            let children = try [500, 1500].map { rate in
                try ChildProcess.reactor([
                    "bench", "127.0.0.1:\(server.port)", "--protocol", "line", "--connections", "4", "--rate", "\(rate)",
                    "--duration", "1", "--warmup", "0.2", "--start-at", "\(startAt)", "--quiet", "--json", "\(folder)/run\(rate).json",
                ])
            }
            for child in children { #expect(child.waitForExit(timeout: .seconds(15)) == 0, "\(child.standardError)") }
        }
        let files = ["\(folder)/run500.json", "\(folder)/run1500.json"]
        var requests = 0
        for file in files {
            let run = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
            requests += run["requests"] as? Int ?? 0
            let clock = try #require(run["clock"] as? [String: Any])
            #expect(clock["start_at"] as? Double == Double(startAt))
            let skew = try #require(clock["start_skew_s"] as? Double)
            #expect(skew >= 0 && skew < 0.5, "\(file) started \(skew) s after --start-at")
        }
        let out = "\(folder)/merged.json"
        let merge = try ChildProcess.reactor(["bench", "merge"] + files + ["--json", out])
        #expect(merge.waitForExit(timeout: .seconds(10)) == 0, "\(merge.standardError)")
        #expect(merge.standardOutput.contains("merged 2 run(s)"))
        let merged = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
        #expect(merged["requests"] as? Int == requests)
        #expect(merged["connections"] as? Int == 8)
        #expect(merged["rate"] as? Double == 2000)
        #expect((merged["runs"] as? [Any])?.count == 2)
        #expect((merged["start_spread_s"] as? Double ?? 1) < 0.5)
        let expected = try BenchMerge.merge(files: files)
        let latency = merged["latency_us"] as? [String: Any]
        #expect(latency?["p99"] as? Double == LatencySummary(expected.corrected).p99)
        // Merged results merge again.
        let again = try BenchMerge.merge(files: [out])
        #expect(again.requests == requests && LatencySummary(again.corrected) == LatencySummary(expected.corrected))

        let refused = try ChildProcess.reactor(["bench", "merge", "\(folder)/none.json"])
        #expect(refused.waitForExit(timeout: .seconds(10)) != 0)
        #expect(refused.standardError.contains("none.json"))
    }

    @Test func theCommandSweepsWritesTheCurveAndTheJSONAndFailsWhenNoRateMeetsTheTarget() throws {
        try withSerialServer(serviceTime: .milliseconds(1)) { server in try sweep(server) }
    }

    private func sweep(_ server: TestServer) throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("slo-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let common = ["bench", "127.0.0.1:\(server.port)", "--protocol", "line", "--size", "16", "--connections", "4",
                      "--depth", "16", "--duration", "1", "--warmup", "0.2", "--quiet"]
        let child = try ChildProcess.reactor(common + [
            "--slo", "p50<=10ms", "--sweep", "200:1400:600", "--out", folder, "--json", "\(folder)/slo.json",
            "--histogram-log", "\(folder)/found.hlog",
        ])
        #expect(child.waitForExit(timeout: .seconds(30)) == 0, "\(child.standardError)")
        let lastLine = child.standardOutput.split(separator: "\n").last.map(String.init) ?? ""
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(folder)/slo.json"))) as? [String: Any])
        let slo = try #require(object["slo"] as? [String: Any])
        #expect(slo["target"] as? String == "p50<=10ms")
        #expect(slo["mode"] as? String == "sweep")
        let steps = try #require(slo["steps"] as? [[String: Any]])
        #expect(steps.map { $0["rate"] as? Double } == [200, 800, 1400])
        #expect(steps.last?["meets"] as? Bool == false, "1400 req/s is past the capacity of 1000")
        let foundRate = try #require(slo["found_rate"] as? Double)
        #expect(lastLine.hasPrefix("found rate: \(Int(foundRate)) req/s meets p50<=10ms"), "\(lastLine)")
        #expect(object["rate"] as? Double == foundRate, "the JSON reports the run at the found rate")
        #expect(FileManager.default.fileExists(atPath: "\(folder)/found.hlog"))

        let svg = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/latency-curve.svg"))
        let reader = SVGReader()
        let parser = XMLParser(data: svg)
        parser.delegate = reader
        #expect(parser.parse(), "well-formed XML: \(parser.parserError.map { "\($0)" } ?? "")")
        #expect(reader.elements.first == "svg")
        #expect(reader.points.map { $0["data-rate"] } == ["200.0", "800.0", "1400.0"])
        #expect(reader.classes.contains("target") && reader.classes.contains("found"))

        let impossible = try ChildProcess.reactor(common + ["--slo", "p50<1us", "--rate", "8", "--json", "\(folder)/none.json"])
        let status = impossible.waitForExit(timeout: .seconds(60))
        #expect(status != nil && status != 0, "no rate meets a target of 1 µs against a 1 ms server")
        #expect(impossible.standardOutput.split(separator: "\n").last?.hasPrefix("found rate: none") == true, "\(impossible.standardOutput)")
        let none = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(folder)/none.json"))) as? [String: Any]
        let noneSLO = none?["slo"] as? [String: Any]
        #expect(noneSLO?["found_rate"] is NSNull)
        #expect(((noneSLO?["steps"] as? [Any])?.count ?? 0) >= 2, "halved at least once before giving up")
    }
}

/// Collects the elements, classes and step points of an SVG.
private final class SVGReader: NSObject, XMLParserDelegate {
    var elements: [String] = []
    var classes: Set<String> = []
    var points: [[String: String]] = []

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:]
    ) {
        elements.append(elementName)
        if let name = attributes["class"] { classes.insert(name) }
        if elementName == "circle", attributes["class"] == "step" { points.append(attributes) }
    }
}
