#if canImport(Glibc)
import Glibc
#endif
@_spi(Plumbing) import CreditCore

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
    private let fileSystem: any FileSystem
    private let lock = ConditionLock()
    /// The thread that writes and syncs this log (possibly shared with other logs).
    private let writer: LogWriter

    /// Someone waiting for records to become durable: a suspended task, or an action the
    /// writer thread runs (with nil, or the failure that stopped the log).
    private enum Waiter {
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
    private struct Chunk {
        var segmentFirstLSN: UInt64
        var newSegment: SegmentHeader?
        var offset: Int
        var bytes: ByteWriter
        var lastLSN: UInt64
    }

    // Appender state (the shard actor only).
    private var nextLSN: UInt64
    private var lastChecksum: UInt32
    private var appendSegmentFirstLSN: UInt64
    private var currentOffset: Int
    private var hasSegment: Bool
    /// Records being appended, and where each ends (reused between appends).
    private var encoded = ByteWriter(capacity: 64 * 1_024)
    private var encodedEnds: [Int] = []

    /// Whether fewer than `pendingBytesMax` bytes were pending after the last append. Only
    /// the writer lowers pending bytes, so true stays true until the next append; false
    /// may be stale (`waitForRoom` looks again under the lock).
    private var roomAfterAppend = true

    // Shared state (under `lock`).
    private var pending: [Chunk] = []
    /// Bytes of the records in `pending` (bounded by back-pressure; see `pendingBytesMax`).
    private var pendingBytes = 0
    /// The most bytes ever pending at once (for tests and statistics).
    private var pendingBytesHighWater = 0
    /// Appenders waiting for pending bytes to fall below `pendingBytesMax`.
    private var roomWaiters: [UnsafeContinuation<Void, Never>] = []
    /// Times an appender had to wait for room.
    private var roomWaitCount: UInt64 = 0
    /// `close` callers waiting for the writer to finish.
    private var closeWaiters: [UnsafeContinuation<Void, Never>] = []
    private var durableLSN: UInt64
    private var appendedLSN: UInt64
    private var waiters: [(lsn: UInt64, waiter: Waiter)] = []
    private var failure: LogFailure?
    private var stopping = false
    private var stopped = false
    /// Someone waits for a sync in a mode that does not sync on every write.
    private var syncRequested = false
    private var syncCount: UInt64 = 0
    private var syncedRecords: UInt64 = 0

    /// Opens the log for appending after recovery read it: `report` says where its last
    /// good record ended (the torn tail, if any, is zeroed here before anything is written).
    package init(directory: String, fileSystem: any FileSystem, shard: UInt32, shardCount: UInt32,
                configuration: LogConfiguration, resumingAfter report: WALReader.Report,
                writer: LogWriter? = nil) throws(LogFailure) {
        self.directory = directory
        self.fileSystem = fileSystem
        self.shard = shard
        self.shardCount = shardCount
        self.configuration = configuration
        nextLSN = report.lastLSN + 1
        lastChecksum = report.lastChecksum
        durableLSN = report.lastLSN
        appendedLSN = report.lastLSN
        if let tail = report.tailSegment, let first = WALFormat.firstLSN(ofSegmentNamed: tail) {
            appendSegmentFirstLSN = first
            currentOffset = report.tailOffset
            hasSegment = true
        } else {
            appendSegmentFirstLSN = nextLSN
            currentOffset = 0
            hasSegment = false
        }
        do {
            try Self.cleanTail(directory: directory, fileSystem: fileSystem, report: report)
        } catch {
            throw LogFailure(error: error)
        }
        self.writer = writer ?? LogWriter()
        self.writer.add(self)
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

    // MARK: Appending (shard actor)

    /// Appends a record for `command` applied at `time`; returns its LSN. The record is
    /// durable once `waitUntilDurable(lsn)` returns.
    @discardableResult
    package func append(_ command: Command, at time: Timestamp) -> UInt64 {
        append([command], at: time)
    }

    /// Appends one record per command of `commands` (those at `indices` when given), in
    /// order, all applied at `time`; returns the last LSN (the last appended before, when
    /// there is none). The records are encoded into a buffer the appender reuses, and
    /// handed to the writer under one lock.
    @discardableResult
    package func append(_ commands: [Command], at time: Timestamp, indices: [Int]? = nil) -> UInt64 {
        let synced = lock.withLock { durableLSN }
        encoded.removeAll(keepingCapacity: true)
        encodedEnds.removeAll(keepingCapacity: true)
        func encode(_ command: Command) {
            lastChecksum = WALRecord.append(command, at: time, lsn: nextLSN, previous: lastChecksum,
                                            syncedLSN: synced, to: &encoded)
            nextLSN += 1
            encodedEnds.append(encoded.count)
        }
        if let indices {
            for index in indices { encode(commands[index]) }
        } else {
            for command in commands { encode(command) }
        }
        if encodedEnds.isEmpty { return nextLSN - 1 }
        var newChunkStarted = false
        lock.withLock {
            var lsn = appendedLSN
            var start = 0
            encoded.bytes.withUnsafeBufferPointer { bytes in
                for end in encodedEnds {
                    lsn += 1
                    let size = end - start
                    var newSegment: SegmentHeader?
                    if !hasSegment || currentOffset + size > configuration.segmentSize {
                        // Roll over: the record goes first in a new segment, whose header
                        // repeats the record's chain link (the previous record's checksum).
                        let previous = UInt32(littleEndian: UnsafeRawBufferPointer(bytes).loadUnaligned(
                            fromByteOffset: start + WALFormat.previousChecksumOffset, as: UInt32.self))
                        newSegment = SegmentHeader(shardIndex: shard, shardCount: shardCount, firstLSN: lsn,
                                                   previousChecksum: previous,
                                                   segmentSize: UInt64(configuration.segmentSize),
                                                   unsyncedBytesMax: UInt64(configuration.unsyncedBytesMax))
                        appendSegmentFirstLSN = lsn
                        currentOffset = WALFormat.segmentHeaderSize
                        hasSegment = true
                    }
                    let record = UnsafeBufferPointer(rebasing: bytes[start ..< end])
                    if newSegment == nil, let last = pending.indices.last, pending[last].segmentFirstLSN == appendSegmentFirstLSN,
                       pending[last].bytes.count < configuration.chunkBytesTarget {
                        pending[last].bytes.write(bytes: record)
                        pending[last].lastLSN = lsn
                    } else {
                        var chunk = ByteWriter(capacity: max(size, 4_096))
                        chunk.write(bytes: record)
                        pending.append(Chunk(segmentFirstLSN: appendSegmentFirstLSN, newSegment: newSegment,
                                             offset: currentOffset, bytes: chunk, lastLSN: lsn))
                        // A first chunk (the writer may sleep with no timer set) or a full one.
                        newChunkStarted = true
                    }
                    pendingBytes += size
                    currentOffset += size
                    start = end
                }
            }
            appendedLSN = lsn
            pendingBytesHighWater = max(pendingBytesHighWater, pendingBytes)
            roomAfterAppend = pendingBytes < configuration.pendingBytesMax
        }
        // Strict: someone waits for these records. Otherwise the writer comes by itself (see
        // writerWork) once it knows there is a chunk: it is told when one starts.
        if configuration.durability == .strict || newChunkStarted { writer.wake() }
        return nextLSN - 1
    }

    /// The LSN of the last appended record.
    package var lastAppendedLSN: UInt64 { lock.withLock { appendedLSN } }

    // MARK: Back-pressure (shard actor)

    /// Whether an append may start now without `waitForRoom`. Shard actor only; no lock.
    package var mayAppend: Bool { roomAfterAppend }

    /// Suspends until fewer than `pendingBytesMax` bytes are pending (or the log stopped, so
    /// the caller finds out). The caller must append before it suspends again, so that each
    /// append starts below the bound and pending bytes never exceed it by more than one append.
    /// Shard actor only (`isolation`: it runs on the caller's actor).
    package func waitForRoom(isolation: isolated (any Actor)? = #isolation) async {
        while !roomAfterAppend {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let ready: Bool = lock.withLock {
                    if pendingBytes < configuration.pendingBytesMax || stopped { return true }
                    roomWaiters.append(continuation)
                    roomWaitCount += 1
                    return false
                }
                // Someone waits for the writer: it writes at once instead of after `writeDelayMillis`.
                if ready { continuation.resume() } else { writer.wake() }
            }
            // Another appender resumed with this one may have filled the room again.
            roomAfterAppend = lock.withLock { pendingBytes < configuration.pendingBytesMax || stopped }
        }
    }

    /// The most bytes ever pending at once, and how often an appender waited for room.
    var pendingStatistics: (bytesHighWater: Int, roomWaits: UInt64) { lock.withLock { (pendingBytesHighWater, roomWaitCount) } }

    /// Returns once the record `lsn` (and all before it) is durable under the configured
    /// mode: synced for `.strict`, written to the log's buffer for the others. Throws
    /// `LogFailure` if the log stopped before that.
    package func waitUntilDurable(_ lsn: UInt64) async throws(LogFailure) {
        if configuration.durability != .strict {
            if let failure = lock.withLock({ failure }) { throw failure }
            return
        }
        try await waitForSync(lsn, requestingOne: false)
    }

    /// Runs `action` once the record `lsn` (and all before it) is durable under the
    /// configured mode — at once, on the caller's thread, when it already is (always for
    /// the modes that do not wait for syncs); otherwise on the writer thread right after
    /// the sync. The action gets nil, or the failure that stopped the log. It must be
    /// short: it delays the writer's next round (resuming waiting tasks is the intended use).
    package func whenDurable(_ lsn: UInt64, _ action: @escaping @Sendable (LogFailure?) -> Void) {
        let ready: LogFailure?? = lock.withLock {
            if let failure { return .some(failure) }
            if configuration.durability != .strict || durableLSN >= lsn { return .some(nil) }
            waiters.append((lsn, .action(action)))
            return nil
        }
        if let ready { action(ready) }
    }

    /// Returns once the record `lsn` is synced, whatever the durability mode (a snapshot
    /// must never be newer than the synced log). Throws if the log stopped.
    package func waitUntilSynced(_ lsn: UInt64) async throws(LogFailure) {
        try await waitForSync(lsn, requestingOne: true)
    }

    /// Suspends until the record `lsn` is synced. `requestingOne`: in the modes that do not
    /// sync on every write, asks the writer for a sync now.
    private func waitForSync(_ lsn: UInt64, requestingOne: Bool) async throws(LogFailure) {
        do {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
                let ready: Result<Void, LogFailure>? = lock.withLock {
                    if let failure { return .failure(failure) }
                    if durableLSN >= lsn { return .success(()) }
                    waiters.append((lsn, .task(continuation)))
                    if requestingOne { syncRequested = true }
                    return nil
                }
                if let ready {
                    continuation.resume(with: ready.mapError { $0 as any Error })
                } else if requestingOne {
                    writer.wake()
                }
            }
        } catch let failure as LogFailure {
            throw failure
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
    }

    /// First LSN of the segment records are appended to now. Shard actor only.
    package var currentSegmentFirstLSN: UInt64 { appendSegmentFirstLSN }

    /// The checksum of the last appended record (the chain value a snapshot taken now
    /// records). Shard actor only.
    package var lastAppendedChecksum: UInt32 { lastChecksum }

    /// The failure that stopped the log, if any.
    package var stoppedBecause: LogFailure? { lock.withLock { failure } }

    /// Syncs performed and records they made durable (for the benchmark's counters).
    package var syncStatistics: (syncs: UInt64, records: UInt64) { lock.withLock { (syncCount, syncedRecords) } }

    /// Writes and syncs everything appended, then stops the writer thread.
    package func close() async {
        let last = lastAppendedLSN
        if configuration.durability == .strict { try? await waitUntilDurable(last) }
        // Suspended until the writer has finished the last flush (it resumes `closeWaiters`).
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let done: Bool = lock.withLock {
                stopping = true
                if stopped { return true }
                closeWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() } else { writer.wake() }
        }
        writer.remove(self)
    }

    /// Marks the log stopped (under `lock`) and returns the appenders and `close` callers to
    /// resume, outside the lock: nothing will be written any more.
    private func markStopped() -> [UnsafeContinuation<Void, Never>] {
        stopped = true
        defer {
            roomWaiters.removeAll()
            closeWaiters.removeAll()
        }
        return roomWaiters + closeWaiters
    }

    // MARK: Writing (the writer thread serving this log)

    // Writer state: only the writer thread touches these.
    private var openFiles: [UInt64: any WritableFile] = [:]
    private var unsyncedBytes = 0
    private var unsyncedFiles: Set<UInt64> = []
    private var unsyncedLastLSN: UInt64 = 0
    private var lastSyncMillis = monotonicMillis()
    private var writtenThisRound = false
    private var lastWriteMillis = monotonicMillis()
    private var moreWaitingThisRound = false
    private var closingThisRound = false

    /// Whether the writer has something to do for this log now; if not, in how many ms at
    /// the latest (a sync of written bytes coming due), nil for "only when woken".
    func writerWork(now: Int64) -> (ready: Bool, dueInMillis: Int?) {
        let (chunks, stop, requested, roomWanted) = lock.withLock {
            (pending.count, stopping && !stopped, syncRequested, !roomWaiters.isEmpty)
        }
        if stopped { return (false, nil) }
        if stop || (requested && (chunks > 0 || unsyncedBytes > 0)) || (roomWanted && chunks > 0) { return (true, nil) }
        if configuration.durability == .strict { return (chunks > 0, nil) }
        // interval and none: nobody waits for these records, so write them in bulk — when a
        // chunk is full or `writeDelayMillis` after the last write — and sync when due.
        var due: Int?
        if chunks > 1 { return (true, nil) }
        if chunks == 1 {
            let waited = Int(now - lastWriteMillis)
            if waited >= Self.writeDelayMillis { return (true, nil) }
            due = Self.writeDelayMillis - waited
        }
        if unsyncedBytes > 0 {
            let period = configuration.durability == .interval ? configuration.syncIntervalMillis : 1_000
            let waited = Int(now - lastSyncMillis)
            if waited >= period { return (true, nil) }
            due = min(due ?? (period - waited), period - waited)
        }
        return (false, due)
    }

    /// How long records of the interval and none modes may wait before they are written.
    static var writeDelayMillis: Int { 2 }

    /// First half of a writer round: takes whole chunks (as many as keep the unsynced
    /// bytes within `unsyncedBytesMax`) and writes them. No sync yet, so that one round
    /// writes every log before it waits for any disk.
    func writeRound() {
        var batch: [Chunk] = []
        var roomMade: [UnsafeContinuation<Void, Never>] = []
        lock.withLock {
            guard !stopped else { return }
            var bytes = unsyncedBytes
            var taken = 0
            while taken < pending.count, bytes + pending[taken].bytes.count <= configuration.unsyncedBytesMax {
                bytes += pending[taken].bytes.count
                taken += 1
            }
            // One removal per round: removing the chunks one at a time from the front was
            // quadratic in the chunks pending.
            batch = Array(pending.prefix(taken))
            pending.removeFirst(taken)
            pendingBytes -= bytes - unsyncedBytes
            assert(pendingBytes >= 0 && (pendingBytes == 0) == pending.isEmpty)
            if pendingBytes < configuration.pendingBytesMax {
                swap(&roomMade, &roomWaiters)
            }
            moreWaitingThisRound = !pending.isEmpty || syncRequested
            syncRequested = false
            closingThisRound = stopping && pending.isEmpty
        }
        for waiter in roomMade { waiter.resume() }
        writtenThisRound = !batch.isEmpty
        if writtenThisRound { lastWriteMillis = monotonicMillis() }
        do {
            for chunk in batch {
                let file = try segmentFile(for: chunk)
                try file.write(chunk.bytes.bytes, at: Int64(chunk.offset))
                unsyncedBytes += chunk.bytes.count
                unsyncedFiles.insert(chunk.segmentFirstLSN)
                unsyncedLastLSN = chunk.lastLSN
            }
        } catch {
            stop(because: LogFailure(error: error))
        }
    }

    /// Second half: syncs what is due under the durability mode and wakes the callers
    /// whose records it made durable. Returns false once the log has stopped for good.
    @discardableResult
    func syncRound() -> Bool {
        if lock.withLock({ stopped }) { return false }
        let sinceSync = Int(monotonicMillis() - lastSyncMillis)
        let due = unsyncedBytes > 0 && (configuration.durability == .strict || moreWaitingThisRound || closingThisRound
            || (configuration.durability == .interval && sinceSync >= configuration.syncIntervalMillis)
            || (configuration.durability == .none && (!writtenThisRound || sinceSync >= 1_000)))
        do {
            if due {
                for first in unsyncedFiles.sorted() { try openFiles[first]?.sync() }
                // Segments before the newest are complete: close them.
                if let newest = openFiles.keys.max() {
                    for (first, file) in openFiles where first != newest { file.close(); openFiles[first] = nil }
                }
                unsyncedFiles.removeAll()
                unsyncedBytes = 0
                lastSyncMillis = monotonicMillis()
                let synced = unsyncedLastLSN
                lock.withLock {
                    syncCount += 1
                    syncedRecords += synced - durableLSN
                    durableLSN = synced
                }
                resumeWaiters(upTo: synced)
            }
        } catch {
            stop(because: LogFailure(error: error))
            return false
        }
        if closingThisRound && unsyncedBytes == 0 {
            for file in openFiles.values { file.close() }
            openFiles.removeAll()
            for waiter in lock.withLock({ markStopped() }) { waiter.resume() }
            return false
        }
        return true
    }

    private func resumeWaiters(upTo lsn: UInt64) {
        // Waiters register outside the shard actor, so their LSNs need not be in order.
        let ready: [Waiter] = lock.withLock {
            var ready: [Waiter] = []
            waiters.removeAll { waiting in
                guard waiting.lsn <= lsn else { return false }
                ready.append(waiting.waiter)
                return true
            }
            return ready
        }
        for waiter in ready { waiter.resume(nil) }
    }

    private func stop(because failure: LogFailure) {
        let (waiting, appenders): ([Waiter], [UnsafeContinuation<Void, Never>]) = lock.withLock {
            self.failure = failure
            defer { waiters.removeAll() }
            return (waiters.map(\.waiter), markStopped())
        }
        for waiter in waiting { waiter.resume(failure) }
        for appender in appenders { appender.resume() }
        for file in openFiles.values { file.close() }
        openFiles.removeAll()
    }

    /// The open file of a chunk's segment; a new segment is created, preallocated, given
    /// its header and made durable (file and directory) before any record goes into it.
    private func segmentFile(for chunk: Chunk) throws(FileError) -> any WritableFile {
        if let file = openFiles[chunk.segmentFirstLSN] { return file }
        let path = directory + "/" + WALFormat.segmentName(firstLSN: chunk.segmentFirstLSN)
        if let header = chunk.newSegment {
            let file = try fileSystem.open(path, create: true)
            try file.preallocate(Int64(configuration.segmentSize))
            try file.write(header.encoded(), at: 0)
            try file.sync()
            try fileSystem.syncDirectory(directory)
            openFiles[chunk.segmentFirstLSN] = file
            return file
        }
        let file = try fileSystem.open(path, create: false)
        openFiles[chunk.segmentFirstLSN] = file
        return file
    }
}
