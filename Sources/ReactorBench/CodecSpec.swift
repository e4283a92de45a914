/// A run's protocol, compiled once from the options (templates parsed, the mix laid out)
/// and shared by every connection, each of which gets its own codec from it.
enum CodecSpec: Sendable {
    case echo(BenchProtocol)
    case redis(CommandMix)
    case memcached(CommandMix)
    case http(HTTPSpec)
    case custom(CustomSpec)
    case user(BenchCodecFactory)

    init(_ options: BenchOptions) throws(BenchError) {
        if let codec = options.codec {
            self = .user(codec)
            return
        }
        switch options.protocol {
        case .raw, .line, .crlf, .int32, .netstring, .udp:
            self = .echo(options.protocol)
        case .redis:
            // *N\r\n, and $LEN\r\n ... \r\n around each argument.
            self = .redis(try CommandMix(
                options.commands, options: options, setNames: ["SET"], getNames: ["GET"],
                overhead: { _ in 16 }))
        case .memcached:
            guard !options.commands.isEmpty else { throw BenchError("--protocol memcached needs --command (e.g. 'get key:{key}')") }
            self = .memcached(try CommandMix(
                options.commands, options: options, setNames: MemcachedCodec.storageCommands, getNames: ["GET", "GETS"],
                overhead: { $0 == 0 ? 1 : 32 }))
        case .http:
            self = .http(try HTTPSpec(options: options))
        case .custom:
            self = .custom(try CustomSpec(options: options, isStream: options.isStream))
        }
    }
}
