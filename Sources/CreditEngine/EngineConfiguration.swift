/// Settings of a `CreditEngine`.
public struct EngineConfiguration: Sendable {
    /// Number of shard actors. Fixed for the life of a data directory: a tenant's shard is
    /// a hash of its id modulo this count.
    public var shardCount: Int
    /// Settings of each shard's ledger. `idempotencyKeysMax` is per shard; by default the
    /// engine splits `idempotencyKeysPerEngineDefault` evenly over its shards, so memory
    /// does not grow with the shard count.
    public var ledger: LedgerConfiguration
    /// Entries each shard keeps in memory for `recentStatement` (the log keeps all of them).
    public var recentEntriesPerShard: Int
    /// Called on the shard's executor with every new ledger entry, in sequence order per
    /// shard. Must be fast and must not block; the durability layer and tests attach here.
    public var onEntry: (@Sendable (_ shard: Int, _ entry: LedgerEntry) -> Void)?
    /// Where and how commands are made durable; nil keeps everything in memory only.
    /// Engines with storage are opened with `CreditEngine.open(configuration:clock:)`.
    public var storage: StorageConfiguration?
    /// How the scheduler treats what falls due: grace, expiry warnings, chunking.
    public var schedule = SchedulePolicy()
    /// Back-pressure: single-command calls queued per shard for its next drain round (with
    /// storage). Callers beyond it wait in line, in arrival order; it also bounds one
    /// round's append to the log (docs/operations.md, "Back-pressure and memory bounds").
    public var submissionCommandsMax = submissionCommandsMaxDefault

    /// The data directory's limit (`credits.meta` and every header are checked against it).
    public static let shardCountMax = StorageLimits.shardCountMax
    /// Far above the rounds of the measured loads (a strict round holds the calls of one
    /// sync: 64 tasks make rounds of at most 64), so it only bites under overload.
    public static let submissionCommandsMaxDefault = 4_096
    public static let recentEntriesPerShardDefault = 1_024
    /// Idempotency keys remembered by the whole engine by default (at least half of them
    /// are kept): 524,288, about 45 MB.
    public static let idempotencyKeysPerEngineDefault = 524_288

    /// Eight shards per core: single-command calls from many concurrent callers queue on
    /// their shard's actor, so more actors mean more of them run at once; per-shard tables
    /// are sized from engine-wide budgets, so the count does not cost memory
    /// (docs/architecture.md has the measurements).
    public static var shardCountDefault: Int { max(4, 8 * ProcessInfoLite.activeProcessorCount) }

    /// One shard per core (at least two) for an engine with storage: every shard's log
    /// syncs on its own, and on one disk fewer, larger group commits beat many small ones
    /// (strict single-command calls on the 2-core machine: about 400k/s with 2 shards,
    /// 250k/s with 16; docs/performance.md). Single calls reach their shard through a
    /// queue (`SubmissionQueue`), not by waiting for its actor, so few actors do not make
    /// callers queue.
    public static var durableShardCountDefault: Int { max(2, ProcessInfoLite.activeProcessorCount) }

    /// The default shard count for an engine with or without storage.
    public static func shardCountDefault(durable: Bool) -> Int { durable ? durableShardCountDefault : shardCountDefault }

    /// `shardCount` nil picks `shardCountDefault(durable: storage != nil)`.
    public init(shardCount: Int? = nil, ledger: LedgerConfiguration? = nil,
                recentEntriesPerShard: Int = recentEntriesPerShardDefault,
                onEntry: (@Sendable (_ shard: Int, _ entry: LedgerEntry) -> Void)? = nil,
                storage: StorageConfiguration? = nil) {
        let shardCount = shardCount ?? Self.shardCountDefault(durable: storage != nil)
        self.shardCount = shardCount
        self.ledger = ledger ?? LedgerConfiguration(
            idempotencyKeysMax: max(LedgerConfiguration.idempotencyKeysPerShardMin,
                                    Self.idempotencyKeysPerEngineDefault / max(1, shardCount)))
        self.recentEntriesPerShard = recentEntriesPerShard
        self.onEntry = onEntry
        self.storage = storage
    }

    /// The configuration of each shard's ledger (recovery must build the same one).
    public var shardLedgerConfiguration: LedgerConfiguration {
        var configuration = ledger
        configuration.recentEntriesMax = recentEntriesPerShard
        return configuration
    }
}

/// Counters summed over the shards.
public struct EngineStatistics: Sendable, Equatable {
    public var tenants = 0
    public var accounts = 0
    public var openHolds = 0
    public var rememberedKeys = 0
    public var entries: UInt64 = 0
    public var replays: UInt64 = 0
    public var conflicts: UInt64 = 0

    public init() {}

    mutating func add(_ other: EngineStatistics) {
        tenants += other.tenants
        accounts += other.accounts
        openHolds += other.openHolds
        rememberedKeys += other.rememberedKeys
        entries += other.entries
        replays += other.replays
        conflicts += other.conflicts
    }
}

public struct DurabilityStatistics: Sendable, Equatable {
    public var syncs: UInt64 = 0
    public var syncedRecords: UInt64 = 0
    public var snapshots = 0
    /// Longest single turn of a shard (applying one command or a batch share and appending
    /// its records), in nanoseconds.
    public var longestTurnNanos: UInt64 = 0
    /// The longest CPU time one turn took (without the time its thread was preempted).
    public var longestTurnCPUNanos: UInt64 = 0
    /// The longest turn while a snapshot of its shard was in flight (the snapshot's stall:
    /// the state's pages are copied on their first write after the snapshot took them).
    public var longestTurnDuringSnapshotNanos: UInt64 = 0
    /// Turns longer than `stallNanos` while a snapshot of their shard was in flight.
    public var snapshotStalls = 0

    /// A turn longer than this during a snapshot counts as a stall: 1 ms.
    public static let stallNanos: UInt64 = 1_000_000

    public init() {}

    public var recordsPerSync: Double { syncs == 0 ? 0 : Double(syncedRecords) / Double(syncs) }

    mutating func add(_ other: DurabilityStatistics) {
        syncs += other.syncs
        syncedRecords += other.syncedRecords
        snapshots += other.snapshots
        longestTurnNanos = max(longestTurnNanos, other.longestTurnNanos)
        longestTurnCPUNanos = max(longestTurnCPUNanos, other.longestTurnCPUNanos)
        longestTurnDuringSnapshotNanos = max(longestTurnDuringSnapshotNanos, other.longestTurnDuringSnapshotNanos)
        snapshotStalls += other.snapshotStalls
    }
}
