// swift-tools-version: 6.1
// The libFuzzer target for the UDP services' request handling, kept out of the root
// package: its `main` hands over to libFuzzer's driver, so it only links when built with
// the fuzzer sanitizer. Fuzz/run-fuzz-udp.sh (`make fuzz`) builds and runs it:
//
//   swift build --package-path Fuzz/UDPServices --scratch-path .build-fuzz-udp \
//       -c release -Xswiftc -sanitize=fuzzer,address
import PackageDescription

let package = Package(
    name: "reactor-fuzz-udp",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "swift-reactor", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "FuzzUDPServices",
            dependencies: [
                .product(name: "ReactorCore", package: "swift-reactor"),
                .product(name: "ReactorServices", package: "swift-reactor"),
            ]
        ),
    ]
)
