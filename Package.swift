// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "aideon-credits",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "CreditEngine", targets: ["CreditEngine"]),
        .executable(name: "credits", targets: ["credits"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // The pure ledger: a deterministic state machine. No I/O, no clock, no randomness.
        .target(name: "CreditCore", dependencies: ["CCacheHints"]),
        // A cache prefetch hint the core's batch path uses to overlap memory latency.
        .target(name: "CCacheHints"),
        // Files: the write-ahead log, snapshots, recovery, and the file layer they share
        // (injectable, so tests can simulate power cuts).
        .target(name: "CreditPersistence", dependencies: ["CreditCore", "CLZ4", "CChecksum"]),
        // CRC32C with the SSE4.2 instruction when the CPU has it, a table otherwise.
        .target(name: "CChecksum"),
        // Shard actors and the public async facade over CreditCore.
        .target(
            name: "CreditEngine",
            dependencies: ["CreditCore", "CreditPersistence"]
        ),
        // liblz4 (frame format) from the system package liblz4-dev; the durability layer uses it.
        .systemLibrary(
            name: "CLZ4",
            pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]
        ),
        // glibc allocator statistics for the benchmark's memory figures.
        .target(name: "CSystemStats"),
        .executableTarget(
            name: "credits",
            dependencies: [
                "CreditEngine",
                "CLZ4",
                "CSystemStats",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "CreditCoreTests", dependencies: ["CreditCore"]),
        // The seeded command workload both durability test suites drive.
        .target(name: "DurabilityTestSupport", dependencies: ["CreditCore"], path: "Tests/DurabilityTestSupport"),
        .testTarget(name: "CreditPersistenceTests", dependencies: ["CreditPersistence", "DurabilityTestSupport"]),
        .testTarget(name: "CreditEngineTests", dependencies: ["CreditEngine", "DurabilityTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
