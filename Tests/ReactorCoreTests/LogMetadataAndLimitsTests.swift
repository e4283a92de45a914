// Peer addresses in log metadata rather than in message text, and the open-file limit
// offered to embedders (issue 12, items 7 and 9).

import Glibc
import Logging
import ReactorCore
import ReactorTestSupport
import Testing

/// Keeps every log event with its metadata.
struct MetadataCapturingLogHandler: LogHandler {
    let events: Locked<[(message: String, metadata: [String: String])]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        events.update { $0.append(("\(event.message)", merged.mapValues { "\($0)" })) }
    }
}

@Suite("Log metadata and limits", .timeLimit(.minutes(1)))
struct LogMetadataAndLimitsTests {
    @Test("a connection's warnings carry its peer as metadata, not inside the message")
    func peerInMetadata() throws {
        let events = Locked<[(message: String, metadata: [String: String])]>([])
        let logger = Logger(label: "test") { _ in MetadataCapturingLogHandler(events: events) }
        var options = ConnectionOptions()
        options.writeBufferLimit = 128 * 1024
        options.pauseReadingWhileNotWritable = false
        let peer = try SocketAddress(ip: "192.0.2.7", port: 4000)
        let embedded = try EmbeddedConnection(reactor: try Reactor(logger: logger), options: options, peer: peer, handler: ScriptedHandler())
        embedded.sendWindow = 0
        embedded.receive([UInt8](repeating: 0x61, count: 256 * 1024))
        let warning = try #require(events.value.first { $0.message.contains("write buffer limit") }, "\(events.value)")
        #expect(warning.metadata["peer"] == "192.0.2.7:4000")
        #expect(!warning.message.contains("192.0.2.7"), "\(warning.message)")
        #expect(embedded.connection.logMetadata == ["peer": "192.0.2.7:4000"])
    }

    @Test("raiseOpenFileLimit raises the soft limit to the hard one, never lowers it, and says what it is")
    func raiseOpenFileLimit() throws {
        var before = rlimit()
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &before) == 0)
        let raised = try Reactor.raiseOpenFileLimit()
        var after = rlimit()
        #expect(getrlimit(Int32(RLIMIT_NOFILE.rawValue), &after) == 0)
        #expect(UInt64(raised) == UInt64(after.rlim_cur))
        #expect(after.rlim_cur == after.rlim_max, "raised to the hard limit")
        #expect(after.rlim_cur >= before.rlim_cur)
        #expect(try Reactor.raiseOpenFileLimit(to: 64) == raised, "a lower target leaves the limit alone")
    }
}
