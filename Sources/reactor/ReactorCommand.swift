import ArgumentParser

@main
struct ReactorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reactor",
        abstract: "Serve the classic small services over TCP and UDP on a single-threaded libevent reactor, and load-test request/response servers.",
        subcommands: [Serve.self, Bench.self]
    )
}
