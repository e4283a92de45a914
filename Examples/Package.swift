// swift-tools-version: 6.2
// Runnable examples, a package of their own that depends on swift-reactor as a library
// user would: ReactorCore and ReactorFraming, with no traits, so neither
// swift-argument-parser nor hdrhistogram-swift is resolved or built. `make examples`
// (part of `make test`) builds them and talks to each (Examples/smoke.py).
import PackageDescription

let package = Package(
    name: "reactor-examples",
    dependencies: [
        .package(name: "swift-reactor", path: "..", traits: []),
    ],
    targets: [
        // A line-protocol key-value store with expiring keys and a UDP stats endpoint.
        .executableTarget(
            name: "KeyValue",
            dependencies: [
                .product(name: "ReactorCore", package: "swift-reactor"),
                .product(name: "ReactorFraming", package: "swift-reactor"),
            ]
        ),
        // A chat server: every line goes to the other members.
        .executableTarget(
            name: "Chat",
            dependencies: [
                .product(name: "ReactorCore", package: "swift-reactor"),
                .product(name: "ReactorFraming", package: "swift-reactor"),
            ]
        ),
    ]
)
