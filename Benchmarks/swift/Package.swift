// swift-tools-version: 6.1
// Benchmarks for issue 3 (framing), kept out of the root package so that its users and
// CI never build SwiftNIO or package-benchmark:
//
// - `nio-echo`: the SwiftNIO one-thread echo servers (raw, line, int32, udp) that
//   `reactor serve echo` is compared with (Benchmarks/framing-bench.sh, peers.txt);
// - `nio-async-echo`: the SwiftNIO NIOAsyncChannel echo server (one thread) that the
//   reactor's async echo is compared with (Benchmarks/async/async-bench.sh);
// - `nio-executor-bench`: an event loop as a SerialExecutor, the cases of the reactor's
//   executor-bench (Benchmarks/async/executor-bench.sh);
// - `FramingBenchmarks` (package-benchmark): framer decode throughput and heap
//   allocations per frame, for the decode loop and for FramedConnection over loopback.
//
//   swift build -c release --package-path Benchmarks/swift --scratch-path Benchmarks/swift/.build --product nio-echo
//   (the same with --product nio-async-echo, --product nio-executor-bench)
//   swift package --package-path Benchmarks/swift benchmark
import PackageDescription

let package = Package(
    name: "reactor-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-reactor", path: "../.."),
        .package(url: "https://github.com/apple/swift-nio.git", .upToNextMinor(from: "2.101.0")),
        .package(url: "https://github.com/apple/swift-nio-extras.git", .upToNextMinor(from: "1.35.0")),
        .package(url: "https://github.com/ordo-one/package-benchmark.git", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "nio-echo",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ]
        ),
        .executableTarget(
            name: "nio-async-echo",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "nio-executor-bench",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "FramingBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "ReactorCore", package: "swift-reactor"),
                .product(name: "ReactorFraming", package: "swift-reactor"),
                .product(name: "ReactorServices", package: "swift-reactor"),
            ],
            path: "Benchmarks/FramingBenchmarks",
            plugins: [
                .plugin(name: "BenchmarkPlugin", package: "package-benchmark"),
            ]
        ),
    ]
)
