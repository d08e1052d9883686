/// Where and how the engine keeps its data (docs/operations.md).
///
/// Layout of the data directory:
/// ```
/// DIR/credits.meta              format version and shard count (fixed for the directory's life)
/// DIR/shard-NN/wal/*.wal        the live log segments
/// DIR/shard-NN/snapshots/*.snap the last `snapshotsKept` snapshots
/// DIR/shard-NN/archive/*.wal    segments older than the oldest kept snapshot (the audit trail)
/// ```
public struct StorageConfiguration: Sendable {
    public var directory: String
    public var fileSystem: any FileSystem
    public var log: LogConfiguration
    /// Take a snapshot of a shard after this many records since its last one (nil: never
    /// by count).
    public var snapshotEveryRecords: Int?
    /// Take a snapshot of a shard this long after its last one, if it has new records
    /// (nil: never by time).
    public var snapshotEveryMillis: Int?
    /// Snapshots kept per shard (at least 2, so recovery can fall back to the one before).
    public var snapshotsKept: Int
    /// Archived segments kept per shard; nil keeps them all (the default: the log is the
    /// audit trail, and `export` needs it from the start to list every entry).
    public var archivedSegmentsKept: Int?
    /// What recovery does on corruption that is not a torn tail.
    public var recovery: WALReader.Mode
    /// Threads that write and sync the shards' logs (nil: one per core).
    public var writerThreads: Int?

    public init(directory: String, fileSystem: any FileSystem = PosixFileSystem(), log: LogConfiguration = LogConfiguration(),
                snapshotEveryRecords: Int? = 5_000_000, snapshotEveryMillis: Int? = 15 * 60_000, snapshotsKept: Int = 2,
                archivedSegmentsKept: Int? = nil, recovery: WALReader.Mode = .strict) {
        precondition(snapshotsKept >= 2, "keep at least two snapshots")
        self.directory = directory
        self.fileSystem = fileSystem
        self.log = log
        self.snapshotEveryRecords = snapshotEveryRecords
        self.snapshotEveryMillis = snapshotEveryMillis
        self.snapshotsKept = snapshotsKept
        self.archivedSegmentsKept = archivedSegmentsKept
        self.recovery = recovery
    }

    public func shardDirectory(_ shard: Int) -> String {
        let number = String(shard)
        return directory + "/shard-" + String(repeating: "0", count: max(0, 2 - number.count)) + number
    }
    public func walDirectory(_ shard: Int) -> String { shardDirectory(shard) + "/wal" }
    public func snapshotDirectory(_ shard: Int) -> String { shardDirectory(shard) + "/snapshots" }
    public func archiveDirectory(_ shard: Int) -> String { shardDirectory(shard) + "/archive" }
    public var metaPath: String { directory + "/credits.meta" }
}

/// What recovery of one shard found and did.
public struct ShardRecoveryReport: Sendable, Equatable {
    public var shard: Int
    /// The snapshot recovery started from (nil: from an empty ledger and the log's start).
    public var snapshot: String?
    public var snapshotLSN: UInt64 = 0
    public var snapshotBytes = 0
    /// Newer snapshots that did not verify, and why (recovery fell back past them).
    public var snapshotsRejected: [String] = []
    public var recordsReplayed = 0
    public var lastLSN: UInt64 = 0
    public var tornBytesDropped = 0
    public var tornRecordsDropped = 0
    public var segmentsDropped: [String] = []
    public var droppedBecause: String?
    public var millis: Int64 = 0
}

/// Something that stops start-up: the data directory is damaged beyond a torn tail (or
/// unusable), and the operator must decide (docs/operations.md).
public struct RecoveryError: Error, Sendable, CustomStringConvertible {
    public var shard: Int?
    public var problem: String
    /// See `WALReader.Failure.logStartPruned`.
    public var logStartPruned: Bool
    public var description: String { (shard.map { "shard \($0): " } ?? "") + problem }

    public init(shard: Int?, problem: String, logStartPruned: Bool = false) {
        self.shard = shard
        self.problem = problem
        self.logStartPruned = logStartPruned
    }
}

public enum ShardStorage {
    /// Rebuilds one shard's ledger: the newest snapshot that verifies (falling back to older
    /// ones, each rejection reported), then the log after it. `visit` sees every replayed
    /// record with the entry it made (for `export`). Read-only: nothing on disk changes.
    /// Records replayed per batch call during recovery.
    static let replayRunLength = 512

    public static func recover(shard: Int, shardCount: Int, storage: StorageConfiguration,
                               ledger configuration: LedgerConfiguration,
                               fromLogStart: Bool = false,
                               visit: ((WALReader.Entry, inout Ledger) -> Void)? = nil)
        throws(RecoveryError) -> (Ledger, WALReader.Report, ShardRecoveryReport) {
        let started = monotonicMillis()
        let fileSystem = storage.fileSystem
        var report = ShardRecoveryReport(shard: shard)
        var ledger = Ledger(configuration: configuration)
        var afterLSN: UInt64 = 0
        var chain: UInt32?

        if !fromLogStart {
            let names: [String]
            do { names = try SnapshotFile.list(directory: storage.snapshotDirectory(shard), fileSystem: fileSystem) } catch {
                throw RecoveryError(shard: shard, problem: "cannot list snapshots: \(error)")
            }
            for name in names {
                let path = storage.snapshotDirectory(shard) + "/" + name
                do {
                    let (header, restored) = try SnapshotFile.read(path: path, fileSystem: fileSystem, configuration: configuration)
                    guard header.shardIndex == UInt32(shard), header.shardCount == UInt32(shardCount),
                          SnapshotFile.lsn(ofNamed: name) == header.lsn else {
                        report.snapshotsRejected.append("\(path): written for shard \(header.shardIndex) of \(header.shardCount) at LSN \(header.lsn)")
                        continue
                    }
                    ledger = restored
                    afterLSN = header.lsn
                    chain = header.chain
                    report.snapshot = name
                    report.snapshotLSN = header.lsn
                    report.snapshotBytes = Int(header.frameBytes) + SnapshotHeader.size
                    break
                } catch {
                    report.snapshotsRejected.append("\(path): \(error)")
                }
            }
        }

        let walReport: WALReader.Report
        // Without a visitor, records are replayed in runs through the batch path, whose
        // prefetching overlaps the cache misses of consecutive records (a visitor must see
        // the ledger after each record, so it gets them one by one).
        var pending: [Command] = []
        var pendingTimes: [Timestamp] = []
        pending.reserveCapacity(Self.replayRunLength)
        pendingTimes.reserveCapacity(Self.replayRunLength)
        var lastTime = ledger.lastTime
        do {
            walReport = try WALReader.read(directories: [storage.archiveDirectory(shard), storage.walDirectory(shard)],
                                           fileSystem: fileSystem, shard: UInt32(shard), afterLSN: afterLSN, chain: chain,
                                           mode: storage.recovery) { entry in
                guard entry.time >= lastTime else {
                    throw WALReader.Failure(file: storage.walDirectory(shard), offset: 0,
                                            problem: "record \(entry.lsn) is stamped \(entry.time), before the previous record")
                }
                lastTime = entry.time
                if let visit {
                    _ = ledger.record(entry.command, at: entry.time)
                    visit(entry, &ledger)
                    return
                }
                pending.append(entry.command)
                pendingTimes.append(entry.time)
                if pending.count == Self.replayRunLength {
                    ledger.replay(pending, times: pendingTimes)
                    pending.removeAll(keepingCapacity: true)
                    pendingTimes.removeAll(keepingCapacity: true)
                }
            }
            ledger.replay(pending, times: pendingTimes)
        } catch let failure as WALReader.Failure {
            throw RecoveryError(shard: shard, problem: failure.description, logStartPruned: failure.logStartPruned)
        } catch {
            throw RecoveryError(shard: shard, problem: "\(error)")
        }
        report.recordsReplayed = walReport.recordsVisited
        report.lastLSN = walReport.lastLSN
        report.tornBytesDropped = walReport.droppedBytes
        report.tornRecordsDropped = walReport.droppedRecords
        report.segmentsDropped = walReport.droppedSegments
        report.droppedBecause = walReport.droppedBecause
        let problems = ledger.invariantViolations()
        guard problems.isEmpty else {
            throw RecoveryError(shard: shard, problem: "recovered state breaks invariants: \(problems.prefix(3).joined(separator: "; "))")
        }
        report.millis = monotonicMillis() - started
        return (ledger, walReport, report)
    }

    /// The shard count of an existing data directory, nil if `storage.directory` is not one
    /// (yet).
    public static func existingShardCount(storage: StorageConfiguration) throws(RecoveryError) -> Int? {
        guard storage.fileSystem.fileExists(storage.metaPath) else { return nil }
        return try prepare(storage: storage, shardCount: 0, create: false)
    }

    /// Creates the directory layout for a new data directory, or checks an existing one's
    /// format and shard count. Returns the shard count to use.
    public static func prepare(storage: StorageConfiguration, shardCount requested: Int, create: Bool) throws(RecoveryError) -> Int {
        let fileSystem = storage.fileSystem
        if fileSystem.fileExists(storage.metaPath) {
            let text: String
            do { text = String(decoding: try fileSystem.readFile(storage.metaPath), as: UTF8.self) } catch {
                throw RecoveryError(shard: nil, problem: "cannot read \(storage.metaPath): \(error)")
            }
            var format: Int?
            var shards: Int?
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ")
                guard parts.count == 2, let value = Int(parts[1]) else { continue }
                if parts[0] == "format" { format = value }
                if parts[0] == "shards" { shards = value }
            }
            guard format == 1, let shards, shards > 0 else {
                throw RecoveryError(shard: nil, problem: "\(storage.metaPath) is not a data directory of this format (\(text.debugDescription))")
            }
            return shards
        }
        guard create else { throw RecoveryError(shard: nil, problem: "\(storage.directory) is not a data directory (no credits.meta)") }
        do {
            try fileSystem.createDirectory(storage.directory)
            for shard in 0 ..< requested {
                try fileSystem.createDirectory(storage.walDirectory(shard))
                try fileSystem.createDirectory(storage.snapshotDirectory(shard))
                try fileSystem.createDirectory(storage.archiveDirectory(shard))
            }
            // The meta file last, durably: its presence means the layout is complete.
            let temporary = storage.directory + "/.tmp-credits.meta"
            let file = try fileSystem.open(temporary, create: true)
            try file.truncate(0)
            try file.write(Array("format 1\nshards \(requested)\n".utf8), at: 0)
            try file.sync()
            file.close()
            try fileSystem.rename(temporary, to: storage.metaPath)
            try fileSystem.syncDirectory(storage.directory)
        } catch {
            throw RecoveryError(shard: nil, problem: "cannot create the data directory: \(error)")
        }
        return requested
    }

    /// After a snapshot at `lsn`: keeps the newest `snapshotsKept` snapshots and moves log
    /// segments wholly before the oldest kept snapshot to the archive (pruning the archive
    /// to `archivedSegmentsKept` if set).
    public static func retire(shard: Int, storage: StorageConfiguration, currentSegmentFirstLSN: UInt64) throws(FileError) {
        let fileSystem = storage.fileSystem
        let snapshots = try SnapshotFile.list(directory: storage.snapshotDirectory(shard), fileSystem: fileSystem)
        for name in snapshots.dropFirst(storage.snapshotsKept) {
            try fileSystem.remove(storage.snapshotDirectory(shard) + "/" + name)
        }
        if snapshots.count > storage.snapshotsKept { try fileSystem.syncDirectory(storage.snapshotDirectory(shard)) }
        guard let oldestKept = snapshots.prefix(storage.snapshotsKept).last.flatMap(SnapshotFile.lsn(ofNamed:)) else { return }
        // A segment can go once the next segment starts at or before oldestKept + 1: all
        // its records are then in the snapshot.
        let segments = try fileSystem.contentsOfDirectory(storage.walDirectory(shard))
            .compactMap { name in WALFormat.firstLSN(ofSegmentNamed: name).map { (name, $0) } }
            .sorted { $0.1 < $1.1 }
        var moved = false
        for (index, (name, _)) in segments.enumerated() where index + 1 < segments.count {
            let nextFirst = segments[index + 1].1
            guard nextFirst <= oldestKept + 1, segments[index].1 < currentSegmentFirstLSN else { break }
            try fileSystem.rename(storage.walDirectory(shard) + "/" + name, to: storage.archiveDirectory(shard) + "/" + name)
            moved = true
        }
        if moved {
            // The archive entry first, then the removal from the log directory: a crash in
            // between leaves the segment in one of the two, never in neither.
            try fileSystem.syncDirectory(storage.archiveDirectory(shard))
            try fileSystem.syncDirectory(storage.walDirectory(shard))
        }
        if let kept = storage.archivedSegmentsKept {
            let archived = try fileSystem.contentsOfDirectory(storage.archiveDirectory(shard))
                .filter { WALFormat.firstLSN(ofSegmentNamed: $0) != nil }.sorted()
            for name in archived.dropLast(kept) { try fileSystem.remove(storage.archiveDirectory(shard) + "/" + name) }
            if archived.count > kept { try fileSystem.syncDirectory(storage.archiveDirectory(shard)) }
        }
    }
}
