// Limits and malformed input: a frame of exactly the maximum is accepted, one byte more
// is refused (as early as the framing allows), a delimiter split across reads after a
// maximum frame still counts, netstrings are strict, and encoders refuse what they
// cannot frame.

import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

/// True when `error` is frameTooLong.
private func isTooLong(_ error: FramingError?) -> Bool {
    if case .frameTooLong = error { return true }
    return false
}

@Suite("Framer limits", .timeLimit(.minutes(1)))
struct FramerLimitTests {
    static let limitedCases = FramerCase.delimiters + FramerCase.lengthPrefixes + [FramerCase.netstring]

    @Test("a frame of exactly the maximum is accepted, whole and byte by byte", arguments: FramerCase.all)
    func exactlyMax(_ framerCase: FramerCase) throws {
        let limit = framerCase.payloadLengths.upperBound
        let payload = framerCase.frameable([UInt8](repeating: 0x61, count: limit))
        #expect(payload.count == limit)
        let stream = try framerCase.encode([payload, payload])
        for pieces in [[], [1], [limit], [limit + 1], [3, 5]] {
            let driver = decode(stream, with: framerCase, pieces: pieces)
            expectDecoded(driver, [payload, payload], framerCase, "pieces \(pieces)")
        }
    }

    @Test("max+1 is refused with frameTooLong, whole and byte by byte", arguments: limitedCases)
    func maxPlusOne(_ framerCase: FramerCase) throws {
        let limit = framerCase.maxFrameLength
        let payload = [UInt8](repeating: 0x61, count: limit + 1)
        // Encode with a larger limit: the sender's encoder would refuse it.
        let stream = try framerCase.encode([payload], maxFrameLength: limit + 1)
        for pieces in [[], [1], [limit], [7]] {
            let driver = decode(stream, with: framerCase, pieces: pieces)
            #expect(isTooLong(driver.error), "pieces \(pieces): \(String(describing: driver.error))")
            #expect(driver.frames.isEmpty)
            #expect(driver.violations == [])
        }
        // Whole, the framer knows the length and says so.
        if case .frameTooLong(let length, let reportedLimit) = decode(stream, with: framerCase).error {
            #expect(length == limit + 1)
            #expect(reportedLimit == limit)
        }
    }

    @Test("a delimiter framer refuses as soon as max + delimiter bytes arrived without one", arguments: FramerCase.delimiters)
    func delimiterRefusesWithoutWaiting(_ framerCase: FramerCase) {
        let limit = framerCase.maxFrameLength
        let delimiterLength = framerCase.trailer.count
        var driver = FramerDriver(framerCase)
        // max + delimiter - 1 bytes may still end with a partial delimiter: keep waiting.
        driver.feed([UInt8](repeating: 0x61, count: limit + delimiterLength - 1))
        #expect(driver.error == nil)
        #expect(driver.frames.isEmpty)
        // One more byte that is not a delimiter: the frame cannot fit any more.
        driver.feed([0x61])
        #expect(driver.error == .frameTooLong(length: nil, limit: limit))
        #expect(driver.violations == [])
    }

    @Test("a maximum frame whose delimiter is split across reads is accepted", arguments: FramerCase.delimiters)
    func maxWithSplitDelimiter(_ framerCase: FramerCase) throws {
        let limit = framerCase.maxFrameLength
        let payload = [UInt8](repeating: 0x61, count: limit)
        let stream = try framerCase.encode([payload, [0x62]])
        let delimiterLength = framerCase.trailer.count
        // Cut at every position inside the first delimiter, in two reads and in single bytes.
        for cut in limit...(limit + delimiterLength) {
            var driver = FramerDriver(framerCase)
            driver.feed(stream[..<cut])
            driver.feed(stream[cut...])
            expectDecoded(driver, [payload, [0x62]], framerCase, "cut at \(cut)")
            #expect(driver.maxBuffered <= limit + delimiterLength - 1)
        }
        var driver = FramerDriver(framerCase)
        driver.feed(stream[..<limit])
        for byte in stream[limit...] { driver.feed([byte]) }
        expectDecoded(driver, [payload, [0x62]], framerCase, "delimiter byte by byte")
    }

    @Test("a maximum netstring whose comma arrives in its own read is accepted")
    func netstringMaxWithSplitComma() throws {
        let framerCase = FramerCase.netstring
        let payload = [UInt8](repeating: 0x2C, count: framerCase.maxFrameLength)
        let stream = try framerCase.encode([payload])
        var driver = FramerDriver(framerCase)
        driver.feed(stream.dropLast())
        #expect(driver.frames.isEmpty)
        driver.feed(stream.suffix(1))
        expectDecoded(driver, [payload], framerCase)
    }

    @Test("a length prefix over the max is refused when the header arrives, before any payload", arguments: FramerCase.lengthPrefixes)
    func lengthPrefixRefusesAtHeader(_ framerCase: FramerCase) throws {
        guard case .lengthPrefix(let width, let order) = framerCase.kind else { return }
        let limit = framerCase.maxFrameLength
        for length in [UInt64(limit + 1), UInt64(limit) * 1000, width == .eight ? UInt64.max : (1 << (8 * UInt64(width.rawValue))) - 1] {
            guard width == .eight || length < (1 << (8 * UInt64(width.rawValue))) else { continue }
            var header: [UInt8] = []
            for index in 0..<width.rawValue {
                let shift = order == .bigEndian ? 8 * (width.rawValue - 1 - index) : 8 * index
                header.append(UInt8(truncatingIfNeeded: length >> UInt64(shift)))
            }
            var driver = FramerDriver(framerCase)
            // All but the last header byte: the framer waits for exactly the rest of the header.
            driver.feed(header.dropLast())
            #expect(driver.error == nil)
            let last = header.count - 1
            driver.feed(header[last...])
            #expect(isTooLong(driver.error), "length \(length)")
            if case .frameTooLong(let reported, let reportedLimit) = driver.error {
                #expect(reportedLimit == limit)
                #expect(reported == (length <= UInt64(Int.max) ? Int(length) : nil))
            }
        }
        // Byte by byte, the framer asks for exactly the rest of the header.
        let framer = framerCase.makeFramer()
        for have in 0..<width.rawValue {
            let bytes = [UInt8](repeating: 0, count: have)
            let found = try bytes.withUnsafeBytes { raw throws(FramingError) in
                var framer = framer
                return try framer.nextFrame(in: unsafe RawSpan(_unsafeBytes: raw))
            }
            #expect(found == .needMore(atLeast: width.rawValue - have))
        }
    }

    @Test("a netstring length over the max is refused before its colon")
    func netstringRefusesAtDigits() {
        let framerCase = FramerCase.netstring  // limit 120
        var driver = FramerDriver(framerCase)
        driver.feed(Array("12".utf8))
        #expect(driver.error == nil)
        driver.feed(Array("1".utf8))
        #expect(driver.error == .frameTooLong(length: 121, limit: 120))
        #expect(decode(Array("120:".utf8), with: framerCase).error == nil)
    }

    @Test("a length prefix limit is capped by what the field can hold")
    func lengthPrefixLimitCap() throws {
        #expect(LengthPrefixFramer(width: .one).maxFrameLength == 255)
        #expect(LengthPrefixFramer(width: .two, maxFrameLength: 1 << 20).maxFrameLength == 65535)
        #expect(LengthPrefixFramer(width: .eight, maxFrameLength: 1 << 40).maxFrameLength == 1 << 40)
        // 255 bytes in an int8 frame, the most the field can say, round trip.
        let payload = [UInt8](repeating: 9, count: 255)
        var driver = FramerDriver(LengthPrefixFramer(width: .one), bufferBound: 257)
        driver.feed(try (LengthPrefixFramer(width: .one)).encodedFrame(payload))
        #expect(driver.frames == [payload])
    }

    @Test("an empty frame is a frame where the framing allows it", arguments: FramerCase.all)
    func emptyFrames(_ framerCase: FramerCase) throws {
        guard framerCase.allowsEmptyFrames else {
            // fixed and raw never produce empty frames, and raw waits for bytes.
            let driver = decode([], with: framerCase)
            #expect(driver.frames.isEmpty)
            return
        }
        let stream = try framerCase.encode([[], [], [0x41], []])
        for pieces in [[], [1]] {
            expectDecoded(decode(stream, with: framerCase, pieces: pieces), [[], [], [0x41], []], framerCase)
        }
    }
}

@Suite("Netstring strictness", .timeLimit(.minutes(1)))
struct NetstringStrictnessTests {
    enum Expected: Sendable { case header, trailer, tooLong }

    static let malformed: [(String, Expected)] = [
        ("01:a,", .header),  // leading zero
        ("00:,", .header),
        ("007:abcdefg,", .header),
        ("-1:a,", .header),  // sign
        ("+1:a,", .header),
        (" 1:a,", .header),  // space
        ("1 :a,", .header),
        ("a:", .header),  // non-digit
        ("1a:x,", .header),
        ("0x1:a,", .header),
        (":", .header),  // empty length
        (":abc,", .header),
        ("1:ab", .trailer),  // missing comma: the byte after the payload is not ','
        ("3:abc;", .trailer),
        ("3:abc\n", .trailer),
        ("0:;", .trailer),
        ("5:hello5:world,", .trailer),
        ("1234:", .tooLong),  // four digits: more than the limit of 120 needs
        ("99999999999999999999999999:", .tooLong),  // would overflow an Int
        ("121:", .tooLong),  // three digits, over the limit
    ]

    @Test("malformed netstrings raise typed errors, however they are split", arguments: malformed)
    func malformedInput(_ text: String, _ expected: Expected) {
        let bytes = Array(text.utf8)
        for pieces in [[], [1], [2]] {
            let driver = decode(bytes, with: .netstring, pieces: pieces)
            switch (expected, driver.error) {
            case (.header, .malformedHeader?), (.trailer, .malformedTrailer?), (.tooLong, .frameTooLong?): break
            default: Issue.record("\(text.debugDescription) pieces \(pieces): expected \(expected), got \(String(describing: driver.error))")
            }
            #expect(driver.frames.isEmpty)
            #expect(driver.violations == [])
        }
    }

    @Test("errors in the header are found without waiting for the payload")
    func earlyHeaderErrors() {
        for text in ["-", "+", "0", "01", "a", " "] {
            let driver = decode(Array(text.utf8), with: .netstring)
            if text == "0" {
                #expect(driver.error == nil, "a lone 0 may still become 0:,")
            } else {
                #expect(driver.error != nil, "\(text.debugDescription)")
            }
        }
    }

    @Test("the digit count is bounded by the limit")
    func digitBound() {
        // With a limit of 99999, five digits are fine and six are refused, even 000001-style.
        let framer = NetstringFramer(maxFrameLength: 99999)
        var driver = FramerDriver(framer, bufferBound: 99999 + 7)
        driver.feed(Array("99999".utf8))
        #expect(driver.error == nil)
        var six = FramerDriver(framer, bufferBound: 99999 + 7)
        six.feed(Array("100000".utf8))
        #expect(isTooLong(six.error))
        // Limit 0: only "0:," is valid.
        var zero = FramerDriver(NetstringFramer(maxFrameLength: 0), bufferBound: 3)
        zero.feed(Array("0:,0:,".utf8))
        #expect(zero.frames == [[], []])
        var one = FramerDriver(NetstringFramer(maxFrameLength: 0), bufferBound: 3)
        one.feed(Array("1".utf8))
        #expect(isTooLong(one.error))
    }

    @Test("valid netstrings with digits, colons and commas in the payload")
    func validTricky() {
        let text = "0:,1:,,3:1:,,10:0123456789,2::,,"
        let driver = decode(Array(text.utf8), with: .netstring, pieces: [1])
        #expect(driver.frames.map { String(decoding: $0, as: UTF8.self) } == ["", ",", "1:,", "0123456789", ":,"])
        #expect(driver.error == nil)
    }
}

@Suite("Outgoing frames", .timeLimit(.minutes(1)))
struct OutgoingFrameTests {
    @Test("a payload containing the delimiter cannot be framed", arguments: FramerCase.delimiters)
    func payloadWithDelimiter(_ framerCase: FramerCase) {
        let framer = framerCase.makeFramer()
        let delimiter = framerCase.trailer
        for payload in [delimiter, [0x41] + delimiter, delimiter + [0x41], [0x41] + delimiter + [0x42]] {
            let error = #expect(throws: FramingError.self, "\(payload)") { try framer.encodedFrame(payload) }
            if let error, case .unframeablePayload = error {} else if let error {
                Issue.record("\(payload): expected unframeablePayload, got \(error)")
            }
        }
    }

    @Test("a payload that would form a delimiter with the trailer cannot be framed")
    func payloadOverlappingTrailer() throws {
        // "--END--" begins with its own last two bytes: "x--END" + "--END--" holds
        // "--END--" starting inside the payload, so the peer would read "x" instead.
        let framer = DelimiterFramer(delimiter: Array("--END--".utf8))
        for text in ["x--END", "--END", "x--E--END"] {
            #expect(throws: FramingError.self, "\(text)") { try framer.encodedFrame(Array(text.utf8)) }
        }
        // [FF 00 FF]: "A FF 00" + "FF 00 FF" holds the delimiter at offset 1.
        let binary = DelimiterFramer(delimiter: [0xFF, 0x00, 0xFF])
        #expect(throws: FramingError.self) { try binary.encodedFrame([0x41, 0xFF, 0x00]) }
        // Payloads that only look close are fine and round trip.
        for payload in [Array("x--EN".utf8), Array("x-".utf8), Array("--".utf8), Array("END--".utf8)] {
            let encoded = try framer.encodedFrame(payload)
            var driver = FramerDriver(framer, bufferBound: 100_000)
            driver.feed(encoded)
            #expect(driver.frames == [payload])
        }
        for payload: [UInt8] in [[0xFF], [0x00, 0xFF], [0xFF, 0xFF], [0x41, 0xFF, 0x41]] {
            let encoded = try binary.encodedFrame(payload)
            var driver = FramerDriver(binary, bufferBound: 100_000)
            driver.feed(encoded)
            #expect(driver.frames == [payload], "\(payload)")
        }
        // \r\n does not overlap itself: a payload ending in \r is fine.
        var driver = FramerDriver(DelimiterFramer.crlf(), bufferBound: 100_000)
        driver.feed(try DelimiterFramer.crlf().encodedFrame([0x61, 0x0D]))
        #expect(driver.frames == [[0x61, 0x0D]])
    }

    @Test("a fixed-length framer refuses any other length")
    func wrongFixedLength() {
        let framer = FixedLengthFramer(length: 4)
        for length in [0, 3, 5, 100] {
            let error = #expect(throws: FramingError.self) { try framer.encodedFrame([UInt8](repeating: 1, count: length)) }
            if let error, case .unframeablePayload = error {} else if let error {
                Issue.record("\(length) bytes: expected unframeablePayload, got \(error)")
            }
        }
    }

    @Test("a payload over the limit is refused", arguments: FramerCase.delimiters + FramerCase.lengthPrefixes + [FramerCase.netstring])
    func overMax(_ framerCase: FramerCase) throws {
        let framer = framerCase.makeFramer()
        let limit = framer.maxFrameLength
        _ = try framer.encodedFrame([UInt8](repeating: 0x61, count: limit))
        #expect(throws: FramingError.frameTooLong(length: limit + 1, limit: limit)) {
            try framer.encodedFrame([UInt8](repeating: 0x61, count: limit + 1))
        }
    }

    @Test("errors describe themselves")
    func descriptions() {
        #expect(FramingError.frameTooLong(length: 10, limit: 5).description == "frame too long: 10 bytes, limit 5")
        #expect(FramingError.frameTooLong(length: nil, limit: 5).description.contains("no delimiter within the limit of 5"))
        #expect(FramingError.malformedHeader("x").description == "malformed header: x")
        #expect(FramingError.malformedTrailer("y").description == "malformed trailer: y")
        #expect(FramingError.unframeablePayload("z").description == "cannot frame payload: z")
    }
}
