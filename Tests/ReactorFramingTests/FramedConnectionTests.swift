// The adapter, FramedConnection, between real loopback connections and frame handlers:
// streams over sockets, and exact read boundaries by calling its received(_:on:) on the
// reactor thread with crafted spans for a real accepted Connection.

import Foundation
import Glibc
import Logging
import ReactorCore
import ReactorFraming
import ReactorServices
import ReactorTestSupport
import Testing

/// A loopback connection accepted by a reactor, for driving fresh FramedConnections
/// directly with reads cut exactly where a test wants. Replies they send reach `client`.
struct DirectRig {
    let server: FramingServer
    let client: TestClient

    /// Runs `body` on the reactor thread with the accepted connection.
    func run<T: Sendable>(_ body: @escaping @Sendable (Reactor, Connection) throws -> T) async throws -> T {
        try await server.run { reactor, accepted in
            guard let connection = accepted[0].connection, connection.phase == .open else {
                throw TestFailure("the accepted connection is not open")
            }
            return try body(reactor, connection)
        }
    }
}

/// Runs `body` with a ``DirectRig`` on `host`; closes the client and stops the reactor when
/// `body` returns or throws.
func withDirectRig<T>(
    host: String = "127.0.0.1", sourceLocation: SourceLocation = #_sourceLocation, _ body: (DirectRig) async throws -> T
) async throws -> T {
    try await withFramingServer(host: host, make: {
        FramedConnection(framer: DelimiterFramer.line(), handler: Recorder())
    }, sourceLocation: sourceLocation) { server in
        let client = try TestClient(server.address)
        defer { client.close() }
        try await server.waitForConnections(1)
        return try await body(DirectRig(server: server, client: client))
    }
}

/// A FramedConnection attached to `connection` by hand (the connection's own handler
/// stays the rig's): the adapter under test.
func attach(_ framer: any Framer, _ handler: any FrameHandler, to connection: Connection) -> FramedConnection {
    let framed = FramedConnection(framer: framer, handler: handler)
    framed.opened(connection)
    return framed
}

/// Delivers `bytes` to the adapter as one read.
func feed(_ framed: FramedConnection, _ bytes: some Collection<UInt8>, on connection: Connection) {
    let bytes = Array(bytes)
    guard !bytes.isEmpty else { return }  // a read always has at least one byte
    withSpan(bytes) { framed.received($0, on: connection) }
}

/// The address of a span's first byte.
func address(of span: RawSpan) -> UInt {
    span.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
}

@Suite("FramedConnection", .timeLimit(.minutes(1)))
struct FramedConnectionTests {
    // MARK: Exact read boundaries

    @Test("every framer through the adapter: two reads cut at every byte, single bytes, random cuts", arguments: FramerCase.all)
    func adapterEveryBoundary(_ framerCase: FramerCase) async throws {
        try await withDirectRig { rig in
            let payloads = framerCase.samplePayloads
            let stream = try framerCase.encode(payloads)
            let failures = try await rig.run { _, connection -> [String] in
                var failures: [String] = []
                func check(cuts: [Int], _ label: String) {
                    let recorder = Recorder()
                    let framed = attach(framerCase.makeFramer(), recorder, to: connection)
                    var start = 0
                    var maxBuffered = 0
                    for end in cuts + [stream.count] where end > start {
                        feed(framed, stream[start..<end], on: connection)
                        maxBuffered = max(maxBuffered, framed.bufferedInputBytes)
                        start = end
                    }
                    let seen = recorder.record.value
                    let same = framerCase.preservesBoundaries
                        ? seen.frames == payloads
                        : seen.frames.joined().elementsEqual(payloads.joined()) && seen.frames.allSatisfy { $0.count <= framerCase.maxFrameLength }
                    if !same { failures.append("\(label): frames differ (\(seen.frames.count) of \(payloads.count))") }
                    if !seen.errors.isEmpty { failures.append("\(label): errors \(seen.errors)") }
                    if framed.bufferedInputBytes != 0 { failures.append("\(label): \(framed.bufferedInputBytes) bytes left") }
                    if maxBuffered >= framerCase.bufferBound() { failures.append("\(label): buffered \(maxBuffered)") }
                    framed.closed(connection, reason: .closed)
                }
                for cut in 0...stream.count { check(cuts: [cut], "cut at \(cut)") }
                check(cuts: Array(1..<stream.count), "byte by byte")
                var random = SeededRandom(seed: 0xADA9_7E12)
                for round in 0..<40 {
                    let cuts = (0..<Int.random(in: 1...12, using: &random)).map { _ in Int.random(in: 0...stream.count, using: &random) }.sorted()
                    check(cuts: cuts, "random cuts #\(round) \(cuts)")
                }
                return failures
            }
            #expect(failures == [])
        }
    }

    @Test("frames that arrive whole are borrowed views into the read, not copies")
    func framesAreBorrowedViews() async throws {
        try await withDirectRig { rig in
            let outcome = try await rig.run { _, connection -> [String] in
                var problems: [String] = []
                let read = Array("one\ntwo\nthree\nfour\nfive".utf8)
                let addresses = ReactorBound<[UInt]>([])
                let recorder = Recorder()
                recorder.onFrame = { frame, _, _ in addresses.value.append(address(of: frame)) }
                let framed = attach(DelimiterFramer.line(), recorder, to: connection)
                read.withUnsafeBytes { raw in
                    let base = UInt(bitPattern: raw.baseAddress)
                    framed.received(unsafe RawSpan(_unsafeBytes: raw), on: connection)
                    let expected = [0, 4, 8, 14].map { base + UInt($0) }
                    if addresses.value != expected { problems.append("frames at \(addresses.value.map { $0 &- base }), expected offsets 0, 4, 8, 14") }
                }
                // The unfinished "five" was copied: it is still there after the read's memory is gone.
                if framed.bufferedInputBytes != 4 { problems.append("buffered \(framed.bufferedInputBytes), expected 4") }
                feed(framed, Array("\n".utf8), on: connection)
                if recorder.record.value.frames.last != Array("five".utf8) { problems.append("lost the partial frame") }
                framed.closed(connection, reason: .closed)
                return problems
            }
            #expect(outcome == [])
        }
    }

    // MARK: Pausing

    @Test("pause mid-buffer: the rest stays buffered and arrives on resume, in order, nothing lost")
    func pauseMidBuffer() async throws {
        try await withDirectRig { rig in
            let lines = (0..<12).map { "frame \($0)" }
            let encoded = lines.map { Array("\($0)\n".utf8) }
            let framedBox = ReactorBound<FramedConnection?>(nil)
            let record = Locked(FrameRecord())

            // One read with frames 0...9; the handler pauses at frames 2 and 6.
            let first = try await rig.run { _, connection in
                let recorder = Recorder(record)
                recorder.onFrame = { _, framed, index in
                    if index == 2 || index == 6 { framed.pauseDelivery() }
                }
                let framed = attach(DelimiterFramer.line(), recorder, to: connection)
                framedBox.value = framed
                feed(framed, encoded[0..<10].joined(), on: connection)
                return (record.value.frames.count, framed.isDeliveryPaused, framed.bufferedInputBytes, connection.isReadingPaused)
            }
            #expect(first.0 == 3)
            #expect(first.1)
            #expect(first.2 == encoded[3..<10].joined().count)
            #expect(first.3, "pausing delivery pauses reading from the socket")

            // More bytes while paused (frames 10, 11): buffered, not delivered.
            let second = try await rig.run { _, connection in
                let framed = framedBox.value!
                feed(framed, encoded[10...].joined(), on: connection)
                return (record.value.frames.count, framed.bufferedInputBytes)
            }
            #expect(second.0 == 3)
            #expect(second.1 == encoded[3...].joined().count)

            // Resume: nothing is delivered inside the call; the next frames arrive after it,
            // up to the next pause at frame 6.
            let duringResume = try await rig.run { _, _ in
                framedBox.value!.resumeDelivery()
                return record.value.frames.count
            }
            #expect(duringResume == 3)
            try await eventually("frames up to the second pause") { record.value.frames.count == 7 }
            let third = try await rig.run { _, connection in
                let framed = framedBox.value!
                let state = (framed.isDeliveryPaused, connection.isReadingPaused)
                framed.resumeDelivery()
                return state
            }
            #expect(third.0 && third.1)
            try await eventually("every frame") { record.value.frames.count == 12 }
            let last = try await rig.run { _, connection in
                let framed = framedBox.value!
                defer { framed.closed(connection, reason: .closed) }
                return (framed.bufferedInputBytes, framed.isDeliveryPaused, connection.isReadingPaused)
            }
            #expect(record.value.frames == lines.map { Array($0.utf8) })
            #expect(last.0 == 0)
            #expect(!last.1 && !last.2, "resuming delivery resumes reading")
        }
    }

    @Test("pause then resume in the same callback does not interrupt delivery")
    func pauseAndResumeInOneCallback() async throws {
        try await withDirectRig { rig in
            let frames = try await rig.run { _, connection in
                let recorder = Recorder()
                recorder.onFrame = { _, framed, index in
                    if index == 1 {
                        framed.pauseDelivery()
                        framed.resumeDelivery()
                    }
                }
                let framed = attach(DelimiterFramer.line(), recorder, to: connection)
                feed(framed, Array("a\nb\nc\nd\n".utf8), on: connection)
                defer { framed.closed(connection, reason: .closed) }
                return (recorder.record.value.frames.count, framed.isDeliveryPaused, connection.isReadingPaused)
            }
            #expect(frames.0 == 4)
            #expect(!frames.1 && !frames.2)
        }
    }

    @Test("paused with a partial frame at the end: resume delivers the whole ones and keeps the partial")
    func pauseWithPartialTail() async throws {
        try await withDirectRig { rig in
            let framedBox = ReactorBound<FramedConnection?>(nil)
            let record = Locked(FrameRecord())
            let buffered = try await rig.run { _, connection in
                let recorder = Recorder(record)
                recorder.onFrame = { _, framed, index in if index == 0 { framed.pauseDelivery() } }
                let framed = attach(LengthPrefixFramer(width: .two), recorder, to: connection)
                framedBox.value = framed
                // "a", "bc", and 2 of the 3 bytes of "def".
                feed(framed, [0, 1, 0x61, 0, 2, 0x62, 0x63, 0, 3, 0x64, 0x65], on: connection)
                framed.resumeDelivery()
                return framed.bufferedInputBytes
            }
            #expect(buffered == 8)
            try await eventually("the second frame") { record.value.frames.count == 2 }
            let tail = try await rig.run { _, connection in
                let framed = framedBox.value!
                let left = framed.bufferedInputBytes
                feed(framed, [0x66], on: connection)
                defer { framed.closed(connection, reason: .closed) }
                return (left, framed.bufferedInputBytes)
            }
            #expect(tail.0 == 4)
            #expect(tail.1 == 0)
            #expect(record.value.frames == [[0x61], [0x62, 0x63], [0x64, 0x65, 0x66]])
        }
    }

    @Test("pausing after every frame over a real socket loses nothing")
    func pauseEveryFrameOverSocket() async throws {
        let record = Locked(FrameRecord())
        try await withFramingServer(make: {
            let recorder = Recorder(record)
            recorder.onFrame = { _, framed, index in
                framed.pauseDelivery()
                // Resume from a timer or from deferred work, never from inside delivery.
                let reactor = framed.connection!.reactor
                if index % 4 == 0 {
                    reactor.schedule(after: .microseconds(100)) { _ in framed.resumeDelivery() }
                } else {
                    reactor.runSoon { framed.resumeDelivery() }
                }
            }
            return FramedConnection(framer: NetstringFramer(), handler: recorder)
        }) { server in
            let client = try TestClient(server.address)
            var random = SeededRandom(seed: 7)
            let payloads = (0..<600).map { index in Array("payload \(index) ".utf8) + [UInt8](repeating: 0x2C, count: Int.random(in: 0...300, using: &random)) }
            let stream = try FramerCase.netstring.encode(payloads, maxFrameLength: 1000)
            // Several large writes: each read holds many frames.
            for start in stride(from: 0, to: stream.count, by: 40_000) {
                try client.send(stream[start..<min(stream.count, start + 40_000)])
            }
            try await eventually("600 frames", timeout: .seconds(20)) { record.value.frames.count == 600 }
            #expect(record.value.frames == payloads)
            #expect(record.value.errors.isEmpty)
        }
    }

    // MARK: Switching framers

    @Test("switching framer mid-buffer: line header, then fixed length, length prefix or raw body, at every cut")
    func switchFramerMidBuffer() async throws {
        try await withDirectRig { rig in
            let rawRest = Array("the rest\nis raw: 5:abc, \u{0}\u{1}".utf8)
            let stream = Array("hello\nBODY 5\n12345BODY 1\n\nINT32\n".utf8)
                + [0, 0, 0, 3] + Array("a\nc".utf8) + Array("bye\nRAW\n".utf8) + rawRest
            let expectedFramed: [[UInt8]] = ["hello", "BODY 5", "12345", "BODY 1", "\n", "INT32", "a\nc", "bye", "RAW"].map { Array($0.utf8) }

            let failures = try await rig.run { _, connection -> [String] in
                var failures: [String] = []
                func check(cuts: [Int], _ label: String) {
                    let recorder = Recorder()
                    var mode = "line"
                    var rawFrames: [[UInt8]] = []
                    recorder.onFrame = { frame, framed, _ in
                        let text = frame.decodeUTF8()
                        switch mode {
                        case "line" where text.hasPrefix("BODY "):
                            framed.framer = FixedLengthFramer(length: Int(text.dropFirst(5))!)
                            mode = "body"
                        case "line" where text == "INT32":
                            framed.framer = LengthPrefixFramer(width: .four)
                            mode = "body"
                        case "line" where text == "RAW":
                            framed.framer = RawFramer(maxFrameLength: 4)
                            mode = "raw"
                        case "body":
                            framed.framer = DelimiterFramer.line()
                            mode = "line"
                        case "raw":
                            rawFrames.append(frame.copyBytes())
                        default:
                            break
                        }
                    }
                    let framed = attach(DelimiterFramer.line(), recorder, to: connection)
                    var start = 0
                    for end in cuts + [stream.count] where end > start {
                        feed(framed, stream[start..<end], on: connection)
                        start = end
                    }
                    let frames = recorder.record.value.frames
                    let framedPart = Array(frames.prefix(expectedFramed.count))
                    if framedPart != expectedFramed { failures.append("\(label): \(framedPart.map { String(decoding: $0, as: UTF8.self) })") }
                    if Array(rawFrames.joined()) != rawRest { failures.append("\(label): raw part \(String(decoding: rawFrames.joined(), as: UTF8.self).debugDescription)") }
                    if rawFrames.contains(where: { $0.count > 4 }) { failures.append("\(label): a raw frame over its limit") }
                    if framed.bufferedInputBytes != 0 { failures.append("\(label): \(framed.bufferedInputBytes) left") }
                    framed.closed(connection, reason: .closed)
                }
                for cut in 0...stream.count { check(cuts: [cut], "cut at \(cut)") }
                check(cuts: Array(1..<stream.count), "byte by byte")
                return failures
            }
            #expect(failures == [])
        }
    }

    @Test("switching framer while paused applies to the buffered bytes")
    func switchWhilePaused() async throws {
        try await withDirectRig { rig in
            let framedBox = ReactorBound<FramedConnection?>(nil)
            let record = Locked(FrameRecord())
            try await rig.run { _, connection in
                let recorder = Recorder(record)
                recorder.onFrame = { _, framed, index in if index == 0 { framed.pauseDelivery() } }
                let framed = attach(DelimiterFramer.line(), recorder, to: connection)
                framedBox.value = framed
                feed(framed, Array("header\nabcdefgh".utf8), on: connection)
                // Outside delivery, while paused: the next frames are 4-byte records.
                framed.framer = FixedLengthFramer(length: 4)
                framed.resumeDelivery()
            }
            try await eventually("two records") { record.value.frames.count == 3 }
            try await rig.run { _, connection in framedBox.value!.closed(connection, reason: .closed) }
            #expect(record.value.frames == ["header", "abcd", "efgh"].map { Array($0.utf8) })
        }
    }

    // MARK: Replies

    @Test("replies sent during delivery leave in one write after the last frame of the read")
    func repliesAreGathered() async throws {
        try await withDirectRig { rig in
            let replies = (0..<5).map { "reply \($0)" }
            let (queuedDuring, queuedAfter, results) = try await rig.run { _, connection in
                let queued = ReactorBound<[Int]>([])
                let sent = ReactorBound<[Bool]>([])
                let recorder = Recorder()
                recorder.onFrame = { _, framed, index in
                    sent.value.append(framed.send(frame: replies[index]).isSent)
                    queued.value.append(framed.connection!.queuedOutputBytes)
                }
                let framed = attach(NetstringFramer(), recorder, to: connection)
                feed(framed, Array("1:a,1:b,1:c,1:d,1:e,".utf8), on: connection)
                defer { framed.closed(connection, reason: .closed) }
                return (queued.value, connection.queuedOutputBytes, sent.value)
            }
            let encoded = replies.map { "\($0.utf8.count):\($0)," }
            var running = 0
            let cumulative = encoded.map { running += $0.utf8.count; return running }
            #expect(queuedDuring == cumulative, "each reply waits in the output queue until the read is done")
            #expect(queuedAfter == 0, "and all of them went out together")
            #expect(results == [true, true, true, true, true])
            let total = encoded.joined().utf8.count
            #expect(try rig.client.receive(count: total) == Array(encoded.joined().utf8))
        }
    }

    @Test("send(frame:) outside delivery writes at once; unframeable payloads are refused and send nothing")
    func sendOutsideDelivery() async throws {
        try await withDirectRig { rig in
            let outcome = try await rig.run { _, connection -> [String] in
                var notes: [String] = []
                let framed = attach(DelimiterFramer.crlf(maxFrameLength: 8), Recorder(), to: connection)
                defer { framed.closed(connection, reason: .closed) }
                if framed.send(frame: "first") != .sent { notes.append("first not sent") }
                if connection.queuedOutputBytes != 0 { notes.append("queued \(connection.queuedOutputBytes)") }
                switch framed.send(frame: "a\r\nb") {
                case .refused(.unframeablePayload): break
                case let other: notes.append("a payload with the delimiter: \(other)")
                }
                let oversized = framed.send(frame: [UInt8](repeating: 0x61, count: 9))
                if oversized != .refused(.frameTooLong(length: 9, limit: 8)) { notes.append("an oversized payload: \(oversized)") }
                let span = Array("last".utf8)
                if withSpan(span, { framed.send(frame: $0) }) != .sent { notes.append("last not sent") }
                return notes
            }
            #expect(outcome == [])
            #expect(try rig.client.receive(count: 13) == Array("first\r\nlast\r\n".utf8))
            let extra = rig.client.receiveSome(timeout: .milliseconds(50))
            #expect(extra.bytes.isEmpty, "nothing of the refused payloads went out")
        }
    }

    // MARK: Bad input

    @Test("bad input raises a typed error to framingFailed and stops delivery from that connection")
    func typedErrors() async throws {
        try await withDirectRig { rig in
            let results = try await rig.run { _, connection -> [FrameRecord] in
                var records: [FrameRecord] = []
                let inputs: [(any Framer, [[UInt8]])] = [
                    (NetstringFramer(), [Array("3:abc,01:x,3:def,".utf8), Array("3:ghi,".utf8)]),
                    (NetstringFramer(), [Array("3:ab".utf8), Array("c;3:def,".utf8)]),
                    (DelimiterFramer.line(maxFrameLength: 8), [Array("ok\n0123456789\n".utf8), Array("later\n".utf8)]),
                    (LengthPrefixFramer(width: .four, maxFrameLength: 100), [[0, 0, 0, 1, 0x41, 0, 0, 0x10, 0], Array("x".utf8)]),
                ]
                for (framer, reads) in inputs {
                    let recorder = Recorder()
                    let framed = attach(framer, recorder, to: connection)
                    for read in reads { feed(framed, read, on: connection) }
                    if framed.bufferedInputBytes != 0 { recorder.record.update { $0.notes.append("buffered \(framed.bufferedInputBytes)") } }
                    framed.closed(connection, reason: .closed)
                    records.append(recorder.record.value)
                }
                return records
            }
            #expect(results[0].frames == [Array("abc".utf8)])
            #expect(results[1].frames == [])
            #expect(results[2].frames == [Array("ok".utf8)])
            #expect(results[3].frames == [[0x41]])
            guard results.count == 4, results.allSatisfy({ $0.errors.count == 1 }) else {
                Issue.record("expected one error per connection: \(results.map(\.errors))")
                return
            }
            if case .malformedHeader = results[0].errors[0] {} else { Issue.record("\(results[0].errors)") }
            if case .malformedTrailer = results[1].errors[0] {} else { Issue.record("\(results[1].errors)") }
            #expect(results[2].errors[0] == .frameTooLong(length: 10, limit: 8))
            #expect(results[3].errors[0] == .frameTooLong(length: 0x1000, limit: 100))
            #expect(results.allSatisfy { $0.notes.isEmpty }, "no bytes are kept after a failure")
        }
    }

    /// A framer that never finds a frame: the adapter's own bound must stop it.
    struct NeverFramer: Framer {
        var maxFrameLength: Int { 10 }
        func nextFrame(in buffer: RawSpan) throws(FramingError) -> FrameSearch { .needMore(atLeast: 1) }
        func encodeHeader(for payload: RawSpan, into header: UnsafeMutableRawBufferPointer) throws(FramingError) -> Int { 0 }
    }

    @Test("a custom framer that never finds a frame cannot make the adapter buffer without bound")
    func adapterBoundsCustomFramers() async throws {
        try await withDirectRig { rig in
            let (errors, fedWhenFailed) = try await rig.run { _, connection in
                let recorder = Recorder()
                let framed = attach(NeverFramer(), recorder, to: connection)
                var fed = 0
                var fedWhenFailed: Int?
                for _ in 0..<1000 {
                    feed(framed, [0x61], on: connection)
                    fed += 1
                    if fedWhenFailed == nil, !recorder.record.value.errors.isEmpty { fedWhenFailed = fed }
                }
                framed.closed(connection, reason: .closed)
                return (recorder.record.value.errors, fedWhenFailed)
            }
            #expect(errors == [.frameTooLong(length: nil, limit: 10)])
            #expect(fedWhenFailed == 10 + 2 * FramerLimits.maxHeaderLength + 1)
        }
    }

    @Test("by default a bad peer is closed, one line is logged, and everyone else is still served")
    func defaultFailureClosesOnlyThatConnection() async throws {
        let records = Locked<[Locked<FrameRecord>]>([])
        let lines = Locked<[(level: Logger.Level, message: String)]>([])
        let logger = Logger(label: "framing-test") { _ in CapturingLogHandler(lines: lines) }
        try await withFramingServer(logger: logger, make: {
            let record = Locked(FrameRecord())
            records.update { $0.append(record) }
            return FramedConnection(framer: NetstringFramer(maxFrameLength: 100), handler: EchoRecorder(record))
        }) { server in
            let address = server.address

            let good = try TestClient(address)
            let bad = try TestClient(address)
            let other = try TestClient(address)
            let oversized = try TestClient(address)
            try good.send(Array("3:abc,".utf8))
            #expect(try good.receive(count: 6) == Array("3:abc,".utf8))

            try bad.send(Array("2:hi,01:x,".utf8))
            let badEnd = bad.receiveUntilEnd(timeout: .seconds(5))
            #expect(badEnd.end == .reset || badEnd.end == .endOfFile, "the bad peer is disconnected: \(badEnd.end)")
            #expect(Array("2:hi,".utf8).starts(with: badEnd.bytes), "nothing after the bad frame is echoed")

            try oversized.send(Array("101:".utf8))
            let oversizedEnd = oversized.receiveUntilEnd(timeout: .seconds(5))
            #expect(oversizedEnd.end == .reset || oversizedEnd.end == .endOfFile)
            #expect(oversizedEnd.bytes.isEmpty)

            // The others are still served, and new connections too.
            try good.send(Array("5:again,".utf8))
            #expect(try good.receive(count: 8) == Array("5:again,".utf8))
            try other.send(Array("0:,4:more,".utf8))
            #expect(try other.receive(count: 10) == Array("0:,4:more,".utf8))
            let late = try TestClient(address)
            try late.send(Array("4:late,".utf8))
            #expect(try late.receive(count: 7) == Array("4:late,".utf8))

            try await eventually("two closed connections") { records.value.filter { !$0.value.closed.isEmpty }.count == 2 }
            let warnings = lines.value.filter { $0.level >= .warning }.map(\.message)
            #expect(warnings.count == 2, "one line per bad peer: \(warnings)")
            let badLine = warnings.first { $0.contains(":\(bad.localPort)") }
            let oversizedLine = warnings.first { $0.contains(":\(oversized.localPort)") }
            #expect(badLine?.contains("leading zero") == true, "\(warnings)")
            #expect(oversizedLine?.contains("frame too long") == true, "\(warnings)")
            #expect(records.value.compactMap { $0.value.closed.first }.allSatisfy { $0 == .aborted })
        }
    }

    // MARK: Streams over sockets

    @Test("every framer echoes a stream sent over a socket in random pieces", arguments: FramerCase.all)
    func socketStream(_ framerCase: FramerCase) async throws {
        let record = Locked(FrameRecord())
        try await withFramingServer(make: {
            FramedConnection(framer: framerCase.makeFramer(), handler: EchoRecorder(record))
        }) { server in
            let client = try TestClient(server.address)
            var random = SeededRandom(seed: 0x50C7)
            let payloads = framerCase.samplePayloads + (0..<200).map { _ in framerCase.randomPayload(using: &random) }
            let stream = try framerCase.encode(payloads)
            var offset = 0
            while offset < stream.count {
                let end = min(stream.count, offset + Int.random(in: 1...200, using: &random))
                try client.send(stream[offset..<end])
                offset = end
                if Bool.random(using: &random) { usleep(50) }
            }
            let echoed = try client.receive(count: stream.count)
            #expect(echoed == stream, "the echo is byte-exact")
            try await eventually("every frame recorded") { record.value.frames.joined().count == payloads.joined().count }
            if framerCase.preservesBoundaries {
                #expect(record.value.frames == payloads)
            }
            #expect(record.value.notes == [])
        }
    }

    @Test(
        "megabytes of frames across 64 KiB read boundaries, with backpressure from a slow reader",
        arguments: [Framing.lengthPrefix(.four), .netstring, .line, .crlf, .lengthPrefix(.two)])
    func bulkWithBackpressure(_ framing: Framing) async throws {
        var options = ConnectionOptions()
        options.writeBufferHighWatermark = 8 * 1024
        options.writeBufferLowWatermark = 2 * 1024
        let pauses = Locked(0)
        try await withFramingServer(connectionOptions: options, make: {
            FramedConnection(framer: framing.makeFramer(), handler: ObservedEcho(pauses))
        }) { server in
            let client = try TestClient(server.address)
            var random = SeededRandom(seed: 0xB01C)
            let framer = framing.makeFramer()
            var stream: [UInt8] = []
            var frames = 0
            let text = (0..<20_000).map { _ in UInt8.random(in: 0x20...0x7E, using: &random) }
            while stream.count < 3_000_000 {
                let length = Int.random(in: 0...Swift.min(framer.maxFrameLength, 9000), using: &random)
                let start = Int.random(in: 0..<(text.count - length), using: &random)
                stream += try framer.encodedFrame(Array(text[start..<(start + length)]))
                frames += 1
            }
            // Read slowly at first so the server's replies back up and it pauses delivery.
            let echoed = try client.exchange(stream, expecting: stream.count, pause: { $0 < 256 * 1024 ? .milliseconds(2) : nil })
            #expect(echoed.count == stream.count)
            #expect(echoed == stream, "\(frames) frames echoed byte-exact")
            #expect(pauses.value > 0, "the echo paused delivery while the client was not reading")
        }
    }

    /// The bundled FramedEchoHandler, counting the times it paused delivery.
    final class ObservedEcho: FrameHandler {
        let inner = FramedEchoHandler()
        let pauses: Locked<Int>
        init(_ pauses: Locked<Int>) { self.pauses = pauses }

        func received(frame: RawSpan, on connection: FramedConnection) {
            inner.received(frame: frame, on: connection)
        }

        func writabilityChanged(_ connection: FramedConnection) {
            inner.writabilityChanged(connection)
            if connection.isDeliveryPaused { pauses.update { $0 += 1 } }
        }
    }

    @Test("IPv6 loopback", .enabled(if: ipv6LoopbackAvailable, "::1 is not configured"))
    func ipv6() async throws {
        let record = Locked(FrameRecord())
        try await withFramingServer(host: "::1", make: {
            FramedConnection(framer: LengthPrefixFramer(width: .two), handler: EchoRecorder(record))
        }) { server in
            let client = try TestClient(server.address)
            try client.send([0, 2, 0x68, 0x69, 0, 0])
            #expect(try client.receive(count: 6) == [0, 2, 0x68, 0x69, 0, 0])
            #expect(record.value.frames == [[0x68, 0x69], []])
        }
    }
}

/// Whether a socket can bind ::1 here.
let ipv6LoopbackAvailable: Bool = {
    let fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in6()
    address.sin6_family = sa_family_t(AF_INET6)
    address.sin6_addr = in6addr_loopback
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
    } == 0
}()
