// swift-tools-version: 6.1
import PackageDescription

// libFuzzer targets for the decoders that read bytes from disk or from a user: the command
// decoder, the snapshot decoder (file and state), the WAL segment reader and the catalog
// parser. A package of its own, like Benchmarks/, so the main build and `swift test` never
// compile them; `scripts/fuzz` builds them with `-sanitize=fuzzer,address` and runs one.
//
// The root package is a path dependency, named after the clone's directory.
let rootPackage = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "")

func fuzzTarget(_ name: String, _ products: [String]) -> Target {
    .executableTarget(
        name: name,
        dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: rootPackage) }
    )
}

let package = Package(
    name: "aideon-credits-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: [
        // libFuzzer's driver, shared by the targets.
        .target(name: "FuzzSupport"),
        fuzzTarget("FuzzCommand", ["CreditCore"]),
        fuzzTarget("FuzzSnapshot", ["CreditCore", "CreditPersistence", "CreditEngine"]),
        fuzzTarget("FuzzWAL", ["CreditCore", "CreditPersistence"]),
        fuzzTarget("FuzzCatalog", ["CreditPricing"]),
    ],
    swiftLanguageModes: [.v6]
)
