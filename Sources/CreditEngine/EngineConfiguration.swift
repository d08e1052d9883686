/// Settings of a `CreditEngine`.
public struct EngineConfiguration: Sendable {
    /// Number of shard actors. Fixed for the life of a data directory: a tenant's shard is
    /// a hash of its id modulo this count.
    public var shardCount: Int
    /// Settings of each shard's ledger. `idempotencyKeysMax` is per shard.
    public var ledger: LedgerConfiguration
    /// Entries each shard keeps in memory for `recentStatement` (the log keeps all of them).
    public var recentEntriesPerShard: Int
    /// Called on the shard's executor with every new ledger entry, in sequence order per
    /// shard. Must be fast and must not block; the durability layer and tests attach here.
    public var onEntry: (@Sendable (_ shard: Int, _ entry: LedgerEntry) -> Void)?

    public static let shardCountMax = 1_024
    public static let recentEntriesPerShardDefault = 4_096

    /// Four shards per core: enough actors that 64 concurrent callers rarely queue on the same
    /// one, few enough that each shard's fixed tables stay small (docs/architecture.md).
    public static var shardCountDefault: Int { max(4, 4 * ProcessInfoLite.activeProcessorCount) }

    public init(shardCount: Int = shardCountDefault, ledger: LedgerConfiguration = LedgerConfiguration(),
                recentEntriesPerShard: Int = recentEntriesPerShardDefault,
                onEntry: (@Sendable (_ shard: Int, _ entry: LedgerEntry) -> Void)? = nil) {
        self.shardCount = shardCount
        self.ledger = ledger
        self.recentEntriesPerShard = recentEntriesPerShard
        self.onEntry = onEntry
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
