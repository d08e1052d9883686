// swift-tools-version: 6.0
// The floor of a strict single call in Swift concurrency on this machine, with no ledger
// work and no I/O (docs/performance.md, Durability). Not part of the main package:
//   swift build -c release && .build/release/floor 256 8000 thread
import PackageDescription

let package = Package(name: "continuation-floor", targets: [.executableTarget(name: "floor")])
