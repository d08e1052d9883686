import ArgumentParser
import CreditEngine
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// Options shared by the commands that open a data directory.
struct StorageOptions: ParsableArguments {
    @Option(help: "Data directory (created on first use).") var data: String
    @Option(help: "Durability: strict (ack after fsync, group commit), interval (fsync every 10 ms), none.")
    var durability: String = "strict"
    @Option(help: "Shard actors for a new data directory, 1...\(EngineConfiguration.shardCountMax) (an existing one keeps its own count).")
    var shards: Int?

    func validate() throws {
        try checkPath("--data", data)
        guard Durability(rawValue: durability) != nil else {
            throw ValidationError("--durability must be strict, interval or none, not \(durability)")
        }
        if let shards { try checkRange("--shards", shards, in: 1 ... EngineConfiguration.shardCountMax, "shards") }
    }

    func storage(snapshotEveryRecords: Int? = 5_000_000) -> StorageConfiguration {
        StorageConfiguration(directory: data, log: LogConfiguration(durability: Durability(rawValue: durability)!),
                             snapshotEveryRecords: snapshotEveryRecords)
    }

    /// The shard count to use: the directory's own if it exists (a different --shards is an
    /// error), else --shards or the default.
    func shardCount(for storage: StorageConfiguration) throws -> Int {
        let existing = try ShardStorage.existingShardCount(storage: storage)
        if let existing, let shards, shards != existing {
            throw ValidationError("\(data) holds \(existing) shards; --shards \(shards) does not match")
        }
        return existing ?? shards ?? EngineConfiguration.durableShardCountDefault
    }

    func open(snapshotEveryRecords: Int? = 5_000_000, recentEntries: Int = EngineConfiguration.recentEntriesPerShardDefault,
              clock: any LedgerClock = SystemClock()) async throws -> CreditEngine {
        let storage = storage(snapshotEveryRecords: snapshotEveryRecords)
        let count = try shardCount(for: storage)
        let engine = try await CreditEngine.open(configuration: EngineConfiguration(
            shardCount: count, recentEntriesPerShard: recentEntries, storage: storage), clock: clock)
        for report in engine.recoveryReports where report.droppedBecause != nil || !report.snapshotsRejected.isEmpty {
            for rejected in report.snapshotsRejected { printError("warning: shard \(report.shard): snapshot skipped: \(rejected)") }
            if let because = report.droppedBecause {
                printError("recovery: shard \(report.shard): dropped \(report.tornBytesDropped) bytes, \(report.tornRecordsDropped) records: \(because)")
            }
        }
        return engine
    }
}
