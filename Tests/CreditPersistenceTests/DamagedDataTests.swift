#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DurabilityTestSupport
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

// Damaged data and hostile input (issue 15, point 9): start-up and the read-only checks refuse
// with a typed error, change nothing, and never trap, block or read without bound. Each table
// damages a fresh real data directory one way and expects one exact error.

/// A closed two-shard data directory on the real file system, in a temporary folder removed
/// by `deinit`: per shard, a preallocated segment holding `recordCounts[shard]` records and
/// a snapshot at `snapshotLSNs[shard]`.
final class DamageFixture {
    static let shardCount = 2
    let root: String
    let storage: StorageConfiguration
    let fileSystem = PosixFileSystem()
    let ledgerConfiguration = LedgerConfiguration()
    /// Per shard: the LSN of its snapshot and its records in all.
    let snapshotLSNs: [UInt64]
    let recordCounts: [Int]
    /// The state digest of each shard after all its records.
    let finalDigests: [UInt64]

    init(seed: UInt64, recordsAfterSnapshot: Int = 20) async throws {
        root = try makeTemporaryDirectory("damage")
        storage = StorageConfiguration(directory: root + "/data", fileSystem: fileSystem, log: smallLogConfiguration(),
                                       snapshotEveryRecords: nil, snapshotEveryMillis: nil)
        _ = try ShardStorage.prepare(storage: storage, shardCount: Self.shardCount, create: true)
        var snapshotLSNs: [UInt64] = []
        var counts: [Int] = []
        var digests: [UInt64] = []
        for shard in 0 ..< Self.shardCount {
            let log = try ShardLog(directory: storage.walDirectory(shard), fileSystem: fileSystem, shard: UInt32(shard),
                                   shardCount: UInt32(Self.shardCount), configuration: storage.log, resumingAfter: WALReader.Report())
            var workload = DurabilityWorkload(seed: seed &+ UInt64(shard))
            var model = ShardModel(configuration: ledgerConfiguration)
            model.runPrologue(of: &workload, log: log)
            model.run(10, of: &workload, log: log)
            let snapshotLSN = UInt64(model.records.count)
            snapshotLSNs.append(snapshotLSN)
            try await log.waitUntilDurable(snapshotLSN)
            try SnapshotFile.write(model.ledger, shard: UInt32(shard), shardCount: UInt32(Self.shardCount), lsn: snapshotLSN,
                                   chain: log.lastAppendedChecksum, directory: storage.snapshotDirectory(shard), fileSystem: fileSystem)
            model.run(recordsAfterSnapshot, of: &workload, log: log)
            try await log.waitUntilDurable(UInt64(model.records.count))
            await log.close()
            counts.append(model.records.count)
            digests.append(model.ledger.stateDigest())
        }
        self.snapshotLSNs = snapshotLSNs
        recordCounts = counts
        finalDigests = digests
    }

    deinit { removeTree(root) }

    private func removeTree(_ path: String) {
        if let names = try? fileSystem.contentsOfDirectory(path) {
            for name in names { removeTree(path + "/" + name) }
        }
        try? fileSystem.remove(path)
    }

    func segment(_ shard: Int) -> String { storage.walDirectory(shard) + "/" + WALFormat.segmentName(firstLSN: 1) }
    func snapshot(_ shard: Int) -> String { storage.snapshotDirectory(shard) + "/" + SnapshotFile.name(lsn: snapshotLSNs[shard]) }

    /// What start-up does before it changes anything: read `credits.meta`, recover every shard.
    func startUp(mode: WALReader.Mode = .strict) throws(RecoveryError) -> [(ledger: Ledger, report: ShardRecoveryReport)] {
        var storage = storage
        storage.recovery = mode
        let count = try ShardStorage.prepare(storage: storage, shardCount: 0, create: false)
        return try (0 ..< count).map { (shard) throws(RecoveryError) in
            let (ledger, _, report) = try ShardStorage.recover(shard: shard, shardCount: count, storage: storage, ledger: ledgerConfiguration)
            return (ledger, report)
        }
    }

    /// Every path under the root with its type, size and content checksum: equal before and
    /// after a refused start-up, or the start-up changed the directory.
    func fingerprint() -> [String: String] {
        var entries: [String: String] = [:]
        func walk(_ path: String) {
            var info = stat()
            guard lstat(path, &info) == 0 else { return }
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                entries[path] = "directory"
                for name in (try? fileSystem.contentsOfDirectory(path)) ?? [] { walk(path + "/" + name) }
            case S_IFREG where info.st_size <= Int64(StorageLimits.segmentBytesMax):
                let bytes = (try? fileSystem.readFile(path)) ?? []
                entries[path] = "file \(info.st_size) \(CRC32C.checksum(bytes))"
            default:
                entries[path] = "mode \(info.st_mode) size \(info.st_size)"
            }
        }
        walk(root)
        return entries
    }

    /// Rewrites the 64-byte header of `path` (a segment or a snapshot; both keep a CRC32C of
    /// bytes 0..<60 at 60) with `change` applied and the checksum made valid again: a
    /// crafted header, not a damaged one.
    func craftHeader(_ path: String, _ change: (inout [UInt8]) -> Void) throws {
        let file = try fileSystem.open(path, create: false)
        defer { file.close() }
        var header = try file.read(at: 0, count: 64)
        change(&header)
        let checksum = CRC32C.checksum(header[..<60])
        withUnsafeBytes(of: checksum.littleEndian) { header.replaceSubrange(60 ..< 64, with: $0) }
        try file.write(header, at: 0)
    }

    func write(_ path: String, _ text: String) throws {
        let file = try fileSystem.open(path, create: true)
        defer { file.close() }
        try file.truncate(0)
        try file.write(Array(text.utf8), at: 0)
    }

    func truncate(_ path: String, to size: Int64) throws {
        let file = try fileSystem.open(path, create: false)
        defer { file.close() }
        try file.truncate(size)
    }

    func removeTree(at path: String) { removeTree(path) }
}

/// Stores `value` little-endian at `offset`.
private func put<T: FixedWidthInteger>(_ value: T, at offset: Int, in bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(offset ..< offset + MemoryLayout<T>.size, with: $0) }
}

/// One way to damage the fixture and the exact refusal start-up must give.
struct LostDataCase: CustomTestStringConvertible, Sendable {
    let name: String
    let apply: @Sendable (DamageFixture) throws -> Void
    let expected: @Sendable (DamageFixture) -> RecoveryError
    /// Whether point-in-time recovery (the operator's option) accepts the loss.
    var pointInTimeRecovers = false
    var testDescription: String { name }
}

@Suite("Damaged data: start-up refuses lost data with a typed error and changes nothing")
struct LostDataTests {
    static let damages: [LostDataCase] = [
        LostDataCase(name: "the only live segment after the snapshot is deleted",
               apply: { try $0.fileSystem.remove($0.segment(0)) },
               expected: { f in RecoveryError(shard: 0, .log(WALReader.Failure(
                   file: f.storage.walDirectory(0), offset: 0, problem: .liveSegmentMissing(snapshotLSN: f.snapshotLSNs[0], archivedSegments: 0)))) },
               pointInTimeRecovers: true),
        LostDataCase(name: "the only live segment after the snapshot is emptied",
               apply: { try $0.truncate($0.segment(1), to: 0) },
               expected: { f in RecoveryError(shard: 1, .log(WALReader.Failure(
                   file: f.segment(1), offset: 0, problem: .segmentEmptied(firstLSN: 1, snapshotLSN: f.snapshotLSNs[1])))) },
               pointInTimeRecovers: true),
        LostDataCase(name: "the only live segment after the snapshot is zeroed",
               apply: { f in
                   let size = try f.fileSystem.size(of: f.segment(0))
                   try f.truncate(f.segment(0), to: 0)
                   try f.truncate(f.segment(0), to: size)
               },
               expected: { f in RecoveryError(shard: 0, .log(WALReader.Failure(
                   file: f.segment(0), offset: 0, problem: .segmentEmptied(firstLSN: 1, snapshotLSN: f.snapshotLSNs[0])))) },
               pointInTimeRecovers: true),
        LostDataCase(name: "a whole shard directory is gone",
               apply: { $0.removeTree(at: $0.storage.shardDirectory(1)) },
               expected: { f in RecoveryError(shard: 1, .shardDirectoryMissing(path: f.storage.shardDirectory(1))) }),
        LostDataCase(name: "a shard's snapshot directory is gone",
               apply: { $0.removeTree(at: $0.storage.snapshotDirectory(0)) },
               expected: { f in RecoveryError(shard: 0, .shardDirectoryMissing(path: f.storage.snapshotDirectory(0))) }),
        LostDataCase(name: "credits.meta names two shard counts",
               apply: { try $0.write($0.storage.metaPath, "format 1\nshards 2\nshards 4\n") },
               expected: { f in RecoveryError(shard: nil, .metaInvalid(path: f.storage.metaPath, .duplicateKey("shards"))) }),
        LostDataCase(name: "credits.meta names fewer shards than the directory holds",
               apply: { try $0.write($0.storage.metaPath, "format 1\nshards 1\n") },
               expected: { f in RecoveryError(shard: nil, .shardDirectoryUnexpected(path: f.storage.shardDirectory(1))) }),
        LostDataCase(name: "a preallocated segment cut short by megabytes, inside a record",
               apply: { f in
                   let bytes = try f.fileSystem.readFile(f.segment(0))
                   let spans = recordSpans(of: bytes)
                   try f.truncate(f.segment(0), to: Int64(spans[spans.count - 5].offset + 10))
               },
               expected: { f in
                   // The last whole record, or the audit seal after it.
                   let spans = recordSpans(of: (try? f.fileSystem.readFile(f.segment(0))) ?? [], includingSeals: true)
                   let offset = spans.last.map(\.end) ?? 0
                   return RecoveryError(shard: 0, .log(WALReader.Failure(
                       file: f.segment(0), offset: offset,
                       problem: .segmentTruncated(bytes: offset + 10, expected: UInt64(f.storage.log.segmentSize)))))
               },
               pointInTimeRecovers: true),
    ]

    @Test("start-up refuses, naming what is missing; the directory is unchanged", arguments: damages)
    func refusesLostData(damage: LostDataCase) async throws {
        let fixture = try await DamageFixture(seed: 0xDA3A_0001)
        try damage.apply(fixture)
        let before = fixture.fingerprint()
        let error = expectRecoveryError(Comment(rawValue: damage.name)) { try fixture.startUp() }
        #expect(error == damage.expected(fixture), "\(damage.name): \(error.map(String.init(describing:)) ?? "-")")
        #expect(fixture.fingerprint() == before, "\(damage.name): a refused start-up changed the directory")
        // Every refusal has a stable code of its own.
        #expect(error.map { !$0.code.isEmpty && $0.code == $0.code.lowercased() && !$0.code.contains(" ") } == true)
        if damage.pointInTimeRecovers {
            let recovered = try fixture.startUp(mode: .pointInTime)
            #expect(recovered.contains { $0.report.droppedBecause != nil }, "\(damage.name): point-in-time must report what it dropped")
            #expect(fixture.fingerprint() == before, "\(damage.name): recovery itself is read-only")
        }
    }

    @Test("wal verify's check refuses a missing shard and a log that ends before its snapshot")
    func verifyRefusesMissingLog() async throws {
        let fixture = try await DamageFixture(seed: 0xDA3A_0002)
        #expect(try ShardStorage.verifyLog(shard: 0, shardCount: DamageFixture.shardCount, storage: fixture.storage).lastLSN == UInt64(fixture.recordCounts[0]))
        try fixture.fileSystem.remove(fixture.segment(0))
        #expect(throws: RecoveryError(shard: 0, .log(WALReader.Failure(
            file: fixture.storage.walDirectory(0), offset: 0,
            problem: .liveSegmentMissing(snapshotLSN: fixture.snapshotLSNs[0], archivedSegments: 0))))) {
            try ShardStorage.verifyLog(shard: 0, shardCount: DamageFixture.shardCount, storage: fixture.storage)
        }
        fixture.removeTree(at: fixture.storage.shardDirectory(1))
        #expect(throws: RecoveryError(shard: 1, .shardDirectoryMissing(path: fixture.storage.shardDirectory(1)))) {
            try ShardStorage.verifyLog(shard: 1, shardCount: DamageFixture.shardCount, storage: fixture.storage)
        }
    }

    @Test("credits.meta: anything but one format line and one shard count in range is refused",
          arguments: [("format 1\nshards 0\n", MetaDefect.shardCountOutOfRange(0)),
                      ("format 1\nshards 1025\n", .shardCountOutOfRange(1_025)),
                      ("format 1\nshards 9223372036854775807\n", .shardCountOutOfRange(Int.max)),
                      ("format 1\nshards 99999999999999999999\n", .malformedLine("shards 99999999999999999999")),
                      ("format 1\nshards -2\n", .malformedLine("shards -2")),
                      ("format 2\nshards 2\n", .unsupportedFormat(2)),
                      ("format 1\nformat 1\nshards 2\n", .duplicateKey("format")),
                      ("shards 2\n", .missingKey("format")),
                      ("format 1\nshards 2\nsecret 3\n", .malformedLine("secret 3"))])
    func metaIsParsedStrictly(text: String, defect: MetaDefect) async throws {
        #expect(throws: defect) { try ShardStorage.parseMeta(Array(text.utf8)) }
        #expect(try ShardStorage.parseMeta(Array("format 1\nshards 2\n".utf8)) == 2)
    }
}

@Suite("Damaged data: every value read from a header is range-checked before use")
struct HeaderRangeTests {
    /// Crafted snapshot headers (valid checksum): the snapshot is rejected with the exact
    /// problem, and recovery falls back to the log's start, to the same state.
    static let snapshotHeaders: [(String, @Sendable (inout [UInt8]) -> Void, SnapshotProblem)] = [
        ("frame bytes near 2^64", { put(UInt64.max - 10, at: 48, in: &$0) }, .valueOutOfRange(.frameBytes, UInt64.max - 10)),
        ("state bytes beyond the limit", { put(UInt64(1) << 40, at: 40, in: &$0) }, .valueOutOfRange(.stateBytes, 1 << 40)),
        ("shard count 0", { put(UInt32(0), at: 20, in: &$0) }, .valueOutOfRange(.shardCount, 0)),
        ("shard count beyond the limit", { put(UInt32.max, at: 20, in: &$0) }, .valueOutOfRange(.shardCount, UInt64(UInt32.max))),
        ("an LSN near 2^64", { put(UInt64.max, at: 24, in: &$0) }, .valueOutOfRange(.lsn, UInt64.max)),
        ("a reserved byte set", { $0[57] = 1 }, .reservedBytesSet),
        ("an unknown version", { put(UInt16(7), at: 8, in: &$0) }, .unsupportedVersion(7)),
    ]

    @Test("a crafted snapshot header is rejected and recovery falls back to the log",
          arguments: 0 ..< snapshotHeaders.count)
    func craftedSnapshotHeader(index: Int) async throws {
        let (name, change, problem) = Self.snapshotHeaders[index]
        let fixture = try await DamageFixture(seed: 0xDA3A_0003)
        try fixture.craftHeader(fixture.snapshot(0), change)
        #expect(throws: problem, "\(name)") {
            try SnapshotFile.read(path: fixture.snapshot(0), fileSystem: fixture.fileSystem, configuration: fixture.ledgerConfiguration)
        }
        let before = fixture.fingerprint()
        let recovered = try fixture.startUp()
        let report = recovered[0].report
        #expect(report.snapshotsRejected == [SnapshotRejection(path: fixture.snapshot(0), problem: problem)], "\(name)")
        #expect(report.snapshot == nil && report.lastLSN == UInt64(fixture.recordCounts[0]), "\(name): replayed from the log start")
        #expect(recovered[0].ledger.stateDigest() == fixture.finalDigests[0], "\(name): the same state from the log")
        #expect(fixture.fingerprint() == before)
    }

    /// Crafted segment headers (valid checksum): start-up refuses with the exact problem.
    static let segmentHeaders: [(String, @Sendable (inout [UInt8]) -> Void, SegmentHeader.Problem)] = [
        ("shard count 0", { put(UInt32(0), at: 16, in: &$0) }, .valueOutOfRange(.shardCount, 0)),
        ("shard count beyond the limit", { put(UInt32(5_000), at: 16, in: &$0) }, .valueOutOfRange(.shardCount, 5_000)),
        ("shard index beyond the count", { put(UInt32(2), at: 12, in: &$0); put(UInt32(2), at: 16, in: &$0) },
         .valueOutOfRange(.shardIndex, 2)),
        ("first LSN near 2^64", { put(UInt64.max, at: 24, in: &$0) }, .valueOutOfRange(.firstLSN, UInt64.max)),
        ("segment size near 2^64", { put(UInt64.max, at: 32, in: &$0) }, .valueOutOfRange(.segmentSize, UInt64.max)),
        ("unsynced bytes max beyond a segment", { put(UInt64(1) << 50, at: 40, in: &$0) },
         .valueOutOfRange(.unsyncedBytesMax, 1 << 50)),
        ("a reserved byte set", { $0[50] = 0xFF }, .reservedBytesSet),
        ("an unknown version", { put(UInt16(4), at: 8, in: &$0) }, .unsupportedVersion(4)), // 3 is a sealed segment
        ("an unknown command encoding", { put(UInt16(9), at: 10, in: &$0) }, .unsupportedCommandEncoding(9)),
    ]

    @Test("a checksummed record stamped after year 9999 or before 1970 is corruption, never replayed",
          arguments: [Int64.max, -1])
    func recordTimeOutOfRange(millis: Int64) async throws {
        let fixture = try await DamageFixture(seed: 0xDA3A_000B)
        let path = fixture.segment(0)
        let file = try fixture.fileSystem.open(path, create: false)
        let spans = recordSpans(of: try fixture.fileSystem.readFile(path))
        let victim = spans[2]
        var record = try file.read(at: Int64(victim.offset), count: victim.length)
        put(millis, at: 24, in: &record)
        put(CRC32C.checksum(record[8...], continuing: CRC32C.checksum(record[..<4])), at: 4, in: &record)
        try file.write(record, at: Int64(victim.offset))
        file.close()
        let error = expectRecoveryError { try fixture.startUp() }
        #expect(error?.logFailure?.offset == victim.offset && error?.logFailure?.recordDamage == .timeOutOfRange(millis: millis),
                "\(error.map(String.init(describing:)) ?? "-")")
    }

    @Test("a segment written for another shard count stops start-up: its tenants were routed by another hash")
    func segmentOfAnotherLayout() async throws {
        let fixture = try await DamageFixture(seed: 0xDA3A_000A)
        try fixture.craftHeader(fixture.segment(1)) { put(UInt32(3), at: 16, in: &$0) }
        #expect(throws: RecoveryError(shard: 1, .log(WALReader.Failure(
            file: fixture.segment(1), offset: 16, problem: .segmentOfOtherLayout(shardCount: 3, expected: 2))))) {
            try fixture.startUp()
        }
    }

    @Test("a crafted segment header stops start-up with its exact problem; the directory is unchanged",
          arguments: 0 ..< segmentHeaders.count)
    func craftedSegmentHeader(index: Int) async throws {
        let (name, change, problem) = Self.segmentHeaders[index]
        let fixture = try await DamageFixture(seed: 0xDA3A_0004)
        try fixture.craftHeader(fixture.segment(1), change)
        let before = fixture.fingerprint()
        let error = expectRecoveryError(Comment(rawValue: name)) { try fixture.startUp() }
        #expect(error == RecoveryError(shard: 1, .log(WALReader.Failure(file: fixture.segment(1), offset: 0, problem: .segmentHeader(problem)))),
                "\(name): \(error.map(String.init(describing:)) ?? "-")")
        #expect(fixture.fingerprint() == before)
    }
}

@Suite("Damaged data: readers check the file type and bound every read")
struct BoundedReadTests {
    /// Replaces `path` with a FIFO, a link to /dev/zero, or a sparse 1 TiB file.
    enum Replacement: String, CaseIterable, Sendable {
        case fifo, deviceLink, sparseTebibyte

        func apply(to path: String, in fixture: DamageFixture) throws {
            try fixture.fileSystem.remove(path)
            switch self {
            case .fifo: try #require(mkfifo(path, 0o600) == 0)
            case .deviceLink: try #require(symlink("/dev/zero", path) == 0)
            case .sparseTebibyte:
                let file = try fixture.fileSystem.open(path, create: true)
                defer { file.close() }
                try file.truncate(1 << 40)
            }
        }

        func matches(_ error: FileError, path: String) -> Bool {
            self == .sparseTebibyte ? error == .tooLarge(path) : error == .notRegularFile(path)
        }
    }

    @Test("a segment that is a FIFO, a device or a sparse 1 TiB file stops start-up without blocking or allocating",
          arguments: Replacement.allCases)
    func hostileSegment(replacement: Replacement) async throws {
        let fixture = try await DamageFixture(seed: 0xDA3A_0005)
        try replacement.apply(to: fixture.segment(0), in: fixture)
        let before = fixture.fingerprint()
        let error = expectRecoveryError { try fixture.startUp() }
        if case .segmentUnreadable(let fileError)? = error?.logFailure?.problem {
            #expect(replacement.matches(fileError, path: fixture.segment(0)), "\(fileError)")
        } else {
            Issue.record("expected an unreadable segment, got \(error.map(String.init(describing:)) ?? "-")")
        }
        #expect(fixture.fingerprint() == before)
    }

    @Test("a snapshot that is a FIFO, a device or a sparse 1 TiB file is rejected; recovery falls back to the log",
          arguments: Replacement.allCases)
    func hostileSnapshot(replacement: Replacement) async throws {
        let fixture = try await DamageFixture(seed: 0xDA3A_0006)
        try replacement.apply(to: fixture.snapshot(1), in: fixture)
        let recovered = try fixture.startUp()
        let rejected = try #require(recovered[1].report.snapshotsRejected.first)
        if case .unreadable(let fileError) = rejected.problem {
            #expect(replacement.matches(fileError, path: fixture.snapshot(1)), "\(fileError)")
        } else {
            Issue.record("expected an unreadable snapshot, got \(rejected)")
        }
        #expect(recovered[1].report.snapshot == nil && recovered[1].report.lastLSN == UInt64(fixture.recordCounts[1]))
        #expect(recovered[1].ledger.stateDigest() == fixture.finalDigests[1])
    }

    @Test("a credits.meta that is a FIFO or a device is refused without blocking", arguments: [Replacement.fifo, .deviceLink])
    func hostileMeta(replacement: Replacement) async throws {
        let fixture = try await DamageFixture(seed: 0xDA3A_0007)
        try replacement.apply(to: fixture.storage.metaPath, in: fixture)
        #expect(throws: RecoveryError(shard: nil, .metaUnreadable(.notRegularFile(fixture.storage.metaPath)))) {
            try fixture.startUp()
        }
    }
}

@Suite("Damaged data: a damaged first record costs recovery the same scan as wal verify")
struct DamagedFirstRecordTests {
    @Test("the evidence walk does the same work whatever LSN the snapshot covers, about the segment's size")
    func evidenceWalkIgnoresTheSnapshotLSN() async throws {
        let fixture = try await DamageFixture(seed: 0xDA3A_0008, recordsAfterSnapshot: 2_000)
        let bytes = try fixture.fileSystem.readFile(fixture.segment(0), bytesMax: StorageLimits.segmentBytesMax)
        let spans = recordSpans(of: bytes)
        let region = (from: spans[0].offset + 1, through: spans[spans.count - 1].end - 1)
        let (fromStart, afterSnapshot) = bytes.withUnsafeBytes { raw in
            (WALReader.evidence(raw, from: region.from, through: region.through, end: raw.count, after: 0),
             WALReader.evidence(raw, from: region.from, through: region.through, end: raw.count, after: fixture.snapshotLSNs[0]))
        }
        #expect(fromStart.checksummedBytes == afterSnapshot.checksummedBytes)
        #expect(fromStart.checksummedBytes <= 2 * (region.through - region.from + 1),
                "\(fromStart.checksummedBytes) bytes checksummed for a \(region.through - region.from + 1)-byte region")
        #expect(fromStart.records == spans.count - 1)
        #expect(afterSnapshot.records == spans.count - Int(fixture.snapshotLSNs[0]))
    }

    @Test("a damaged length field in the first record is refused by start-up as by wal verify, naming record 1")
    func damagedFirstLength() async throws {
        let fixture = try await DamageFixture(seed: 0xDA3A_0009, recordsAfterSnapshot: 2_000)
        let file = try fixture.fileSystem.open(fixture.segment(0), create: false)
        try file.write([0xFF, 0x00, 0x10, 0x00], at: Int64(WALFormat.segmentHeaderSize))
        file.close()
        let before = fixture.fingerprint()
        let error = expectRecoveryError { try fixture.startUp() }
        #expect(error?.logFailure?.file == fixture.segment(0) && error?.logFailure?.offset == WALFormat.segmentHeaderSize)
        if case .recordCorrupt(_, let lsn, let declaredSynced, _, _)? = error?.logFailure?.problem {
            #expect(lsn == 1 && declaredSynced)
        } else {
            Issue.record("expected a corrupt record, got \(error.map(String.init(describing:)) ?? "-")")
        }
        #expect(throws: RecoveryError.self) { try ShardStorage.verifyLog(shard: 0, shardCount: DamageFixture.shardCount, storage: fixture.storage) }
        #expect(fixture.fingerprint() == before)
    }
}
