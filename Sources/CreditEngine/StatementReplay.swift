@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// Rebuilding a shard from the first record of its log, archive included, read-only: what
/// `credits export` and statements walk. The log holds commands, not entries; an entry's
/// numbers (grant and hold numbers, sequences) depend on every command of the shard before
/// it, so the whole shard is replayed through a fresh `Ledger`, every tenant, and the caller
/// keeps what it wants. Memory: the shard's ledger plus the segment being read.
package enum LogReplay {
    /// The shard count of the data directory `storage` names (a `RecoveryError` when it is
    /// not one).
    package static func shardCount(of storage: StorageConfiguration) throws(RecoveryError) -> Int {
        guard let count = try ShardStorage.existingShardCount(storage: storage) else {
            throw RecoveryError(shard: nil, .notDataDirectory(path: storage.directory))
        }
        return count
    }

    /// Replays shard `shard` from LSN 1. After each record `visit` gets its LSN, time, command and
    /// the ledger (whose `recentEntries.newest` is the record's entry); an error it throws
    /// stops the walk and is rethrown as is. Log damage and a log whose start was pruned
    /// (`RecoveryError.logStartPruned`) are `RecoveryError`s; a torn tail is skipped (and
    /// reported), never cut: nothing on disk changes.
    package static func fromLogStart(shard: Int, shardCount: Int, storage: StorageConfiguration,
                                     configuration: LedgerConfiguration,
                                     visit: (UInt64, Timestamp, Command, inout Ledger) throws -> Void) throws -> (Ledger, WALReader.Report) {
        var ledger = Ledger(configuration: configuration)
        var lastTime = ledger.lastTime
        let report: WALReader.Report
        do {
            report = try WALReader.read(directories: [storage.archiveDirectory(shard), storage.walDirectory(shard)],
                                        fileSystem: storage.fileSystem, shard: UInt32(shard), shardCount: UInt32(shardCount),
                                        mode: storage.recovery, keys: storage.encryption) { record in
                guard record.time >= lastTime else {
                    throw WALReader.Failure(file: storage.walDirectory(shard), offset: 0,
                                            problem: .timeOutOfOrder(lsn: record.lsn, time: record.time, previous: lastTime))
                }
                lastTime = record.time
                _ = ledger.record(record.command, at: record.time)
                try visit(record.lsn, record.time, record.command, &ledger)
            }
        } catch let failure as WALReader.Failure {
            if case .keyUnavailable(let keyID) = failure.problem {
                throw RecoveryError(shard: shard, .keyUnavailable(keyID: keyID, path: failure.file))
            }
            throw RecoveryError(shard: shard, .log(failure))
        }
        let problems = ledger.invariantViolations()
        guard problems.isEmpty else { throw RecoveryError(shard: shard, .invariantsBroken(problems)) }
        return (ledger, report)
    }
}
