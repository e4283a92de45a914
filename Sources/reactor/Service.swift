import ArgumentParser

/// A bundled service `reactor serve` can run.
enum Service: String, CaseIterable {
    case echo, discard, daytime, qotd, chargen, time

    /// The service's port in /etc/services (RFCs 862 to 868).
    var wellKnownPort: Int {
        switch self {
        case .echo: 7
        case .discard: 9
        case .daytime: 13
        case .qotd: 17
        case .chargen: 19
        case .time: 37
        }
    }

    /// The port `reactor serve SERVICE` uses without `--port`: 7000 plus the well-known
    /// port (echo 7007), so no root is needed.
    var defaultPort: Int { 7000 + wellKnownPort }
}

/// What `reactor serve` was asked to run: one service, or all of them.
enum ServiceSelection: Equatable, ExpressibleByArgument {
    case one(Service)
    case all

    init?(argument: String) {
        if argument == "all" {
            self = .all
        } else if let service = Service(rawValue: argument) {
            self = .one(service)
        } else {
            return nil
        }
    }

    static var allValueStrings: [String] { Service.allCases.map(\.rawValue) + ["all"] }

    /// The services selected, in the order of their well-known ports.
    var services: [Service] {
        switch self {
        case .one(let service): [service]
        case .all: Service.allCases
        }
    }
}
