// swift-tools-version: 6.1
import PackageDescription

// Micro-benchmarks of the hot paths (README.md), a package of their own so that the main
// build and `swift test` never compile them or fetch the benchmark package.
//
// The root package is a path dependency, and SwiftPM names a path dependency after its
// directory: the clone's directory, whatever it is called.
let rootPackage = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "")

let package = Package(
    name: "aideon-credits-benchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        // The MallocInterposer trait counts the allocations the benchmarks report. Naming it
        // leaves out the package's other default trait, RuntimeInterposer (ARC metrics on
        // Linux, which these benchmarks do not collect), and the dependency that comes with it.
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1",
                 traits: ["MallocInterposer"]),
    ],
    targets: [
        // Funded ledgers, keys, the holder that keeps a ledger between iterations (setup
        // only, never measured), and the benchmarks' shared configuration.
        .target(
            name: "LedgerFixtures",
            dependencies: [
                .product(name: "CreditCore", package: rootPackage),
                .product(name: "Benchmark", package: "benchmark"),
            ]
        ),
        // The core state machine: debit, burn-down, reserve + settle, idempotent retry.
        .executableTarget(
            name: "LedgerBenchmarks",
            dependencies: [
                "LedgerFixtures",
                .product(name: "CreditCore", package: rootPackage),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/LedgerBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // The durability layer: log records, CRC32C, snapshots, recovery.
        .executableTarget(
            name: "PersistenceBenchmarks",
            dependencies: [
                "LedgerFixtures",
                .product(name: "CreditCore", package: rootPackage),
                .product(name: "CreditPersistence", package: rootPackage),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/PersistenceBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
