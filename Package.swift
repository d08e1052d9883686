// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "aideon-credits",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "CreditEngine", targets: ["CreditEngine"]),
        .library(name: "CreditPricing", targets: ["CreditPricing"]),
        .library(name: "CreditBilling", targets: ["CreditBilling"]),
        .library(name: "CreditScheduler", targets: ["CreditScheduler"]),
        // For the micro-benchmarks in Benchmarks/ (their own package): the core and the
        // persistence layer they measure.
        .library(name: "CreditCore", targets: ["CreditCore"]),
        .library(name: "CreditPersistence", targets: ["CreditPersistence"]),
        .executable(name: "credits", targets: ["credits"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        // The pure ledger: a deterministic state machine. No I/O, no clock, no randomness.
        .target(name: "CreditCore", dependencies: ["CCacheHints"]),
        // A cache prefetch hint the core's batch path uses to overlap memory latency, and
        // atomic bit words for the engine's lock-free key-presence filter.
        .target(name: "CCacheHints"),
        // Files: the write-ahead log, snapshots, recovery, and the file layer they share
        // (injectable, so tests can simulate power cuts).
        // SHA-256 and Ed25519 (swift-crypto) for the audit chain and its signed checkpoints.
        .target(name: "CreditPersistence", dependencies: [
            "CreditCore", "CLZ4", "CChecksum", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // CRC32C with the SSE4.2 instruction when the CPU has it, a table otherwise.
        .target(name: "CChecksum"),
        // Shard actors and the public async facade over CreditCore.
        .target(
            name: "CreditEngine",
            dependencies: ["CreditCore", "CreditPersistence", "CCacheHints"]
        ),
        // The business layer's rules as data and pure functions: the model catalog and its
        // prices, plans, credit packages and quotes, routing. No I/O: hosts and the CLI read
        // files and hand over their text.
        .target(name: "CreditPricing", dependencies: ["CreditCore"]),
        // The business services a host calls: charging usage through the catalog and the
        // caller's keys, routing, purchases through a payment gateway, subscriptions, and
        // provider keys sealed with the host's key (AES-GCM from swift-crypto).
        .target(name: "CreditBilling", dependencies: [
            "CreditEngine", "CreditPricing", .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // Makes time pass: asks the shards what has fallen due, pays renewals and refills
        // through the host's payment gateway, issues the resulting commands and publishes
        // notices as data.
        .target(name: "CreditScheduler", dependencies: ["CreditEngine", "CreditCore", "CreditPricing"]),
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
                // The CLI names every module it imports: the engine and the business layer
                // like any host, and the core and persistence plumbing (`@_spi(Plumbing)`)
                // for its inspection, export and drill commands.
                "CreditEngine",
                "CreditCore",
                "CreditPersistence",
                "CreditPricing",
                "CreditBilling",
                "CreditScheduler",
                "CLZ4",
                "CSystemStats",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .testTarget(name: "CreditCoreTests", dependencies: ["CreditCore"]),
        // The seeded command workload both durability test suites drive.
        .target(name: "DurabilityTestSupport", dependencies: ["CreditCore"], path: "Tests/DurabilityTestSupport"),
        .testTarget(name: "CreditPersistenceTests", dependencies: ["CreditPersistence", "CreditCore", "DurabilityTestSupport"]),
        .testTarget(name: "CreditEngineTests", dependencies: ["CreditEngine", "CreditCore", "CreditPersistence", "DurabilityTestSupport"]),
        .testTarget(name: "CreditPricingTests", dependencies: ["CreditPricing", "DurabilityTestSupport"]),
        .testTarget(name: "CreditBillingTests", dependencies: ["CreditBilling", "DurabilityTestSupport"]),
        .testTarget(name: "CreditSchedulerTests", dependencies: ["CreditScheduler", "CreditBilling", "DurabilityTestSupport"]),
        // The command-line tool's own pieces (the load benchmark's samplers).
        .testTarget(name: "CreditsCLITests", dependencies: ["credits", "DurabilityTestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
