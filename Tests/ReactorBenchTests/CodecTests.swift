import ReactorCore
import ReactorFraming
import Testing

@testable import ReactorBench

extension BenchTests {
    /// The codecs' encoding and framing, byte for byte, without a network.
    @Suite struct CodecTests {
        private func options(_ configure: (inout BenchOptions) -> Void = { _ in }) -> BenchOptions {
            var options = BenchOptions()
            options.size = 8
            options.connections = 3
            options.keyspace = 10
            configure(&options)
            return options
        }

        /// Encodes one request with `codec` and returns its bytes and tag.
        private func encode<C: BenchCodec>(_ codec: inout C, sequence: Int = 0) -> ([UInt8], UInt64) {
            let room = UnsafeMutableRawBufferPointer.allocate(byteCount: codec.maxRequestLength, alignment: 8)
            defer { room.deallocate() }
            var buffer = BenchRequestBuffer(storage: room)
            codec.encodeRequest(into: &buffer, context: BenchRequestContext(connection: 0, sequence: sequence))
            return (Array(room[..<buffer.count]), buffer.tag)
        }

        private func frame(_ framer: some Framer, _ bytes: [UInt8]) throws -> FrameSearch {
            var framer = framer
            return try bytes.withUnsafeBytes { try framer.nextFrame(in: RawSpan(_unsafeBytes: $0)) }
        }

        @Test func templatesTakeEscapesAndVariables() throws {
            let template = try RequestTemplate.parse(#"a\r\n\t\\\x41{{b {seq}{conn}"#)
            #expect(template.pieces == [.literal(Array("a\r\n\t\\A{b ".utf8)), .sequence, .connection])
            #expect(try RequestTemplate.parse("{rand:5-9}").pieces == [.random(5...9)])
            for bad in ["{nope}", "{rand:9-5}", #"\q"#, #"\x4"#, "{seq", #"trailing\"#] {
                #expect(throws: BenchError.self, "\(bad)") { try RequestTemplate.parse(bad) }
            }
        }

        @Test func argumentsAreSplitBeforeVariablesAreSubstituted() throws {
            let arguments = try RequestTemplate.parseArguments(#"SET  k{key} a\x20b {value}"#)
            #expect(arguments.map(\.text) == ["SET", "k{key}", #"a\x20b"#, "{value}"])
            #expect(arguments[2].pieces == [.literal(Array("a b".utf8))], "an escaped space stays inside its argument")
            #expect(arguments[3].isValue)
        }

        @Test func sequentialKeysCoverTheKeyspaceTogether() {
            var generator = SplitMix64(seed: 1)
            var seen = Set<Int>()
            for connection in 0..<3 {
                var keys = KeyChooser(.sequential, keyspace: 10, connection: connection, connections: 3)
                for _ in 0..<4 { seen.insert(keys.next(&generator)) }
            }
            #expect(seen == Set(0..<10))
        }

        @Test func zipfKeysFavourTheFirstAndStayInRange() {
            var generator = SplitMix64(seed: 7)
            var keys = KeyChooser(.zipf(1.0), keyspace: 1000, connection: 0, connections: 1)
            var counts = [Int](repeating: 0, count: 1000)
            for _ in 0..<100_000 { counts[keys.next(&generator)] += 1 }
            #expect(counts[0] > counts[1] && counts[1] > counts[9] && counts[9] > counts[999])
            // Zipf(1) over 1000 ranks: the first key has 1/H(1000), about 13.4 % of the draws.
            #expect(abs(Double(counts[0]) / 100_000 - 0.134) < 0.01, "\(counts[0])")
            #expect(KeyDistribution("zipf:0.99") == .zipf(0.99) && KeyDistribution("zipf:-1") == nil && KeyDistribution("zipf") == nil)
        }

        @Test func redisCommandsAreArraysOfBulkStrings() throws {
            let options = options()
            let mix = try CommandMix(
                [BenchOptions.Command("SET k:{key} {value}")], options: options, setNames: ["SET"], getNames: ["GET"], overhead: { _ in 16 })
            var codec = RedisCodec(spec: mix, options: options, connection: 0, seed: 3)
            let (bytes, tag) = encode(&codec)
            let key = Int(tag >> 16)
            let text = String(decoding: bytes, as: UTF8.self)
            let keyText = "k:\(key)"
            #expect(text.hasPrefix("*3\r\n$3\r\nSET\r\n$\(keyText.utf8.count)\r\n\(keyText)\r\n$8\r\n"), "\(text.debugDescription)")
            #expect(text.hasSuffix("\r\n") && bytes.count == text.utf8.count)
            let value = Array(bytes[(bytes.count - 10)..<(bytes.count - 2)])
            #expect(value == Array(ValuePool.shared(seed: options.seed, size: 8).value(forKey: key)))
            // The server's view of the request: one whole RESP array.
            #expect(try frame(RESPFramer(), bytes) == .frame(payload: 0..<bytes.count, frameLength: bytes.count))
        }

        // Each kind of argument length: fixed, counted from {key} {seq} {conn} before
        // writing, and measured after writing ({rand}); the bulk lengths must be exact.
        @Test func redisArgumentLengthsAreExactForEveryVariable() throws {
            let options = options()
            let mix = try CommandMix(
                [BenchOptions.Command("HSET h{conn} f{seq}:{key}:{key} r{rand:5-12345}x {value}{value}")], options: options,
                setNames: ["SET"], getNames: ["GET"], overhead: { _ in 16 })
            var codec = RedisCodec(spec: mix, options: options, connection: 0, seed: 3)
            for sequence in [0, 7, 12_345] {
                let (bytes, tag) = encode(&codec, sequence: sequence)
                let key = Int(tag >> 16)
                #expect(try frame(RESPFramer(), bytes) == .frame(payload: 0..<bytes.count, frameLength: bytes.count))
                let text = String(decoding: bytes, as: UTF8.self)
                let field = "f\(sequence):\(key):\(key)"
                #expect(text.hasPrefix("*5\r\n$4\r\nHSET\r\n$2\r\nh0\r\n$\(field.utf8.count)\r\n\(field)\r\n$"), "\(text.debugDescription)")
                #expect(text.contains("x\r\n$16\r\n") && text.hasSuffix("\r\n"), "\(text.debugDescription)")
            }
        }

        // The plans compiled per digit count of the key: each key length on each side of a
        // power of ten gets its own exact `$N` header, with {key} and {value} together and
        // with the key's argument first and last.
        @Test func redisLengthsAreExactForKeysOfEveryDigitCount() throws {
            let options = options {
                $0.connections = 1
                $0.keyspace = 1_000_000
                $0.keyDistribution = .sequential
            }
            let mix = try CommandMix(
                [BenchOptions.Command("SET k:{key} {value}"), BenchOptions.Command("GET {key}x{key}")], options: options,
                setNames: ["SET"], getNames: ["GET"], overhead: { _ in 16 })
            var digitCounts = Set<Int>()
            for first in [0, 9, 99, 999, 9_999, 99_999, 999_998] {
                // Connection `first` of one: its sequential keys start at `first`.
                var codec = RedisCodec(spec: mix, options: options, connection: first, seed: 3)
                for _ in 0..<2 {
                    let (bytes, tag) = encode(&codec)
                    let key = Int(tag >> 16)
                    digitCounts.insert(String(key).count)
                    #expect(try frame(RESPFramer(), bytes) == .frame(payload: 0..<bytes.count, frameLength: bytes.count))
                    let text = String(decoding: bytes, as: UTF8.self)
                    if tag & 0xFFFF == 0 {
                        let keyText = "k:\(key)"
                        let valueText = String(decoding: ValuePool.shared(seed: options.seed, size: 8).value(forKey: key), as: UTF8.self)
                        #expect(text == "*3\r\n$3\r\nSET\r\n$\(keyText.utf8.count)\r\n\(keyText)\r\n$8\r\n\(valueText)\r\n", "\(text.debugDescription)")
                    } else {
                        let argument = "\(key)x\(key)"
                        #expect(text == "*2\r\n$3\r\nGET\r\n$\(argument.utf8.count)\r\n\(argument)\r\n", "\(text.debugDescription)")
                    }
                }
            }
            #expect(digitCounts == Set(1...6))
        }

        /// A GET's check rests on RESPFramer having checked the reply: each reply here is
        /// one it frames whole.
        @Test func redisGetChecksTheValueOfItsKey() throws {
            let options = options { $0.keyspace = 1000 }
            let mix = try CommandMix(
                [BenchOptions.Command("SET k{key} {value}"), BenchOptions.Command("GET k{key}")], options: options, setNames: ["SET"],
                getNames: ["GET"], overhead: { _ in 16 })
            var codec = RedisCodec(spec: mix, options: options, connection: 0, seed: 3)
            let key = 417
            let tag = UInt64(1) | UInt64(key) << 16  // command 1, the GET
            let value = String(decoding: ValuePool.shared(seed: options.seed, size: 8).value(forKey: key), as: UTF8.self)
            let other = String(decoding: ValuePool.shared(seed: options.seed, size: 8).value(forKey: key + 1), as: UTF8.self)
            let cases: [(String, BenchOutcome)] = [
                ("$8\r\n\(value)\r\n", .hit),
                ("$-1\r\n", .miss),
                ("$8\r\n\(other)\r\n", .wrongResponse),
                ("$7\r\n\(value.dropLast())\r\n", .wrongResponse),
                ("$9\r\n\(value)x\r\n", .wrongResponse),
                // As long as the right reply, its digits saying one byte less: the header's
                // \n falls in the bytes compared.
                ("$07\r\n\(value.dropFirst())\r\n", .wrongResponse),
                ("+OK\r\n", .wrongResponse),
                (":8\r\n", .wrongResponse),
                ("-ERR no\r\n", .serverError),
            ]
            for (reply, outcome) in cases {
                let bytes = Array(reply.utf8)
                #expect(try frame(RESPFramer(), bytes) == .frame(payload: 0..<bytes.count, frameLength: bytes.count), "\(reply.debugDescription)")
                let got = bytes.withUnsafeBytes { bytes in
                    codec.check(response: RawSpan(_unsafeBytes: bytes), request: RawSpan(_unsafeBytes: bytes), tag: tag)
                }
                #expect(got == outcome, "\(reply.debugDescription)")
            }
            // Without a SET of {value} in the mix, any bulk is a hit.
            let lookups = try CommandMix(
                [BenchOptions.Command("GET k{key}")], options: options, setNames: ["SET"], getNames: ["GET"], overhead: { _ in 16 })
            var plain = RedisCodec(spec: lookups, options: options, connection: 0, seed: 3)
            let bulk = Array("$3\r\nabc\r\n".utf8)
            let got = bulk.withUnsafeBytes { bytes in
                plain.check(response: RawSpan(_unsafeBytes: bytes), request: RawSpan(_unsafeBytes: bytes), tag: UInt64(key) << 16)
            }
            #expect(got == .hit)
        }

        @Test func weightsMixCommandsExactly() throws {
            let mix = try CommandMix(
                [BenchOptions.Command("SET a b"), BenchOptions.Command("GET a", weight: 9)], options: options(), setNames: ["SET"],
                getNames: ["GET"], overhead: { _ in 16 })
            #expect(mix.schedule.count == 10 && mix.schedule.filter { $0 == 0 }.count == 1)
            #expect(mix.commands[1].kind == .get(checkValue: false), "SET a b does not write {value}")
        }

        @Test func respFramerTakesWholeRepliesOnly() throws {
            let nested = Array("*2\r\n$3\r\nfoo\r\n*2\r\n:1\r\n$-1\r\n+OK\r\n".utf8)
            #expect(try frame(RESPFramer(), nested) == .frame(payload: 0..<(nested.count - 5), frameLength: nested.count - 5))
            #expect(try frame(RESPFramer(), Array("$5\r\nhel".utf8)) == .needMore(atLeast: 4))
            #expect(try frame(RESPFramer(), Array("*2\r\n:1\r\n".utf8)) == .needMore(atLeast: 1))
            #expect(throws: FramingError.self) { try frame(RESPFramer(), Array("?what\r\n".utf8)) }
        }

        /// Every prefix of common and uncommon replies, with a reply after them: the short
        /// paths for one-line and bulk replies and the general parse agree on where a reply
        /// ends, wait for the rest of a partial one, and refuse a bad one.
        @Test func respFramerCutsEveryPrefixRight() throws {
            let replies = [
                "+OK\r\n", "-ERR no\r\n", ":12345\r\n", "$3\r\nfoo\r\n", "$0\r\n\r\n", "$-1\r\n",
                "$32\r\n" + String(repeating: "v", count: 32) + "\r\n", "+" + String(repeating: "x", count: 40) + "\r\n",
                "+a\nb\r\n", "$12345678901\r\nx\r\n", "*2\r\n$1\r\na\r\n:1\r\n",
            ]
            for reply in replies {
                let bytes = Array(reply.utf8)
                let length = bytes.count
                if reply.hasPrefix("$12345678901") {
                    // Longer than the limit: refused whole or not.
                    #expect(throws: FramingError.self) { try frame(RESPFramer(), bytes) }
                    continue
                }
                #expect(try frame(RESPFramer(), bytes + Array("+OK\r\n".utf8)) == .frame(payload: 0..<length, frameLength: length), "\(reply.debugDescription)")
                for cut in 0..<length {
                    let found = try frame(RESPFramer(), Array(bytes[..<cut]))
                    guard case .needMore = found else {
                        Issue.record("\(reply.debugDescription) cut at \(cut): \(found)")
                        continue
                    }
                }
            }
            #expect(throws: FramingError.self) { try frame(RESPFramer(), Array("$3\r\nfooX\r\n".utf8)) }
        }

        @Test func memcachedSetsCarryTheirLength() throws {
            let options = options()
            let mix = try CommandMix(
                [BenchOptions.Command("set k{key} {value}")], options: options, setNames: MemcachedCodec.storageCommands,
                getNames: ["GET", "GETS"], overhead: { $0 == 0 ? 1 : 32 })
            var codec = MemcachedCodec(spec: mix, options: options, connection: 0, seed: 3)
            let (bytes, tag) = encode(&codec)
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("set k\(tag >> 16) 0 0 8\r\n") && text.hasSuffix("\r\n") && text.utf8.count == "set k\(tag >> 16) 0 0 8\r\n".utf8.count + 10)
            let reply = Array("VALUE k1 0 3\r\nabc\r\nEND\r\n".utf8)
            #expect(try frame(MemcachedFramer(), reply) == .frame(payload: 0..<reply.count, frameLength: reply.count))
            #expect(try frame(MemcachedFramer(), Array(reply[..<20])) == .needMore(atLeast: 1))
            #expect(try frame(MemcachedFramer(), Array("STORED\r\n".utf8)) == .frame(payload: 0..<8, frameLength: 8))
        }

        @Test func httpRequestsAndResponses() throws {
            let options = options {
                $0.protocol = .http
                $0.paths = ["/a/{key}"]
                $0.method = "POST"
                $0.headers = ["X-Test: 1"]
                $0.body = "v={value}"
            }
            var codec = HTTPCodec(spec: try HTTPSpec(options: options), options: options, connection: 0, seed: 1)
            let text = String(decoding: encode(&codec).0, as: UTF8.self)
            #expect(text.hasPrefix("POST /a/"), "\(text)")
            #expect(text.contains(" HTTP/1.1\r\nHost: 127.0.0.1:7007\r\nX-Test: 1\r\nContent-Length: 10\r\n\r\nv="), "\(text.debugDescription)")
            let body = text[text.range(of: "\r\n\r\n")!.upperBound...]
            #expect(body.utf8.count == 10 && body.hasPrefix("v="), "\(body)")

            let chunked = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".utf8)
            #expect(try frame(HTTPResponseFramer(noBody: false), chunked) == .frame(payload: 0..<chunked.count, frameLength: chunked.count))
            #expect(try frame(HTTPResponseFramer(noBody: false), Array(chunked[..<(chunked.count - 3)])) == .needMore(atLeast: 1))
            let head = Array("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n".utf8)
            #expect(try frame(HTTPResponseFramer(noBody: true), head) == .frame(payload: 0..<head.count, frameLength: head.count))
            #expect(try frame(HTTPResponseFramer(noBody: false), head) == .needMore(atLeast: 99))
            #expect(throws: FramingError.self) { try frame(HTTPResponseFramer(noBody: false), Array("HTTP/1.1 200 OK\r\n\r\n".utf8)) }
            let close = Array("HTTP/1.1 503 Busy\r\ncOnNeCtIoN: Close\r\nContent-Length: 0\r\n\r\n".utf8)
            let outcome = close.withUnsafeBytes { bytes in
                codec.check(response: RawSpan(_unsafeBytes: bytes), request: RawSpan(_unsafeBytes: bytes), tag: 0)
            }
            #expect(outcome == BenchOutcome(verdict: .httpStatus, statusCode: 503, closesConnection: true))
        }

        @Test func customFramingWrapsTheTemplate() throws {
            func request(_ framing: String, _ template: String) throws -> [UInt8] {
                let options = options {
                    $0.protocol = .custom
                    $0.requests = [template]
                    $0.responseFraming = framing
                }
                var codec = CustomCodec(spec: try CustomSpec(options: options, isStream: true), options: options, connection: 0, seed: 1)
                return encode(&codec).0
            }
            #expect(try request("netstring", "hello") == Array("5:hello,".utf8))
            #expect(try request("int16", "hello") == [0, 5] + Array("hello".utf8))
            #expect(try request("int64", "hi") == [0, 0, 0, 0, 0, 0, 0, 2] + Array("hi".utf8))
            #expect(try request("line", "hello") == Array("hello\n".utf8))
            #expect(try request("line", #"hello\n"#) == Array("hello\n".utf8), "the delimiter is not doubled")
            #expect(try request("delimiter:;;", "a") == Array("a;;".utf8))
            #expect(try request("fixed:5", "hello") == Array("hello".utf8))
            for bad in ["fixed:0", "delimiter:", "int24", "datagram"] {
                #expect(throws: BenchError.self, "\(bad)") { try request(bad, "x") }
            }
        }

        @Test func optionsRefuseWhatTheProtocolCannotDo() {
            let refused: [(inout BenchOptions) -> Void] = [
                { $0.protocol = .memcached },
                { $0.protocol = .custom },
                { $0.protocol = .custom; $0.requests = ["x"] },
                { $0.protocol = .custom; $0.requests = ["x"]; $0.responseFraming = "line"; $0.expect = "regex:(" },
                { $0.protocol = .http; $0.method = "GE T" },
                { $0.protocol = .http; $0.headers = ["no colon"] },
                { $0.protocol = .redis; $0.commands = [BenchOptions.Command("GET {bad}")] },
                { $0.protocol = .redis; $0.commands = [BenchOptions.Command("PING", weight: 0)] },
                { $0.protocol = .line; $0.transport = .udp },
                { $0.protocol = .custom; $0.transport = .udp; $0.requests = ["x"]; $0.responseFraming = "line" },
                { $0.keyspace = 0 },
            ]
            for (index, configure) in refused.enumerated() {
                var options = BenchOptions()
                configure(&options)
                #expect(throws: BenchError.self, "case \(index)") { try options.validate() }
            }
        }
    }
}
