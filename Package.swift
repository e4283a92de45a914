// swift-tools-version: 6.2
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
        .library(name: "ReactorAsync", targets: ["ReactorAsync"]),
        .library(name: "ReactorBench", targets: ["ReactorBench"]),
        .library(name: "ReactorMetrics", targets: ["ReactorMetrics"]),
        .executable(name: "reactor", targets: ["reactor"]),
    ],
    // A library-only dependent declares `traits: []` and resolves, fetches and builds none of
    // swift-argument-parser, hdrhistogram-swift, swift-metrics and swift-prometheus
    // (docs/architecture.md, "Dependencies"); `traits: ["Metrics"]` for ReactorMetrics.
    traits: [
        .trait(name: "Metrics", description: "ReactorMetrics: swift-metrics, swift-prometheus"),
        .trait(
            name: "Tools", description: "The reactor command and ReactorBench: swift-argument-parser, hdrhistogram-swift",
            enabledTraits: ["Metrics"]),
        .default(enabledTraits: ["Tools"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // `make docs`: the DocC catalogs (Sources/<Module>/<Module>.docc), built with --warnings-as-errors.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin.git", from: "1.5.0"),
    ],
    targets: [
        // libevent's headers and library (libevent-dev; `make` installs it when
        // `pkg-config --exists libevent_core` fails).
        .systemLibrary(name: "CEvent", pkgConfig: "libevent_core", providers: [.apt(["libevent-dev"])]),
        // Thin C helpers over Linux system calls (sockets, datagram batches, clocks).
        .target(name: "CReactorSystem"),
        // zlib for the HdrHistogram encoding of `reactor bench` (zlib1g-dev; `make deps`).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(
            name: "ReactorCore",
            dependencies: [
                "CEvent",
                "CReactorSystem",
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
        // async/await above the callback API: AsyncConnection, AsyncListener, async connect
        // and listen, AsyncRequestClient (docs/async.md).
        .target(
            name: "ReactorAsync",
            dependencies: [
                "ReactorCore",
                "ReactorFraming",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
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
                .product(name: "Histogram", package: "hdrhistogram-swift", condition: .when(traits: ["Tools"])),
            ]
        ),
        // A reactor's counters flushed to swift-metrics on a timer, and the Prometheus
        // text endpoint (a small HTTP/1.1 handler on the reactor) behind `serve --metrics`.
        .target(
            name: "ReactorMetrics",
            dependencies: [
                "ReactorCore",
                .product(name: "CoreMetrics", package: "swift-metrics", condition: .when(traits: ["Metrics"])),
                .product(name: "Prometheus", package: "swift-prometheus", condition: .when(traits: ["Metrics"])),
            ]
        ),
        .executableTarget(
            name: "reactor",
            dependencies: [
                "ReactorCore",
                "ReactorFraming",
                "ReactorServices",
                "ReactorBench",
                "ReactorMetrics",
                .product(name: "Prometheus", package: "swift-prometheus", condition: .when(traits: ["Metrics"])),
                .product(name: "ArgumentParser", package: "swift-argument-parser", condition: .when(traits: ["Tools"])),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Examples/ (README, "Examples"): built with the package, run by `make examples`.
        .executableTarget(name: "AsyncClientExample", dependencies: ["ReactorAsync", "ReactorCore"], path: "Examples/AsyncClient"),
        .executableTarget(name: "ReactorActorExample", dependencies: ["ReactorAsync", "ReactorCore"], path: "Examples/ReactorActor"),
        // The async echo server Benchmarks/async/async-bench.sh measures against `reactor serve echo`.
        .executableTarget(name: "async-echo", dependencies: ["ReactorAsync", "ReactorCore", "ReactorFraming"], path: "Benchmarks/async/AsyncEcho"),
        // Allocations (Benchmarks/budgets, budget 0) and nanoseconds (Benchmarks/async/executor-bench.sh)
        // of a job enqueued on the reactor's executor.
        .executableTarget(name: "executor-bench", dependencies: ["ReactorCore"], path: "Benchmarks/async/ExecutorBench"),
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
            dependencies: ["ReactorCore", "ReactorFraming", "ReactorBench", "ReactorAsync", "ReactorTestSupport"]
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
            name: "ReactorMetricsTests",
            dependencies: [
                "ReactorMetrics",
                "ReactorCore",
                "ReactorFraming",
                "ReactorTestSupport",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(
            name: "ReactorAsyncTests",
            dependencies: ["ReactorAsync", "ReactorCore", "ReactorFraming", "ReactorTestSupport"]
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
