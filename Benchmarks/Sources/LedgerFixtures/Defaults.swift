import Benchmark

extension Fixtures {
    /// What every benchmark here records (time, throughput, heap allocations), per 1,000
    /// operations, for at most 2 seconds; both benchmark targets start from it.
    public static func useDefaultConfiguration() {
        Benchmark.defaultConfiguration = .init(
            metrics: [.wallClock, .throughput, .mallocCountTotal],
            units: [.mallocCountTotal: .count],
            scalingFactor: .kilo,
            maxDuration: .seconds(2)
        )
    }
}
