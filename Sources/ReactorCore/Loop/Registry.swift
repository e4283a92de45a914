/// Everything a reactor owns, so that stopping it closes all of it: connections in an
/// array indexed by file descriptor (as in redis `ae.c`: no hashing when one opens or
/// closes), and the rest (listeners, UDP sockets, connects in progress, signal watchers)
/// by identity. An object is in the registry exactly while it is open; the registry's
/// reference is what keeps an open object alive when its user drops theirs.
struct Registry {
    /// Something besides a connection.
    enum Entry {
        case listener(TCPListener)
        case udpSocket(UDPSocket)
        case pendingConnect(PendingConnect)
        case hostConnect(PendingHostConnect)
        case signalWatcher(SignalWatcher)
        case proxyHeader(ProxyHeaderReader)

        var object: AnyObject {
            switch self {
            case .listener(let object): object
            case .udpSocket(let object): object
            case .pendingConnect(let object): object
            case .hostConnect(let object): object
            case .signalWatcher(let object): object
            case .proxyHeader(let object): object
            }
        }

        /// Listeners, UDP sockets and connects: what a graceful shutdown stops first. A
        /// PROXY header still arriving is an accepted connection: it may finish.
        var opensConnections: Bool {
            switch self {
            case .signalWatcher, .proxyHeader: false
            default: true
            }
        }

        /// Stops it for good.
        func close() {
            switch self {
            case .listener(let listener): listener.close()
            case .udpSocket(let socket): socket.close()
            case .pendingConnect(let pending): pending.abandon()
            case .hostConnect(let pending): pending.cancel()
            case .signalWatcher(let watcher): watcher.cancel()
            case .proxyHeader(let reader): reader.abortForTeardown()
            }
        }
    }

    /// Open connections by file descriptor.
    private(set) var connections: [Connection?] = []
    /// The number of open connections.
    private(set) var connectionCount = 0
    /// Accepted sockets whose PROXY header is still arriving.
    var proxyHeaderCount = 0
    private var entries: [ObjectIdentifier: Entry] = [:]

    mutating func insert(_ connection: Connection) {
        let fd = Int(connection.fileDescriptor)
        if fd >= connections.count {
            connections.append(contentsOf: repeatElement(nil, count: Swift.max(fd + 1 - connections.count, connections.count)))
        }
        connections[fd] = connection
        connectionCount += 1
    }

    /// Returns false when `connection` was not registered.
    mutating func remove(_ connection: Connection) -> Bool {
        let fd = Int(connection.fileDescriptor)
        guard fd >= 0, fd < connections.count, connections[fd] === connection else { return false }
        connections[fd] = nil
        connectionCount -= 1
        return true
    }

    mutating func insert(_ entry: Entry) {
        entries[ObjectIdentifier(entry.object)] = entry
    }

    mutating func remove(_ object: AnyObject) {
        entries[ObjectIdentifier(object)] = nil
    }

    /// The entries for which `include` is true, copied: closing them changes the registry.
    func entries(where include: (Entry) -> Bool) -> [Entry] {
        entries.values.filter(include)
    }
}
