// swift-tools-version: 6.1
import PackageDescription

// Linux only: the reactor runs on epoll and calls accept4, eventfd, recvmmsg/sendmmsg and
// UDP_SEGMENT/UDP_GRO directly (SwiftPM has no Linux platform entry to name here).
let package = Package(
    name: "swift-reactor",
    products: [
        .library(name: "ReactorCore", targets: ["ReactorCore"]),
        .library(name: "ReactorFraming", targets: ["ReactorFraming"]),
        .library(name: "ReactorServices", targets: ["ReactorServices"]),
        .library(name: "ReactorLifecycle", targets: ["ReactorLifecycle"]),
        .library(name: "ReactorBench", targets: ["ReactorBench"]),
        .executable(name: "reactor", targets: ["reactor"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        // libevent's headers and library (libevent-dev; `make` installs it when
        // `pkg-config --exists libevent_core` fails).
        .systemLibrary(name: "CEvent", pkgConfig: "libevent_core", providers: [.apt(["libevent-dev"])]),
        // Thin C helpers over Linux system calls (sockets, datagram batches, clocks).
        .target(name: "CSystem"),
        // zlib for the HdrHistogram encoding of `reactor bench` (zlib1g-dev; `make deps`).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(
            name: "ReactorCore",
            dependencies: [
                "CEvent",
                "CSystem",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "ReactorFraming",
            dependencies: [
                "ReactorCore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(name: "ReactorServices", dependencies: ["ReactorCore", "ReactorFraming"]),
        .target(
            name: "ReactorLifecycle",
            dependencies: [
                "ReactorCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The load generator behind `reactor bench`: clients, protocols (BenchCodec, which a
        // user extends), histograms, reports, the suite.
        .target(
            name: "ReactorBench",
            dependencies: [
                "ReactorCore",
                "ReactorFraming",
                "CZlib",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .executableTarget(
            name: "reactor",
            dependencies: [
                "ReactorCore",
                "ReactorFraming",
                "ReactorServices",
                "ReactorBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Helpers the test targets share: reactors and servers scoped to a block, waiting
        // with deadlines, a blocking POSIX client, child processes, the built `reactor`
        // executable. A plain target so that every test target can depend on it; above
        // ReactorCore only, so the core's tests need nothing else.
        .target(
            name: "ReactorTestSupport",
            dependencies: ["ReactorCore", .product(name: "Logging", package: "swift-log")],
            path: "Tests/ReactorTestSupport"
        ),
        .testTarget(
            name: "ReactorLifecycleTests",
            dependencies: [
                "ReactorLifecycle",
                "ReactorServices",
                "ReactorTestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "DocsTests",
            dependencies: ["ReactorCore", "ReactorFraming", "ReactorBench", "ReactorTestSupport"]
        ),
        .testTarget(
            name: "ReactorFramingTests",
            dependencies: [
                "ReactorFraming",
                "ReactorServices",
                "ReactorCore",
                "ReactorTestSupport",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "ReactorBenchTests",
            dependencies: ["ReactorBench", "ReactorCore", "ReactorFraming", "ReactorTestSupport"]
        ),
        .testTarget(
            name: "ReactorServicesTests",
            dependencies: ["ReactorServices", "ReactorCore", "ReactorTestSupport"]
        ),
        .testTarget(
            name: "ReactorCoreTests",
            dependencies: ["ReactorCore", "ReactorTestSupport"]
        ),
        // The built `reactor` executable as a child process: serve, bench and its suite, user
        // errors, hardening, Twisted interop. The only test target that builds the executable.
        .testTarget(
            name: "ReactorCommandTests",
            dependencies: ["ReactorCore", "ReactorFraming", "ReactorBench", "ReactorTestSupport", "reactor"]
        ),
    ]
)
