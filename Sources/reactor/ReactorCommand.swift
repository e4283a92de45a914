import ArgumentParser

@main
struct ReactorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reactor",
        abstract: "Serve classic TCP services on a single-threaded libevent reactor.",
        subcommands: [Serve.self]
    )
}
