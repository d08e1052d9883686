#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Synchronization
import Testing
@testable import CreditPersistence
import DurabilityTestSupport
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

// Shared helpers of the durability tests (WAL, torn tail, corruption, power loss, recovery
// equivalence): a seeded random command workload, a "shard without the engine" that applies
// commands to a ledger and appends the recorded ones to a `ShardLog`, and a file system whose
// syncs a test can hold at a chosen moment.
//
// Randomized tests print their seed; CREDITS_TEST_SEED=<seed> replays one.

/// A command whose record is about `bytes` long: an adjustment of an unknown account with a
/// long reason (rejected, but logged like every recorded command). Fills segments quickly.
func bulkyCommand(key: IdempotencyKey, bytes: Int = 1_000_000) -> Command {
    Command(key: key, .adjust(AccountID(tenant: TenantID(999_999), number: 0), Millicredits(1),
                              reason: String(repeating: "x", count: bytes)))
}

// MARK: - A shard without the engine

/// One logged record: the command and the time it was applied at. Its LSN is its index + 1.
struct LoggedRecord: Sendable {
    let command: Command
    let time: Timestamp
}

/// The smallest log configuration `LogConfiguration` accepts: 8 MiB + 64-byte segments.
func smallLogConfiguration(_ durability: Durability = .strict, unsyncedBytesMax: Int = 2 * WALFormat.recordSizeMax,
                           segmentSize: Int = WALFormat.segmentHeaderSize + 2 * WALFormat.recordSizeMax) -> LogConfiguration {
    LogConfiguration(durability: durability, segmentSize: segmentSize, unsyncedBytesMax: unsyncedBytesMax)
}

/// A one-shard data directory on a simulated disk, with helpers to drive its log the way a
/// shard does and to recover it.
final class DurabilityStore: Sendable {
    let disk: TestDisk
    let storage: StorageConfiguration
    let ledgerConfiguration = LedgerConfiguration()

    var simulated: SimulatedFileSystem { disk.simulated }

    init(preallocates: Bool = false, log: LogConfiguration = smallLogConfiguration(), recovery: WALReader.Mode = .strict) throws {
        disk = TestDisk(preallocates: preallocates)
        storage = StorageConfiguration(directory: "/data", fileSystem: disk, log: log,
                                       snapshotEveryRecords: nil, snapshotEveryMillis: nil, recovery: recovery)
        _ = try ShardStorage.prepare(storage: storage, shardCount: 1, create: true)
    }

    /// The same directory read with another recovery mode.
    func storage(recovery: WALReader.Mode) -> StorageConfiguration {
        var copy = storage
        copy.recovery = recovery
        return copy
    }

    var walDirectory: String { storage.walDirectory(0) }
    var snapshotDirectory: String { storage.snapshotDirectory(0) }
    var archiveDirectory: String { storage.archiveDirectory(0) }
    func segmentPath(_ name: String) -> String { walDirectory + "/" + name }

    /// Segment names in the live log directory, in log order.
    func segments() throws -> [String] {
        try simulated.contentsOfDirectory(walDirectory).filter { WALFormat.firstLSN(ofSegmentNamed: $0) != nil }.sorted()
    }

    func openLog(after report: WALReader.Report = WALReader.Report()) throws -> ShardLog {
        try ShardLog(directory: walDirectory, fileSystem: storage.fileSystem, shard: 0, shardCount: 1,
                     configuration: storage.log, resumingAfter: report)
    }

    func recover(mode: WALReader.Mode? = nil, fromLogStart: Bool = false) throws(RecoveryError)
        -> (ledger: Ledger, log: WALReader.Report, report: ShardRecoveryReport) {
        let (ledger, log, report) = try ShardStorage.recover(shard: 0, shardCount: 1, storage: storage(recovery: mode ?? storage.recovery),
                                                             ledger: ledgerConfiguration, fromLogStart: fromLogStart)
        return (ledger, log, report)
    }

    /// Every record of the log (archive and live segments), verified.
    func readLog(mode: WALReader.Mode = .strict) throws -> (entries: [WALReader.Entry], report: WALReader.Report) {
        var entries: [WALReader.Entry] = []
        let report = try WALReader.read(directories: [archiveDirectory, walDirectory], fileSystem: storage.fileSystem,
                                        shard: 0, mode: mode) { entries.append($0) }
        return (entries, report)
    }

    /// Writes a snapshot of `ledger`, which includes the records up to `lsn` whose last checksum is `chain`.
    @discardableResult
    func writeSnapshot(_ ledger: Ledger, lsn: UInt64, chain: UInt32) throws -> String {
        try SnapshotFile.write(ledger, shard: 0, shardCount: 1, lsn: lsn, chain: chain, directory: snapshotDirectory,
                               fileSystem: storage.fileSystem)
        return snapshotDirectory + "/" + SnapshotFile.name(lsn: lsn)
    }

    /// A ledger that applied exactly `records`, in order, at their times.
    func reference(_ records: some Collection<LoggedRecord>) -> Ledger {
        var ledger = Ledger(configuration: ledgerConfiguration)
        for record in records { _ = ledger.record(record.command, at: record.time) }
        return ledger
    }
}

/// The shard's part: applies commands to a ledger in time order and appends each command the
/// ledger recorded (new key: applied or rejected) to the log, as `Shard.execute` does.
struct ShardModel {
    var ledger: Ledger
    var records: [LoggedRecord]
    var now: Timestamp

    init(configuration: LedgerConfiguration, ledger: Ledger? = nil, records: [LoggedRecord] = [], now: Timestamp = durabilityStart) {
        self.ledger = ledger ?? Ledger(configuration: configuration)
        self.records = records
        self.now = max(now, records.last?.time ?? now)
    }

    /// Applies `command` now; appends it to `log` when recorded. Returns the outcome and its LSN.
    @discardableResult
    mutating func run(_ command: Command, log: ShardLog?) -> (outcome: Outcome, lsn: UInt64?) {
        let (outcome, recorded) = ledger.record(command, at: now)
        guard recorded else { return (outcome, nil) }
        records.append(LoggedRecord(command: command, time: now))
        let lsn = log?.append(command, at: now)
        if let lsn { precondition(lsn == UInt64(records.count), "log and model disagree on the LSN") }
        return (outcome, UInt64(records.count))
    }

    /// Runs `count` workload commands (the clock moving as the workload says).
    mutating func run(_ count: Int, of workload: inout DurabilityWorkload, log: ShardLog?) {
        for _ in 0 ..< count {
            now = now.adding(millis: workload.pause())
            let command = workload.next()
            let (outcome, _) = run(command, log: log)
            workload.learn(command, outcome)
        }
    }

    /// Runs the workload's prologue.
    mutating func runPrologue(of workload: inout DurabilityWorkload, log: ShardLog?) {
        for command in workload.prologue() {
            let (outcome, _) = run(command, log: log)
            workload.learn(command, outcome)
        }
    }
}

/// Waits for `log.waitUntilSynced(lsn)`, at most `seconds`. A deadline for a hang, not a
/// race: a sync is due within milliseconds. On the deadline the log is closed (which wakes
/// its writer, so the waiter returns and nothing is left hanging) and false is returned; the
/// log must not be used afterwards then.
func waitUntilSynced(_ log: ShardLog, _ lsn: UInt64, deadlineSeconds seconds: Int = 2) async -> Bool {
    await withTaskGroup(of: Bool.self) { group in
        group.addTask { (try? await log.waitUntilSynced(lsn)) != nil }
        group.addTask {
            try? await Task.sleep(for: .seconds(seconds))
            return false
        }
        let first = await group.next() ?? false
        if !first { await log.close() }
        group.cancelAll()
        return first
    }
}

// MARK: - Segment bytes

/// Where each record of a segment lies: offset, length, LSN and checksum, up to the first
/// byte that is not a valid record.
struct RecordSpan: Equatable {
    let offset: Int
    let length: Int
    let lsn: UInt64
    let checksum: UInt32
    let previous: UInt32
    /// The LSN up to which the log was synced when this record was appended.
    let syncedLSN: UInt64
    /// An audit seal (docs/audit.md), not a command record.
    var isSeal = false
    var end: Int { offset + length }
}

/// The command records of a segment (with `includingSeals`, the audit seals between them too).
func recordSpans(of bytes: [UInt8], includingSeals: Bool = false) -> [RecordSpan] {
    var spans: [RecordSpan] = []
    bytes.withUnsafeBytes { raw in
        var offset = WALFormat.segmentHeaderSize
        while offset < raw.count, case .record(let header, let length) = WALRecord.scan(raw, at: offset, end: raw.count) {
            // The command records only: the audit seals after each write batch (docs/audit.md)
            // take no LSN and stay out of the CRC chain.
            if includingSeals || !header.isSeal {
                spans.append(RecordSpan(offset: offset, length: length, lsn: header.lsn, checksum: header.checksum,
                                        previous: header.previous, syncedLSN: header.syncedLSN, isSeal: header.isSeal))
            }
            offset += length
        }
    }
    return spans
}

/// Offset of the last non-zero byte in `range` of `bytes`, nil if all are zero.
func lastNonZeroByte(_ bytes: [UInt8], in range: Range<Int>) -> Int? {
    bytes.withUnsafeBufferPointer { buffer in
        var index = range.upperBound - 1
        while index >= range.lowerBound {
            if buffer[index] != 0 { return index }
            index -= 1
        }
        return nil
    }
}

/// A fresh simulated disk holding `files` (path → content), everything durable.
func simulatedDisk(_ files: [String: [UInt8]], directories: [String]) throws -> SimulatedFileSystem {
    let disk = SimulatedFileSystem()
    for directory in directories { try disk.createDirectory(directory) }
    for (path, bytes) in files.sorted(by: { $0.key < $1.key }) {
        let file = try disk.open(path, create: true)
        try file.write(bytes, at: 0)
        try file.sync()
        file.close()
    }
    for directory in directories { try disk.syncDirectory(directory) }
    return disk
}

// MARK: - Expectations

/// Runs `body`, which must throw a `RecoveryError`; returns it.
func expectRecoveryError<T>(_ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
                            _ body: () throws -> T) -> RecoveryError? {
    do {
        _ = try body()
        Issue.record("expected recovery to fail. \(comment?.rawValue ?? "")", sourceLocation: sourceLocation)
        return nil
    } catch let error as RecoveryError {
        return error
    } catch {
        Issue.record("expected a RecoveryError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Runs `body`, which must throw a `WALReader.Failure`; returns it.
extension WALReader.Failure {
    /// The damage of a bad record that is not a torn tail (nil for other problems).
    var recordDamage: WALRecord.Damage? {
        if case .recordCorrupt(let damage, _, _, _, _) = problem { damage } else { nil }
    }
}

func expectWALFailure<T>(_ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () throws -> T) -> WALReader.Failure? {
    do {
        _ = try body()
        Issue.record("expected the log read to fail. \(comment?.rawValue ?? "")", sourceLocation: sourceLocation)
        return nil
    } catch let failure as WALReader.Failure {
        return failure
    } catch {
        Issue.record("expected a WALReader.Failure, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

// MARK: - The test disk

/// A file system that forwards to a `SimulatedFileSystem` (which models power cuts) and adds
/// two things the durability tests need:
///
/// - `preallocates: false` makes `WritableFile.preallocate` a no-op. The simulation grows a
///   file byte by byte, which in a debug build costs about 0.5 µs per byte — 4-5 s for one
///   8 MiB segment. Without preallocation a segment is only as long as its records; the reader
///   treats the missing rest like preallocated zeros (it reads up to the file's end), and,
///   told so by `preallocatesFiles`, takes a file ending inside a record for a torn write
///   rather than a segment cut after the fact. Tests about the preallocated layout itself
///   use `preallocates: true`.
/// - `hold(syncNumber:of:)` holds the n-th sync of a file until the test releases it: the
///   deterministic way to have the log writer stand still at an exact point (no sleeping).
final class TestDisk: FileSystem {
    let simulated: SimulatedFileSystem
    let preallocates: Bool
    private let holds = Mutex<[String: (number: Int, gate: SyncGate)]>([:])
    private let counts = Mutex<[String: Int]>([:])

    init(_ simulated: SimulatedFileSystem = SimulatedFileSystem(), preallocates: Bool = false) {
        self.simulated = simulated
        self.preallocates = preallocates
    }

    /// Holds the `number`-th sync (1-based, counted from now on) of the file `path` until
    /// `gate.release()`.
    func hold(syncNumber number: Int, of path: String) -> SyncGate {
        let gate = SyncGate()
        let base = counts.withLock { $0[path] ?? 0 }
        holds.withLock { $0[path] = (base + number, gate) }
        return gate
    }

    /// File syncs of `path` so far (through this disk).
    func syncs(of path: String) -> Int { counts.withLock { $0[path] ?? 0 } }

    fileprivate func willSync(_ path: String) {
        let count = counts.withLock { counts -> Int in
            counts[path, default: 0] += 1
            return counts[path]!
        }
        let gate: SyncGate? = holds.withLock { holds in
            guard let hold = holds[path], hold.number == count else { return nil }
            holds[path] = nil
            return hold.gate
        }
        gate?.pass()
    }

    func createDirectory(_ path: String) throws(FileError) { try simulated.createDirectory(path) }
    func contentsOfDirectory(_ path: String) throws(FileError) -> [String] { try simulated.contentsOfDirectory(path) }
    func fileExists(_ path: String) -> Bool { simulated.fileExists(path) }
    func size(of path: String) throws(FileError) -> Int64 { try simulated.size(of: path) }
    func open(_ path: String, create: Bool) throws(FileError) -> any WritableFile {
        TestDiskFile(try simulated.open(path, create: create), disk: self)
    }
    func readFile(_ path: String, bytesMax: Int) throws(FileError) -> [UInt8] { try simulated.readFile(path, bytesMax: bytesMax) }
    var preallocatesFiles: Bool { preallocates }
    func rename(_ from: String, to: String) throws(FileError) { try simulated.rename(from, to: to) }
    func remove(_ path: String) throws(FileError) { try simulated.remove(path) }
    func syncDirectory(_ path: String) throws(FileError) { try simulated.syncDirectory(path) }
}

private final class TestDiskFile: WritableFile {
    let inner: any WritableFile
    let disk: TestDisk

    init(_ inner: any WritableFile, disk: TestDisk) {
        self.inner = inner
        self.disk = disk
    }

    var path: String { inner.path }
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FileError) { try inner.write(bytes, at: offset) }
    func read(at offset: Int64, count: Int) throws(FileError) -> [UInt8] { try inner.read(at: offset, count: count) }
    func sync() throws(FileError) {
        disk.willSync(path)
        try inner.sync()
    }
    func preallocate(_ size: Int64) throws(FileError) {
        if disk.preallocates { try inner.preallocate(size) }
    }
    func truncate(_ size: Int64) throws(FileError) { try inner.truncate(size) }
    func close() { inner.close() }
}

/// One held sync: the syncing thread signals `entered` and waits for `release()`.
final class SyncGate: Sendable {
    private let enteredSignal = DispatchSemaphore(value: 0)
    private let releaseSignal = DispatchSemaphore(value: 0)

    fileprivate func pass() {
        enteredSignal.signal()
        releaseSignal.wait()
    }

    /// Blocks until the held sync has started; false after `seconds` without it (the test
    /// then fails: a deadline for a hang, not a race).
    func waitUntilEntered(seconds: Int = 30) -> Bool {
        enteredSignal.wait(timeout: .now() + .seconds(seconds)) == .success
    }

    func release() { releaseSignal.signal() }
}
