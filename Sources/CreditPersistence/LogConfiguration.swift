/// How long an acknowledged command may wait before its record is on disk.
public enum Durability: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Acknowledge after the record is synced (fdatasync). Commands arriving while a sync
    /// runs share the next one (group commit). Nothing acknowledged is ever lost.
    case strict
    /// Acknowledge at once; sync every `syncIntervalMillis`. A crash loses the commands of
    /// the last interval (and of the sync in progress) while the writer keeps up, and never
    /// more than `LogConfiguration.lossBytesMax(appendBytesMax:)` of records when it does not.
    case interval
    /// Acknowledge at once; the log is written in the background and synced only when
    /// `unsyncedBytesMax` would be exceeded. A crash may lose up to
    /// `LogConfiguration.lossBytesMax(appendBytesMax:)` of records.
    case none

    public var description: String { rawValue }
}

public struct LogConfiguration: Sendable, Equatable {
    public var durability: Durability
    /// Size of each preallocated segment file.
    public var segmentSize: Int
    /// The writer syncs before it has more than this many bytes written but not synced;
    /// recorded in each segment header, it bounds what a crash can tear (see WALReader).
    public var unsyncedBytesMax: Int
    /// Sync period of `.interval`.
    public var syncIntervalMillis: Int
    /// Strict mode: how long a writer waits, once it has records, for more to join the
    /// sync (like PostgreSQL's commit_delay). 0 syncs at once.
    public var commitDelayMicros: Int
    /// Back-pressure: records appended but not yet taken by the writer. An append starts
    /// only while fewer bytes than this are pending; otherwise the shard waits until the
    /// writer takes some (`ShardLog.waitForRoom`). So pending bytes stay below this plus one
    /// append (docs/operations.md, "Back-pressure and memory bounds").
    public var pendingBytesMax: Int
    /// The host's key that signs the audit chain's checkpoints (docs/audit.md): at every
    /// snapshot, every `auditCheckpointEveryRecords` records and on close. Nil: the chain is
    /// still written (it is always on) but nothing is signed. Never kept in the data directory.
    public var auditSigningKey: AuditSigningKey?
    /// Records between two interval checkpoints (with a signing key).
    public var auditCheckpointEveryRecords: Int = auditCheckpointEveryRecordsDefault
    public static let auditCheckpointEveryRecordsDefault = 100_000

    public static let segmentSizeDefault = 64 << 20
    public static let unsyncedBytesMaxDefault = 16 << 20
    /// As much as one writer round takes (`unsyncedBytesMaxDefault`): a writer that keeps up
    /// never makes an appender wait.
    public static let pendingBytesMaxDefault = 16 << 20

    public init(durability: Durability = .strict, segmentSize: Int = segmentSizeDefault,
                unsyncedBytesMax: Int = unsyncedBytesMaxDefault, syncIntervalMillis: Int = 10,
                commitDelayMicros: Int = commitDelayMicrosDefault, pendingBytesMax: Int = pendingBytesMaxDefault) {
        precondition(segmentSize >= StorageLimits.segmentBytesMin && segmentSize <= StorageLimits.segmentBytesMax,
                     "a segment must hold at least two records of the largest size, and readers load at most segmentBytesMax")
        precondition(unsyncedBytesMax >= StorageLimits.unsyncedBytesMaxLowest && unsyncedBytesMax <= StorageLimits.unsyncedBytesMaxHighest,
                     "unsyncedBytesMax must exceed two largest records and stay within what readers accept")
        precondition(syncIntervalMillis > 0)
        precondition(pendingBytesMax > 0)
        self.durability = durability
        self.segmentSize = segmentSize
        self.unsyncedBytesMax = unsyncedBytesMax
        self.syncIntervalMillis = syncIntervalMillis
        self.commitDelayMicros = commitDelayMicros
        self.pendingBytesMax = pendingBytesMax
    }

    /// The most bytes of acknowledged records a crash can lose in the `interval` and `none`
    /// modes, given the largest single append (`appendBytesMax`: one drain round of the
    /// engine, or one batch share): those written but not synced (`unsyncedBytesMax`) plus
    /// those pending (`pendingBytesMax` and the append that crossed it).
    public func lossBytesMax(appendBytesMax: Int) -> Int { unsyncedBytesMax + pendingBytesMax + appendBytesMax }

    /// 0: the engine's single-command calls queue while a sync runs and join the next one
    /// (SubmissionQueue), so groups form without waiting; a delay only lengthened each
    /// round (strict single calls on the 2-core machine: 400k/s at 0, 360k/s at 50 µs,
    /// 280k/s at 200 µs; docs/performance.md).
    public static let commitDelayMicrosDefault = 0

    /// Largest run of records the appender puts in one chunk (the writer writes whole
    /// chunks, so a chunk must stay well below `unsyncedBytesMax`).
    var chunkBytesTarget: Int { unsyncedBytesMax / 4 }
}

/// The log stopped: a write or sync failed. Never retried (PostgreSQL's fsync lesson: after
/// a failed fsync the kernel may have dropped the dirty pages, so a retry can "succeed"
/// without the data). The shard stops; a restart recovers from what is on disk.
public struct LogFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public var error: FileError
    public var description: String { "write-ahead log stopped: \(error)" }
}
