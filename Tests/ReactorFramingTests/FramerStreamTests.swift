// Every framer decodes a stream of many frames the same way however the stream is cut:
// whole, at every byte boundary, one byte at a time, and at random cuts (property-based).

import PropertyBased
import ReactorCore
import ReactorFraming
import ReactorTestSupport
import Testing

@Suite("Framer streams", .timeLimit(.minutes(1)))
struct FramerStreamTests {
    @Test("a stream of many frames fed whole", arguments: FramerCase.all)
    func whole(_ framerCase: FramerCase) throws {
        let payloads = framerCase.samplePayloads
        let stream = try framerCase.encode(payloads)
        let driver = decode(stream, with: framerCase)
        expectDecoded(driver, payloads, framerCase)
        if framerCase.preservesBoundaries {
            #expect(driver.frames.count == payloads.count)
        }
    }

    @Test("split into two reads at every byte boundary", arguments: FramerCase.all)
    func everyBoundary(_ framerCase: FramerCase) throws {
        let payloads = framerCase.samplePayloads
        let stream = try framerCase.encode(payloads)
        for cut in 0...stream.count {
            var driver = FramerDriver(framerCase)
            driver.feed(stream[..<cut])
            driver.feed(stream[cut...])
            expectDecoded(driver, payloads, framerCase, "cut at \(cut) of \(stream.count)")
        }
    }

    @Test("split into three reads at every pair of boundaries around each frame end", arguments: FramerCase.all)
    func everyPairNearFrameEnds(_ framerCase: FramerCase) throws {
        // Two cuts, each within a few bytes of a frame's end: delimiters, headers and
        // trailers split three ways.
        let payloads = Array(framerCase.samplePayloads.prefix(8))
        let framer = framerCase.makeFramer()
        var ends: [Int] = []
        var stream: [UInt8] = []
        for payload in payloads {
            stream += try framer.encodedFrame(payload)
            ends.append(stream.count)
        }
        let near = Set(ends.flatMap { end in (end - 8)...(end + 2) }.filter { $0 > 0 && $0 < stream.count }).sorted()
        for first in near {
            for second in near where second > first {
                var driver = FramerDriver(framerCase)
                driver.feed(stream[..<first])
                driver.feed(stream[first..<second])
                driver.feed(stream[second...])
                expectDecoded(driver, payloads, framerCase, "cuts at \(first) and \(second)")
            }
        }
    }

    @Test("fed one byte at a time", arguments: FramerCase.all)
    func byteByByte(_ framerCase: FramerCase) throws {
        let payloads = framerCase.samplePayloads
        let stream = try framerCase.encode(payloads)
        let driver = decode(stream, with: framerCase, pieces: [1])
        expectDecoded(driver, payloads, framerCase)
    }

    @Test("many random frames at random splits (property)", arguments: FramerCase.all)
    func randomSplits(_ framerCase: FramerCase) async {
        let alphabet = framerCase.alphabet
        // Payload bytes as indices: small values pick the framing's special bytes, the
        // rest plain filler, so delimiters, digits and commas turn up often.
        let byte = Gen.int(in: 0...(alphabet.count + 5))
        let payloads = byte.array(of: framerCase.payloadLengths).array(of: 0...40)
        let pieces = Gen.int(in: 1...24).array(of: 1...12)
        await propertyCheck(count: 60, input: payloads, pieces) { indices, pieces in
            let payloads = indices.map { payload in
                framerCase.frameable(payload.map { $0 < alphabet.count ? alphabet[$0] : UInt8(0x70 + $0) })
            }
            let stream = try framerCase.encode(payloads)
            let driver = decode(stream, with: framerCase, pieces: pieces)
            expectDecoded(driver, payloads, framerCase, "pieces \(pieces)")
        }
    }

    @Test("encode then decode gives back every payload the encoder accepts (property)", arguments: FramerCase.framing)
    func roundTrip(_ framerCase: FramerCase) async {
        let alphabet = framerCase.alphabet
        // Raw payloads, not cut back to frameable ones: whatever the encoder accepts must
        // decode to itself, and whatever it refuses must be refused with a typed error.
        let payload = Gen.int(in: 0...(alphabet.count - 1)).array(of: framerCase.payloadLengths)
        await propertyCheck(count: 300, input: payload) { indices in
            let payload = indices.map { alphabet[$0] }
            let framer = framerCase.makeFramer()
            let encoded: [UInt8]
            do throws(FramingError) {
                encoded = try framer.encodedFrame(payload)
            } catch {
                // Refused: only a delimiter framer refuses payloads within its length.
                guard case .delimiter = framerCase.kind, case .unframeablePayload = error else {
                    Issue.record("\(framerCase) refused \(payload): \(error)")
                    return
                }
                return
            }
            // The frame alone, and followed by a second frame that starts like a trailer.
            let driver = decode(encoded, with: framerCase)
            #expect(driver.frames == [payload], "encoded \(encoded)")
            #expect(driver.error == nil)
            #expect(driver.buffered == 0)
            let next = framerCase.frameable(framerCase.trailer + [0x5A])
            let pair = decode(encoded + (try framer.encodedFrame(next)), with: framerCase)
            #expect(pair.frames == [payload, next], "encoded \(encoded)")
        }
    }
}

@Suite("Framer wire formats", .timeLimit(.minutes(1)))
struct FramerWireFormatTests {
    @Test func netstringBytes() throws {
        let framer = NetstringFramer()
        #expect(try framer.encodedFrame(Array("hello".utf8)) == Array("5:hello,".utf8))
        #expect(try framer.encodedFrame([]) == Array("0:,".utf8))
        #expect(try framer.encodedFrame([UInt8](repeating: 0x2C, count: 10)) == Array("10:,,,,,,,,,,,".utf8))
        let big = [UInt8](repeating: 0x41, count: 65536)
        #expect(try framer.encodedFrame(big) == Array("65536:".utf8) + big + [0x2C])
    }

    @Test(arguments: [
        (LengthPrefixFramer.Width.one, LengthPrefixFramer.ByteOrder.bigEndian, [UInt8]([3])),
        (.one, .littleEndian, [3]),
        (.two, .bigEndian, [0, 3]),
        (.two, .littleEndian, [3, 0]),
        (.four, .bigEndian, [0, 0, 0, 3]),
        (.four, .littleEndian, [3, 0, 0, 0]),
        (.eight, .bigEndian, [0, 0, 0, 0, 0, 0, 0, 3]),
        (.eight, .littleEndian, [3, 0, 0, 0, 0, 0, 0, 0]),
    ])
    func lengthPrefixBytes(width: LengthPrefixFramer.Width, order: LengthPrefixFramer.ByteOrder, header: [UInt8]) throws {
        let framer = LengthPrefixFramer(width: width, byteOrder: order)
        #expect(try framer.encodedFrame(Array("abc".utf8)) == header + Array("abc".utf8))
    }

    @Test func lengthPrefixMultiByteLengthsKeepTheirOrder() throws {
        let payload = [UInt8](repeating: 7, count: 0x0102)
        #expect(try (LengthPrefixFramer(width: .two)).encodedFrame(payload).prefix(2) == [0x01, 0x02])
        #expect(try (LengthPrefixFramer(width: .two, byteOrder: .littleEndian)).encodedFrame(payload).prefix(2) == [0x02, 0x01])
        #expect(try (LengthPrefixFramer(width: .four)).encodedFrame(payload).prefix(4) == [0, 0, 0x01, 0x02])
        // Decoding a header whose bytes differ exercises the byte order on the way in.
        var driver = FramerDriver(LengthPrefixFramer(width: .four, byteOrder: .littleEndian), bufferBound: 70_000)
        driver.feed([0x02, 0x01, 0, 0] + payload)
        #expect(driver.frames == [payload])
    }

    @Test func delimiterBytes() throws {
        #expect(try DelimiterFramer.line().encodedFrame(Array("hi".utf8)) == Array("hi\n".utf8))
        #expect(try DelimiterFramer.crlf().encodedFrame(Array("hi".utf8)) == Array("hi\r\n".utf8))
        #expect(try (DelimiterFramer(delimiter: [0xFF, 0x00, 0xFF])).encodedFrame([]) == [0xFF, 0x00, 0xFF])
        #expect(try (FixedLengthFramer(length: 2)).encodedFrame([1, 2]) == [1, 2])
        #expect(try RawFramer().encodedFrame([1, 2, 3]) == [1, 2, 3])
    }

    @Test func framingNames() {
        let expected: [(String, Framing)] = [
            ("raw", .raw), ("line", .line), ("crlf", .crlf), ("int8", .lengthPrefix(.one)),
            ("int16", .lengthPrefix(.two)), ("int32", .lengthPrefix(.four)), ("int64", .lengthPrefix(.eight)),
            ("netstring", .netstring), ("fixed:128", .fixed(128)),
        ]
        for (text, framing) in expected {
            #expect(Framing(parsing: text) == framing)
            #expect(framing.description == text)
        }
        for bad in ["", "lines", "int", "int24", "fixed", "fixed:", "fixed:0", "fixed:-3", "fixed:x", "RAW", "netstrings"] {
            #expect(Framing(parsing: bad) == nil, "\(bad)")
        }
        #expect(Framing.lengthPrefix(.one).makeFramer(maxFrameLength: 1000).maxFrameLength == 255)
        #expect(Framing.lengthPrefix(.two).makeFramer().maxFrameLength == 65535)
        #expect(Framing.lengthPrefix(.four).makeFramer().maxFrameLength == FramerLimits.defaultMaxFrameLength)
        #expect(Framing.fixed(9).makeFramer(maxFrameLength: 4).maxFrameLength == 9)
        #expect(Framing.netstring.makeFramer(maxFrameLength: 10).maxFrameLength == 10)
        #expect(Framing.crlf.makeFramer().trailer == [0x0D, 0x0A])
    }
}
