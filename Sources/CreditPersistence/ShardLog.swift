#if canImport(Glibc)
import Glibc
#endif
import Crypto
@_spi(Plumbing) import CreditCore

/// The write-ahead log of one shard: the shard actor appends records (in memory, cheap);
/// a dedicated thread writes them to the segment files and syncs them, and wakes the
/// callers waiting for their records to be durable.
///
/// Appending and waiting are separate so that a batch of commands waits once, and so
/// that commands arriving during a sync are written together by the next one (group
/// commit).
///
/// The records between the two are bounded: an appender checks `mayAppend` and, when it is
/// false, suspends in `waitForRoom` until the writer has taken enough of them
/// (`LogConfiguration.pendingBytesMax`). So a writer that falls behind slows its appenders
/// down instead of letting memory, and what a power cut loses, grow.
package final class ShardLog: @unchecked Sendable {
    // @unchecked: all mutable state below is guarded by `lock`, except the appender's
    // position fields (`next*`, `current*`), which only the owning shard actor touches.

    package let directory: String
    package let shard: UInt32
    package let shardCount: UInt32
    package let configuration: LogConfiguration
    let fileSystem: any FileSystem
    let lock = ConditionLock()
    /// The thread that writes and syncs this log (possibly shared with other logs).
    let writer: LogWriter

    /// Someone waiting for records to become durable: a suspended task, or an action the
    /// writer thread runs (with nil, or the failure that stopped the log).
    enum Waiter {
        case task(UnsafeContinuation<Void, any Error>)
        case action(@Sendable (LogFailure?) -> Void)

        func resume(_ failure: LogFailure?) {
            switch self {
            case .task(let continuation):
                if let failure { continuation.resume(throwing: failure) } else { continuation.resume() }
            case .action(let action):
                action(failure)
            }
        }
    }

    /// A run of records bound for one segment, starting at `offset`.
    struct Chunk {
        var segmentFirstLSN: UInt64
        var newSegment: SegmentHeader?
        var offset: Int
        var bytes: ByteWriter
        var lastLSN: UInt64
        /// The last audit seal in the chunk (what a checkpoint can sign once it is synced).
        var seal: SealedHead?
    }

    /// The audit chain's head after a seal: the LSN it covers up to and the batch's time.
    struct SealedHead {
        var lsn: UInt64
        var time: Timestamp
        var head: [UInt8]
    }

    // Appender state (the shard actor only).
    var nextLSN: UInt64
    var lastChecksum: UInt32
    var appendSegmentFirstLSN: UInt64
    var currentOffset: Int
    var hasSegment: Bool
    /// Records being appended, and where each ends (reused between appends).
    var encoded = ByteWriter(capacity: 64 * 1_024)
    var encodedEnds: [Int] = []
    /// The audit chain (docs/audit.md): the head of the last seal, and the bytes of records
    /// recovery found after it (a crash came before their seal), which the next seal covers
    /// first, from `auditCarryFirstLSN`.
    var auditHead: [UInt8]
    var auditCarry: [UInt8]
    var auditCarryFirstLSN: UInt64?
    /// Sealing (docs/encryption.md): the shard's log subkey under the newest data key (nil:
    /// not sealing, version 2 segments), that key's id, the generation of the segment frames
    /// go to, and the highest generation this shard has given a segment.
    var sealKey: SymmetricKey?
    var sealingKeyID: UInt64 = 0
    var segmentGeneration: UInt32 = 0
    var highestGeneration: UInt32 = 0
    /// The batch's frames and seal as they go to disk, where each frame ends and goes, and
    /// the compression buffer (all reused between appends).
    var framed = ByteWriter(capacity: 64 * 1_024)
    var framePlacements: [FramePlacement] = []
    var compressed: [UInt8] = []

    /// Where a frame goes: its segment, offset, the header of the segment it starts (if
    /// any), where it ends in `framed`, and its last LSN.
    struct FramePlacement {
        var segmentFirstLSN: UInt64
        var offset: Int
        var newSegment: SegmentHeader?
        var end: Int
        var lastLSN: UInt64
    }

    /// Whether fewer than `pendingBytesMax` bytes were pending after the last append. Only
    /// the writer lowers pending bytes, so true stays true until the next append; false
    /// may be stale (`waitForRoom` looks again under the lock).
    var roomAfterAppend = true

    // Shared state (under `lock`).
    var pending: [Chunk] = []
    /// Bytes of the records in `pending` (bounded by back-pressure; see `pendingBytesMax`).
    var pendingBytes = 0
    /// The most bytes ever pending at once (for tests and statistics).
    var pendingBytesHighWater = 0
    /// Appenders waiting for pending bytes to fall below `pendingBytesMax`.
    var roomWaiters: [UnsafeContinuation<Void, Never>] = []
    /// Times an appender had to wait for room.
    var roomWaitCount: UInt64 = 0
    /// `close` callers waiting for the writer to finish.
    var closeWaiters: [UnsafeContinuation<Void, Never>] = []
    var durableLSN: UInt64
    var appendedLSN: UInt64
    var waiters: [(lsn: UInt64, waiter: Waiter)] = []
    var failure: LogFailure?
    var stopping = false
    var stopped = false
    /// Someone waits for a sync in a mode that does not sync on every write.
    var syncRequested = false
    var syncCount: UInt64 = 0
    var syncedRecords: UInt64 = 0
    /// Snapshots waiting for the writer to sign a checkpoint of the synced head at (at least)
    /// their LSN (a signing key configured).
    var checkpointWaiters: [(lsn: UInt64, waiter: UnsafeContinuation<Void, Never>)] = []

    // Writer state: only the writer thread touches these.
    var openFiles: [UInt64: any WritableFile] = [:]
    var unsyncedBytes = 0
    var unsyncedFiles: Set<UInt64> = []
    var unsyncedLastLSN: UInt64 = 0
    var lastSyncMillis = monotonicMillis()
    var writtenThisRound = false
    var lastWriteMillis = monotonicMillis()
    var moreWaitingThisRound = false
    var closingThisRound = false
    /// The last seal written but not synced, and the last synced (what a checkpoint signs).
    var unsyncedSeal: SealedHead?
    var durableSeal: SealedHead?
    /// The shard's checkpoints file (a signing key configured).
    var checkpoints: AuditCheckpointFile?

    /// Opens the log for appending after recovery read it: `report` says where its last
    /// good record ended (the torn tail, if any, is zeroed here before anything is written).
    package init(directory: String, fileSystem: any FileSystem, shard: UInt32, shardCount: UInt32,
                configuration: LogConfiguration, resumingAfter report: WALReader.Report,
                keys: EncryptionKeyRing? = nil, writer: LogWriter? = nil) throws(LogFailure) {
        self.directory = directory
        self.fileSystem = fileSystem
        self.shard = shard
        self.shardCount = shardCount
        self.configuration = configuration
        nextLSN = report.lastLSN + 1
        lastChecksum = report.lastChecksum
        durableLSN = report.lastLSN
        appendedLSN = report.lastLSN
        auditHead = report.auditHead ?? AuditChain.seed(shard: shard, shardCount: shardCount)
        auditCarry = report.auditCarry
        auditCarryFirstLSN = report.auditCarryFirstLSN
        if let lsn = report.auditHeadLSN, let head = report.auditHead, report.auditCarryFirstLSN == nil {
            durableSeal = SealedHead(lsn: lsn, time: report.auditHeadTime, head: head)
        }
        // Seals go only into version 2 segments: after a version 1 tail, the next record
        // starts a new segment.
        if let tail = report.tailSegment, let first = WALFormat.firstLSN(ofSegmentNamed: tail), report.tailVersion >= 2 {
            appendSegmentFirstLSN = first
            currentOffset = report.tailOffset
            hasSegment = true
        } else {
            appendSegmentFirstLSN = nextLSN
            currentOffset = 0
            hasSegment = false
        }
        do {
            if let keys, let key = keys.bytes(of: keys.newestID) {
                // Sealed: always a new segment, with a generation above every segment this
                // shard made. A torn tail's LSNs are written again with other contents: in a
                // new generation, their nonces are new (docs/encryption.md).
                sealingKeyID = keys.newestID
                sealKey = Sealing.logKey(key, shard: shard)
                highestGeneration = try Self.highestGeneration(walDirectory: directory, fileSystem: fileSystem)
                hasSegment = false
                appendSegmentFirstLSN = nextLSN
                currentOffset = 0
            } else if report.tailVersion == WALFormat.sealedVersion {
                // Not sealing any more (no key given): plain records go to a new, plain segment.
                hasSegment = false
                appendSegmentFirstLSN = nextLSN
                currentOffset = 0
            }
            try Self.cleanTail(directory: directory, fileSystem: fileSystem, report: report)
            if let key = configuration.auditSigningKey {
                checkpoints = try AuditCheckpointFile(walDirectory: directory, fileSystem: fileSystem, key: key,
                                                      shard: shard, shardCount: shardCount)
            }
        } catch {
            throw LogFailure(error: error)
        }
        self.writer = writer ?? LogWriter()
        self.writer.add(self)
    }

    /// The highest generation of a sealed segment of the shard: in the live log `walDirectory`
    /// (set-aside `*.dropped` segments included) and in its archive beside it. Only headers
    /// are read.
    static func highestGeneration(walDirectory: String, fileSystem: any FileSystem) throws(FileError) -> UInt32 {
        var highest: UInt32 = 0
        var directories = [walDirectory]
        if walDirectory.hasSuffix("/wal") {
            let archive = String(walDirectory.dropLast(4)) + "/archive"
            if fileSystem.fileExists(archive) { directories.append(archive) }
        }
        for directory in directories {
            for name in try fileSystem.contentsOfDirectory(directory) {
                let segment = name.hasSuffix(".dropped") ? String(name.dropLast(".dropped".count)) : name
                guard WALFormat.firstLSN(ofSegmentNamed: segment) != nil else { continue }
                let file = try fileSystem.open(directory + "/" + name, create: false)
                defer { file.close() }
                guard let bytes = try? file.read(at: 0, count: WALFormat.segmentHeaderSize),
                      let header = try? SegmentHeader(decoding: bytes) else { continue }
                highest = max(highest, header.generation)
            }
        }
        return highest
    }

    /// Makes the log end where recovery decided it ends: zeroes the cut-off bytes of the
    /// tail segment (so they cannot be mistaken for records later) and sets aside segments
    /// holding nothing to keep (renamed to `*.dropped`, kept for inspection).
    private static func cleanTail(directory: String, fileSystem: any FileSystem, report: WALReader.Report) throws(FileError) {
        if report.droppedBytes > 0, let tail = report.tailSegment {
            let file = try fileSystem.open(directory + "/" + tail, create: false)
            defer { file.close() }
            let size = try fileSystem.size(of: directory + "/" + tail)
            let length = Int(size) - report.tailOffset
            if length > 0 {
                let zeros = [UInt8](repeating: 0, count: length)
                try file.write(zeros, at: Int64(report.tailOffset))
                try file.sync()
            }
        }
        for name in report.droppedSegments {
            try fileSystem.rename(directory + "/" + name, to: directory + "/" + name + ".dropped")
        }
        if !report.droppedSegments.isEmpty { try fileSystem.syncDirectory(directory) }
    }
}
