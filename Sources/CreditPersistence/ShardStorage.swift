@_spi(Plumbing) import CreditCore
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
    package var fileSystem: any FileSystem
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
    /// The data keys (docs/encryption.md): with a ring, new log segments and snapshots are
    /// sealed under its newest key, and files sealed under any of its keys are read. Without
    /// one, nothing new is sealed and a sealed file that must be opened stops start-up with
    /// `RecoveryProblem.keyUnavailable` (naming the key's id).
    public var encryption: EncryptionKeyRing?

    public init(directory: String, log: LogConfiguration = LogConfiguration(),
                snapshotEveryRecords: Int? = 5_000_000, snapshotEveryMillis: Int? = 15 * 60_000, snapshotsKept: Int = 2,
                archivedSegmentsKept: Int? = nil, recovery: WALReader.Mode = .strict) {
        self.init(directory: directory, fileSystem: PosixFileSystem(), log: log, snapshotEveryRecords: snapshotEveryRecords,
                  snapshotEveryMillis: snapshotEveryMillis, snapshotsKept: snapshotsKept,
                  archivedSegmentsKept: archivedSegmentsKept, recovery: recovery)
    }

    /// The same on another file system: the simulated one of the power-cut tests and the
    /// benchmarks.
    @_spi(Plumbing) public init(directory: String, fileSystem: any FileSystem, log: LogConfiguration = LogConfiguration(),
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

    package func shardDirectory(_ shard: Int) -> String {
        let number = String(shard)
        return directory + "/shard-" + String(repeating: "0", count: max(0, 2 - number.count)) + number
    }
    @_spi(Plumbing) public func walDirectory(_ shard: Int) -> String { shardDirectory(shard) + "/wal" }
    @_spi(Plumbing) public func snapshotDirectory(_ shard: Int) -> String { shardDirectory(shard) + "/snapshots" }
    package func archiveDirectory(_ shard: Int) -> String { shardDirectory(shard) + "/archive" }
    package var metaPath: String { directory + "/credits.meta" }
}

/// What recovery of one shard found and did.
public struct ShardRecoveryReport: Sendable, Equatable {
    public var shard: Int
    /// The snapshot recovery started from (nil: from an empty ledger and the log's start).
    public var snapshot: String?
    public var snapshotLSN: UInt64 = 0
    public var snapshotBytes = 0
    /// Newer snapshots that did not verify, and why (recovery fell back past them).
    public var snapshotsRejected: [SnapshotRejection] = []
    public var recordsReplayed = 0
    public var lastLSN: UInt64 = 0
    public var tornBytesDropped = 0
    public var tornRecordsDropped = 0
    public var segmentsDropped: [String] = []
    /// What was cut off, where: a torn tail, or (point-in-time) the damage recovery stopped at.
    public var droppedBecause: WALReader.Failure?
    public var millis: Int64 = 0
}

/// A snapshot recovery did not use, and why.
public struct SnapshotRejection: Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var problem: SnapshotProblem
    public var description: String { "\(path): \(problem)" }
}

/// What stops start-up: the data directory is damaged beyond a torn tail, or unusable
/// (docs/operations.md, "Refusals"). Each case carries what the operator needs, a stable
/// `code` and a human `description`.
public enum RecoveryProblem: Sendable, Equatable, CustomStringConvertible {
    /// The log is damaged (file, offset and what, in the failure).
    case log(WALReader.Failure)
    case snapshotsUnlistable(FileError)
    /// `path` holds no `credits.meta`.
    case notDataDirectory(path: String)
    case metaUnreadable(FileError)
    /// `credits.meta` is not exactly "format 1" and "shards N" with N in 1...shardCountMax.
    case metaInvalid(path: String, MetaDefect)
    case shardCountMismatch(directory: Int, configured: Int)
    /// A directory the layout requires (a shard's, or its snapshot directory) is gone.
    case shardDirectoryMissing(path: String)
    /// A shard directory beyond the shard count `credits.meta` names.
    case shardDirectoryUnexpected(path: String)
    case createFailed(FileError)
    case invariantsBroken([String])
    /// Preparing the log for appending failed (after every shard recovered).
    case logOpenFailed(FileError)
    /// The file at `path` is sealed with data key `keyID` (16 hex digits: the first 8 bytes
    /// of the key's SHA-256), which is not among the keys given. Nothing was changed.
    case keyUnavailable(keyID: String, path: String)

    /// A stable machine-readable name.
    public var code: String {
        switch self {
        case .log(let failure): failure.code
        case .snapshotsUnlistable: "snapshots_unlistable"
        case .notDataDirectory: "not_a_data_directory"
        case .metaUnreadable(let error): error.isNotRegularFile ? "meta_not_regular_file"
            : error.isTooLarge ? "meta_too_large" : "meta_unreadable"
        case .metaInvalid: "meta_invalid"
        case .shardCountMismatch: "shard_count_mismatch"
        case .shardDirectoryMissing: "shard_missing"
        case .shardDirectoryUnexpected: "shard_unexpected"
        case .createFailed: "create_failed"
        case .invariantsBroken: "invariants_broken"
        case .logOpenFailed: "log_open_failed"
        case .keyUnavailable: "data_key_missing"
        }
    }

    public var description: String {
        switch self {
        case .log(let failure): failure.description
        case .snapshotsUnlistable(let error): "cannot list snapshots: \(error)"
        case .notDataDirectory(let path): "\(path) is not a data directory (no credits.meta)"
        case .metaUnreadable(let error): "cannot read credits.meta: \(error)"
        case .metaInvalid(let path, let defect): "\(path) is not a data directory of this format: \(defect)"
        case .shardCountMismatch(let directory, let configured):
            "the directory holds \(directory) shards; the engine was configured with \(configured)"
        case .shardDirectoryMissing(let path): "\(path) is missing (records may be lost)"
        case .shardDirectoryUnexpected(let path): "\(path) is beyond the shard count credits.meta names (was it edited?)"
        case .createFailed(let error): "cannot create the data directory: \(error)"
        case .invariantsBroken(let problems): "recovered state breaks invariants: \(problems.prefix(3).joined(separator: "; "))"
        case .logOpenFailed(let error): "cannot prepare the log for appending: \(error)"
        case .keyUnavailable(let keyID, let path):
            "\(path) is sealed with data key \(keyID), which is not among the keys given (a wrong or missing --data-key); nothing was changed"
        }
    }
}

/// What is wrong with a `credits.meta`.
public enum MetaDefect: Error, Sendable, Equatable, CustomStringConvertible {
    /// A line that is not "format N" or "shards N" (N decimal).
    case malformedLine(String)
    /// The same key twice ("shards 2" and "shards 4": which is it?).
    case duplicateKey(String)
    case missingKey(String)
    case unsupportedFormat(Int)
    case shardCountOutOfRange(Int)

    public var description: String {
        switch self {
        case .malformedLine(let line): "unexpected line \(line.debugDescription)"
        case .duplicateKey(let key): "\(key) is given twice"
        case .missingKey(let key): "no \(key) line"
        case .unsupportedFormat(let format): "format \(format) is not supported by this build"
        case .shardCountOutOfRange(let count): "shard count \(count) is outside 1...\(StorageLimits.shardCountMax)"
        }
    }
}

/// Something that stops start-up: the data directory is damaged beyond a torn tail (or
/// unusable), and the operator must decide (docs/operations.md).
public struct RecoveryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The shard it concerns (nil: the whole directory).
    public var shard: Int?
    public var problem: RecoveryProblem

    public init(shard: Int?, _ problem: RecoveryProblem) {
        self.shard = shard
        self.problem = problem
    }

    /// The problem's stable machine-readable name.
    public var code: String { problem.code }
    /// The log damage that stopped recovery, if that is what did.
    public var logFailure: WALReader.Failure? { if case .log(let failure) = problem { failure } else { nil } }
    /// See `WALReader.Failure.logStartPruned`.
    public var logStartPruned: Bool { logFailure?.logStartPruned ?? false }
    public var description: String { (shard.map { "shard \($0): " } ?? "") + problem.description }
}

@_spi(Plumbing) public enum ShardStorage {
    /// Rebuilds one shard's ledger: the newest snapshot that verifies (falling back to older
    /// ones, each rejection reported), then the log after it. `visit` sees every replayed
    /// record with the entry it made (for `export`). Read-only: nothing on disk changes.
    /// Records replayed per batch call during recovery.
    static let replayRunLength = 512

    @_spi(Plumbing) public static func recover(shard: Int, shardCount: Int, storage: StorageConfiguration,
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

        try checkShardDirectories(shard: shard, storage: storage)
        if !fromLogStart {
            let names: [String]
            do { names = try SnapshotFile.list(directory: storage.snapshotDirectory(shard), fileSystem: fileSystem) } catch {
                throw RecoveryError(shard: shard, .snapshotsUnlistable(error))
            }
            for name in names {
                let path = storage.snapshotDirectory(shard) + "/" + name
                do {
                    let (header, restored) = try SnapshotFile.read(path: path, fileSystem: fileSystem, configuration: configuration,
                                                                   keys: storage.encryption)
                    guard header.shardIndex == UInt32(shard), header.shardCount == UInt32(shardCount),
                          SnapshotFile.lsn(ofNamed: name) == header.lsn else {
                        report.snapshotsRejected.append(SnapshotRejection(
                            path: path, problem: .misplaced(shard: header.shardIndex, shardCount: header.shardCount, lsn: header.lsn)))
                        continue
                    }
                    ledger = restored
                    afterLSN = header.lsn
                    chain = header.chain
                    report.snapshot = name
                    report.snapshotLSN = header.lsn
                    report.snapshotBytes = header.fileBytes
                    break
                } catch {
                    // A missing key is not damage: falling back to an older snapshot would hide
                    // it. Start-up stops, naming the key, before anything changes.
                    if case .keyUnavailable(let keyID) = error {
                        throw RecoveryError(shard: shard, .keyUnavailable(keyID: keyID, path: path))
                    }
                    report.snapshotsRejected.append(SnapshotRejection(path: path, problem: error))
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
                                           fileSystem: fileSystem, shard: UInt32(shard), shardCount: UInt32(shardCount),
                                           afterLSN: afterLSN, chain: chain,
                                           mode: storage.recovery, keys: storage.encryption) { entry in
                guard entry.time >= lastTime else {
                    throw WALReader.Failure(file: storage.walDirectory(shard), offset: 0,
                                            problem: .timeOutOfOrder(lsn: entry.lsn, time: entry.time, previous: lastTime))
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
            if case .keyUnavailable(let keyID) = failure.problem {
                throw RecoveryError(shard: shard, .keyUnavailable(keyID: keyID, path: failure.file))
            }
            throw RecoveryError(shard: shard, .log(failure))
        } catch {
            // The reader and the replay throw nothing else.
            preconditionFailure("unexpected error from the log reader: \(error)")
        }
        report.recordsReplayed = walReport.recordsVisited
        report.lastLSN = walReport.lastLSN
        report.tornBytesDropped = walReport.droppedBytes
        report.tornRecordsDropped = walReport.droppedRecords
        report.segmentsDropped = walReport.droppedSegments
        report.droppedBecause = walReport.droppedBecause
        let problems = ledger.invariantViolations()
        guard problems.isEmpty else {
            throw RecoveryError(shard: shard, .invariantsBroken(problems))
        }
        report.millis = monotonicMillis() - started
        return (ledger, walReport, report)
    }

    /// Rewrites every snapshot of `shard` sealed with another key than the ring's newest (or
    /// not sealed) under the newest key (`credits rekey`): the compressed frame is opened and
    /// sealed again with a fresh salt, then stored like any snapshot (temporary file, sync,
    /// rename). Returns the snapshots rewritten and those left as they were because they do
    /// not verify (recovery already falls back past those).
    package static func resealSnapshots(shard: Int, storage: StorageConfiguration) throws
        -> (rewritten: Int, skipped: [SnapshotRejection]) {
        guard let ring = storage.encryption else { return (0, []) }
        let fileSystem = storage.fileSystem
        let directory = storage.snapshotDirectory(shard)
        var rewritten = 0
        var skipped: [SnapshotRejection] = []
        for name in try SnapshotFile.list(directory: directory, fileSystem: fileSystem) {
            let path = directory + "/" + name
            let header: SnapshotHeader
            let frame: [UInt8]
            do throws(SnapshotProblem) {
                (header, frame) = try SnapshotFile.frame(of: try SnapshotFile.readBytes(path: path, fileSystem: fileSystem), keys: ring)
            } catch {
                if case .keyUnavailable(let keyID) = error { throw RecoveryError(shard: shard, .keyUnavailable(keyID: keyID, path: path)) }
                skipped.append(SnapshotRejection(path: path, problem: error))
                continue
            }
            if header.isSealed, header.keyID == ring.newestID { continue }
            var plain = header
            plain.version = SnapshotHeader.version
            plain.frameBytes = UInt64(frame.count)
            let (sealed, body) = SnapshotFile.seal(plain, frame: frame, keys: ring)
            try SnapshotFile.store(header: sealed, body: body, directory: directory, fileSystem: fileSystem)
            rewritten += 1
        }
        return (rewritten, skipped)
    }

    /// The shard count of an existing data directory, nil if `storage.directory` is not one
    /// (yet).
    package static func existingShardCount(storage: StorageConfiguration) throws(RecoveryError) -> Int? {
        guard storage.fileSystem.fileExists(storage.metaPath) else { return nil }
        return try prepare(storage: storage, shardCount: 0, create: false)
    }

    /// Creates the directory layout for a new data directory, or checks an existing one's
    /// format and shard count. Returns the shard count to use.
    @_spi(Plumbing) public static func prepare(storage: StorageConfiguration, shardCount requested: Int, create: Bool) throws(RecoveryError) -> Int {
        let fileSystem = storage.fileSystem
        if fileSystem.fileExists(storage.metaPath) {
            let bytes: [UInt8]
            do { bytes = try fileSystem.readFile(storage.metaPath, bytesMax: StorageLimits.metaBytesMax) } catch {
                throw RecoveryError(shard: nil, .metaUnreadable(error))
            }
            let shards: Int
            do { shards = try parseMeta(bytes) } catch { throw RecoveryError(shard: nil, .metaInvalid(path: storage.metaPath, error)) }
            try checkNoShardBeyond(shards, storage: storage)
            return shards
        }
        guard create else { throw RecoveryError(shard: nil, .notDataDirectory(path: storage.directory)) }
        precondition(requested >= 1 && requested <= StorageLimits.shardCountMax, "shard count out of range")
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
            throw RecoveryError(shard: nil, .createFailed(error))
        }
        return requested
    }

    /// The shard count of a `credits.meta`: exactly one "format 1" line and one "shards N"
    /// line, N in 1...shardCountMax, nothing else (blank lines aside).
    static func parseMeta(_ bytes: [UInt8]) throws(MetaDefect) -> Int {
        var values: [String: Int] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == "format" || parts[0] == "shards",
                  parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(parts[1]) else {
                throw .malformedLine(String(line.prefix(80)))
            }
            let key = String(parts[0])
            guard values[key] == nil else { throw .duplicateKey(key) }
            values[key] = value
        }
        guard let format = values["format"] else { throw .missingKey("format") }
        guard format == 1 else { throw .unsupportedFormat(format) }
        guard let shards = values["shards"] else { throw .missingKey("shards") }
        guard shards >= 1, shards <= StorageLimits.shardCountMax else { throw .shardCountOutOfRange(shards) }
        return shards
    }

    /// A shard directory beyond the count means the count was changed under the data: its
    /// records would be silently ignored.
    static func checkNoShardBeyond(_ shardCount: Int, storage: StorageConfiguration) throws(RecoveryError) {
        guard let names = try? storage.fileSystem.contentsOfDirectory(storage.directory) else { return }
        for name in names where name.hasPrefix("shard-") {
            guard let index = Int(name.dropFirst("shard-".count)), index >= shardCount else { continue }
            throw RecoveryError(shard: nil, .shardDirectoryUnexpected(path: storage.directory + "/" + name))
        }
    }

    /// Every directory of the shard's layout exists: `prepare` creates them all before it
    /// writes `credits.meta`, so a missing one was removed, with whatever it held.
    static func checkShardDirectories(shard: Int, storage: StorageConfiguration) throws(RecoveryError) {
        for path in [storage.shardDirectory(shard), storage.walDirectory(shard), storage.snapshotDirectory(shard),
                     storage.archiveDirectory(shard)] where !storage.fileSystem.fileExists(path) {
            throw RecoveryError(shard: shard, .shardDirectoryMissing(path: path))
        }
    }

    /// Verifies a shard's whole log, read-only, as `credits wal verify` does: every directory
    /// of the layout, every segment from the log's start, and that the log reaches the newest
    /// snapshot's LSN (by its name: the snapshot itself is `SnapshotFile.read`'s to check).
    package static func verifyLog(shard: Int, shardCount: Int, storage: StorageConfiguration) throws(RecoveryError) -> WALReader.Report {
        try checkShardDirectories(shard: shard, storage: storage)
        let newest: UInt64
        do {
            newest = try SnapshotFile.list(directory: storage.snapshotDirectory(shard), fileSystem: storage.fileSystem)
                .first.flatMap(SnapshotFile.lsn(ofNamed:)) ?? 0
        } catch {
            throw RecoveryError(shard: shard, .snapshotsUnlistable(error))
        }
        let report: WALReader.Report
        do {
            report = try WALReader.read(directories: [storage.archiveDirectory(shard), storage.walDirectory(shard)],
                                        fileSystem: storage.fileSystem, shard: UInt32(shard), shardCount: UInt32(shardCount),
                                        keys: storage.encryption) { _ in }
        } catch let failure as WALReader.Failure {
            if case .keyUnavailable(let keyID) = failure.problem {
                throw RecoveryError(shard: shard, .keyUnavailable(keyID: keyID, path: failure.file))
            }
            throw RecoveryError(shard: shard, .log(failure))
        } catch {
            preconditionFailure("unexpected error from the log reader: \(error)")
        }
        if report.segments.isEmpty, newest > 0 {
            throw RecoveryError(shard: shard, .log(WALReader.Failure(
                file: storage.walDirectory(shard), offset: 0, problem: .liveSegmentMissing(snapshotLSN: newest, archivedSegments: 0))))
        }
        guard report.lastLSN >= newest else {
            throw RecoveryError(shard: shard, .log(WALReader.Failure(
                file: storage.walDirectory(shard), offset: 0, problem: .logBehindSnapshot(snapshotLSN: newest, logLSN: report.lastLSN))))
        }
        return report
    }

    /// Gives a shard whose live log holds no segment, though it has records (point-in-time
    /// recovery accepted a lost or emptied segment under its snapshot), the empty segment
    /// its next record starts: the live log is never empty once records exist, so a later
    /// strict start-up finds the directory consistent instead of refusing it again. The
    /// header is the one the log writer gives that segment when it appends there (it
    /// rewrites the same bytes), so calling this after the writer opened changes nothing
    /// it relies on.
    package static func startEmptyLiveSegment(shard: Int, shardCount: Int, storage: StorageConfiguration,
                                             after report: WALReader.Report) throws(FileError) {
        let fileSystem = storage.fileSystem
        let directory = storage.walDirectory(shard)
        guard report.lastLSN > 0, try fileSystem.contentsOfDirectory(directory).allSatisfy({ WALFormat.firstLSN(ofSegmentNamed: $0) == nil })
        else { return }
        let header = SegmentHeader(shardIndex: UInt32(shard), shardCount: UInt32(shardCount), firstLSN: report.lastLSN + 1,
                                   previousChecksum: report.lastChecksum, segmentSize: UInt64(storage.log.segmentSize),
                                   unsyncedBytesMax: UInt64(storage.log.unsyncedBytesMax))
        let file = try fileSystem.open(directory + "/" + WALFormat.segmentName(firstLSN: header.firstLSN), create: true)
        defer { file.close() }
        try file.preallocate(Int64(storage.log.segmentSize))
        try file.write(header.encoded(), at: 0)
        try file.sync()
        try fileSystem.syncDirectory(directory)
    }

    /// After a snapshot at `lsn`: keeps the newest `snapshotsKept` snapshots and moves log
    /// segments wholly before the oldest kept snapshot to the archive (pruning the archive
    /// to `archivedSegmentsKept` if set).
    package static func retire(shard: Int, storage: StorageConfiguration, currentSegmentFirstLSN: UInt64) throws(FileError) {
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
