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
    @Option(help: "PEM file of the Ed25519 key that signs the audit checkpoints (openssl genpkey -algorithm ed25519); never inside --data.")
    var auditKey: String?
    @OptionGroup var keys: DataKeyOptions

    func validate() throws {
        try checkPath("--data", data)
        _ = try loadAuditKey(auditKey, data: data)
        guard Durability(rawValue: durability) != nil else {
            throw ValidationError("--durability must be strict, interval or none, not \(durability)")
        }
        if let shards { try checkRange("--shards", shards, in: 1 ... EngineConfiguration.shardCountMax, "shards") }
    }

    func storage(snapshotEveryRecords: Int? = 5_000_000) throws -> StorageConfiguration {
        var log = LogConfiguration(durability: Durability(rawValue: durability)!)
        log.auditSigningKey = try loadAuditKey(auditKey, data: data)
        var storage = StorageConfiguration(directory: data, log: log, snapshotEveryRecords: snapshotEveryRecords)
        storage.encryption = try keys.ring(dataDirectory: data)
        return storage
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
        let storage = try storage(snapshotEveryRecords: snapshotEveryRecords)
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

/// Opens the engine of the data directory `storage` names, with the shard count it holds:
/// `not_data_directory` when it holds none (what `recover` and `rekey` need; a command that
/// may create the directory uses `StorageOptions.open`).
func openExistingEngine(_ storage: StorageConfiguration) async throws(RecoveryError) -> (engine: CreditEngine, shardCount: Int) {
    guard let count = try ShardStorage.existingShardCount(storage: storage) else {
        throw RecoveryError(shard: nil, .notDataDirectory(path: storage.directory))
    }
    return (try await CreditEngine.open(configuration: EngineConfiguration(shardCount: count, storage: storage)), count)
}

/// The audit signing key of `--audit-key FILE` (nil without the option): a PEM Ed25519
/// private key outside the data directory, or a validation error saying what is wrong.
func loadAuditKey(_ path: String?, data: String?) throws -> AuditSigningKey? {
    guard let path else { return nil }
    try checkPath("--audit-key", path)
    do {
        return try AuditSigningKey(pemFile: path, outside: data)
    } catch {
        throw ValidationError("--audit-key: \(error) [\(error.code)]")
    }
}
