// The documented range of every numeric and path option (docs/operations.md, "Command-line
// limits"). Each command checks its options against them in `validate()`, so a value out
// of range is refused with the option, the range and its unit named, before anything is
// opened, allocated or started.
import ArgumentParser
import CreditEngine

enum OptionLimits {
    /// Funded accounts of a bench, load, drill or month-end run: 100 million, about 20 GB
    /// at the 200 bytes per account measured (docs/performance.md). It also keeps the
    /// enterprise scenario's member numbers (UInt32) in range.
    static let accountsMax = 100_000_000
    /// Operations of one bench run: 10^10, some 20 minutes at the fastest measured rate.
    static let opsMax = 10_000_000_000
    /// Concurrent tasks of a load: each bench task keeps a latency histogram of about 200 KB.
    static let concurrencyTasksMax = 1_024
    /// Commands per batch call; the batch is allocated per task.
    static let batchCommandsMax = 65_536
    /// Durations (bench --duration, load and drill --seconds): 1 ms to one day.
    static let durationSecondsMin = 0.001
    static let durationSecondsMax = 86_400.0
    /// The hot scenario's Zipf exponent (1 itself is excluded: the sampler's formula).
    static let zipfExponentMin = 0.01
    static let zipfExponentMax = 10.0
    /// Idempotency keys per shard (the table takes about 80 bytes a key, allocated up front).
    static let idempotencyKeysPerShardMin = 2
    static let idempotencyKeysPerShardMax = 1 << 24
    /// Recent ledger entries each shard keeps in memory.
    static let recentEntriesPerShardMax = 1 << 20
    /// Records between snapshots.
    static let snapshotEveryRecordsMax = 1_000_000_000
    /// How long a strict log writer waits for more records before a sync.
    static let commitDelayMicrosMax = 100_000
    /// Log writer threads: more than one per shard has nothing to do.
    static let writerThreadsMax = EngineConfiguration.shardCountMax
    /// Alternating rounds of a bench --versus comparison.
    static let roundsMax = 1_000
    /// Payments the scheduler makes at once.
    static let paymentsInParallelMax = 1_024
    /// Due notes a shard works through per scheduler turn.
    static let notesPerTurnMax = 1 << 20
    /// A month-end renewal's price: the ledger's own maximum ($10,000,000).
    static let priceCentsMax = SubscriptionTerms.priceCentsMax
}

/// Refuses `value` outside `range`, naming the option, the range and its unit.
func checkRange<Value: Comparable>(_ option: String, _ value: Value, in range: ClosedRange<Value>,
                                   _ unit: String) throws(ValidationError) {
    // A NaN is in no range: every comparison with it is false.
    guard range.contains(value) else {
        throw ValidationError("\(option) must be \(range.lowerBound)...\(range.upperBound) \(unit), not \(value)")
    }
}

/// Refuses an empty path: `--data ''` would otherwise mean the current directory.
func checkPath(_ option: String, _ path: String) throws(ValidationError) {
    guard !path.isEmpty else { throw ValidationError("\(option) must name a path, not ''") }
}
