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

/// A closed one-shard log of several segments in a temporary directory on the real file
/// system (multi-megabyte segments are cheap there; the simulation grows files slowly).
private final class SegmentedLog {
    let root: String
    let storage: StorageConfiguration
    let records: [LoggedRecord]
    /// The digest of a ledger that applied exactly the first n records, by n.
    let prefixDigests: [UInt64]
    let ledgerConfiguration = LedgerConfiguration()
    let fileSystem = PosixFileSystem()

    /// `small` workload records, then `bulky` rounds of three small and one 1 MB record, then
    /// `tail` small ones.
    init(seed: UInt64, small: Int, bulky: Int, tail: Int, log: LogConfiguration = smallLogConfiguration()) async throws {
        root = try makeTemporaryDirectory("corruption")
        storage = StorageConfiguration(directory: root + "/data", fileSystem: fileSystem, log: log,
                                       snapshotEveryRecords: nil, snapshotEveryMillis: nil)
        _ = try ShardStorage.prepare(storage: storage, shardCount: 1, create: true)
        let shardLog = try ShardLog(directory: storage.walDirectory(0), fileSystem: fileSystem, shard: 0, shardCount: 1,
                                    configuration: log, resumingAfter: WALReader.Report())
        var workload = DurabilityWorkload(seed: seed)
        var model = ShardModel(configuration: ledgerConfiguration)
        var digests = [model.ledger.stateDigest()]
        func note() {
            while digests.count <= model.records.count { digests.append(model.ledger.stateDigest()) }
        }
        for command in workload.prologue() {
            let (outcome, _) = model.run(command, log: shardLog)
            workload.learn(command, outcome)
            note()
        }
        func smallRecords(_ count: Int) {
            let target = model.records.count + count
            while model.records.count < target {
                model.run(1, of: &workload, log: shardLog)
                note()
            }
        }
        smallRecords(small)
        for _ in 0 ..< bulky {
            smallRecords(3)
            model.run(bulkyCommand(key: workload.freshKey()), log: shardLog)
            note()
        }
        smallRecords(tail)
        try await shardLog.waitUntilDurable(UInt64(model.records.count))
        // One more record, appended once all before it were synced: it says so (its synced
        // LSN), so damage to any earlier record can never pass for a torn write. (An unscoped
        // debit: its encoding ends in zero bytes.)
        model.run(Command(key: workload.freshKey(), .debit(workload.accounts[0], Millicredits(1), scope: .unscoped)), log: shardLog)
        note()
        try await shardLog.waitUntilDurable(UInt64(model.records.count))
        await shardLog.close()
        records = model.records
        prefixDigests = digests
    }

    deinit { removeTree(root) }

    private func removeTree(_ path: String) {
        if let names = try? fileSystem.contentsOfDirectory(path) {
            for name in names { removeTree(path + "/" + name) }
        }
        try? fileSystem.remove(path)
    }

    var walDirectory: String { storage.walDirectory(0) }
    func path(_ segment: String) -> String { walDirectory + "/" + segment }

    func segments() throws -> [String] {
        try fileSystem.contentsOfDirectory(walDirectory).filter { WALFormat.firstLSN(ofSegmentNamed: $0) != nil }.sorted()
    }

    func spans(_ segment: String) throws -> [RecordSpan] { recordSpans(of: try fileSystem.readFile(path(segment))) }

    /// Flips one bit in place (corruption at rest); flipping it again restores the byte.
    func flip(_ file: String, byte offset: Int, bit: Int) throws {
        let handle = try fileSystem.open(file, create: false)
        defer { handle.close() }
        let byte = try handle.read(at: Int64(offset), count: 1)[0]
        try handle.write([byte ^ (1 << UInt8(bit))], at: Int64(offset))
    }

    func read(mode: WALReader.Mode = .strict) throws -> (entries: [WALReader.Entry], report: WALReader.Report) {
        var entries: [WALReader.Entry] = []
        let report = try WALReader.read(directories: [storage.archiveDirectory(0), walDirectory], fileSystem: fileSystem,
                                        shard: 0, mode: mode) { entries.append($0) }
        return (entries, report)
    }

    func recover(mode: WALReader.Mode = .strict) throws(RecoveryError) -> (ledger: Ledger, report: ShardRecoveryReport) {
        var storage = storage
        storage.recovery = mode
        let (ledger, _, report) = try ShardStorage.recover(shard: 0, shardCount: 1, storage: storage, ledger: ledgerConfiguration)
        return (ledger, report)
    }

    /// Digest of a ledger that applied exactly the first `count` records.
    func referenceDigest(_ count: Int) -> UInt64 { prefixDigests[count] }
}

/// A small single-segment log on the simulated disk with snapshots at LSNs 100 and 200 of 300.
private struct SnapshottedLog {
    let store: DurabilityStore
    let records: [LoggedRecord]
    let finalDigest: UInt64
    let older: String
    let newer: String

    init(seed: UInt64) async throws {
        store = try DurabilityStore()
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: seed)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        var paths: [String] = []
        while model.records.count < 300 {
            model.run(1, of: &workload, log: log)
            let count = model.records.count
            if count % 100 == 0, count < 300, paths.count < count / 100 {
                try await log.waitUntilDurable(UInt64(count))
                paths.append(try store.writeSnapshot(model.ledger, lsn: UInt64(count), chain: log.lastAppendedChecksum))
            }
        }
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()
        records = model.records
        finalDigest = model.ledger.stateDigest()
        older = paths[0]
        newer = paths[1]
    }
}

@Suite("Corruption: never silently accepted — an error naming file and offset, or the exact prefix in point-in-time mode")
struct CorruptionTests {
    @Test("bit flips in records of earlier segments: strict recovery names file and offset; point-in-time keeps the prefix")
    func flipsInEarlierSegments() async throws {
        let seed = DurabilitySeed.make("CorruptionTests.flipsInEarlierSegments")
        var random = DurabilityRandom(seed: seed)
        let log = try await SegmentedLog(seed: seed, small: 60, bulky: 9, tail: 30)
        let segments = try log.segments()
        try #require(segments.count == 2, "9 MB in 8 MiB segments")
        for trial in 0 ..< 8 {
            let segment = segments[0]
            let spans = try log.spans(segment)
            let span = spans[random.below(spans.count)]
            let byte = span.offset + random.below(span.length)
            let bit = random.below(8)
            let path = log.path(segment)
            let context = "trial \(trial): bit \(bit) of byte \(byte) of \(segment) (record \(span.lsn) at \(span.offset))"
            try log.flip(path, byte: byte, bit: bit)
            defer { try? log.flip(path, byte: byte, bit: bit) }

            let failure = expectWALFailure(Comment(rawValue: context)) { try log.read() }
            #expect(failure?.file == path, "\(context)")
            #expect(failure?.offset == span.offset, "\(context): \(failure.map(String.init(describing:)) ?? "-")")
            let error = expectRecoveryError(Comment(rawValue: context)) { try log.recover() }
            #expect(error?.logFailure?.file == path && error?.logFailure?.offset == span.offset,
                    "\(context): \(error.map(String.init(describing:)) ?? "-")")
            // Point-in-time reads probe every byte after the bad record (slow in a debug build): a few trials.
            guard trial < 3 else { continue }
            let (entries, report) = try log.read(mode: .pointInTime)
            #expect(entries.count == Int(span.lsn) - 1, "\(context): point-in-time must keep exactly the records before the flip")
            #expect(report.droppedBecause?.file == path && report.droppedBecause?.offset == span.offset, "\(context)")
            #expect(report.droppedSegments == Array(segments.drop { $0 != segment }.dropFirst()), "\(context)")
            let recovered = try log.recover(mode: .pointInTime)
            #expect(recovered.ledger.stateDigest() == log.referenceDigest(Int(span.lsn) - 1), "\(context)")
            #expect(recovered.report.droppedBecause != nil)
        }
        // Restored, the log reads whole again.
        #expect(try log.read().entries.count == log.records.count)
    }

    @Test("a bit flip in the last segment with more than unsyncedBytesMax written after it is corruption, not a torn tail")
    func flipFarFromTheTail() async throws {
        let log = try await SegmentedLog(seed: 0xC022_0002, small: 40, bulky: 10, tail: 0,
                                         log: smallLogConfiguration(segmentSize: 24 << 20))
        let segments = try log.segments()
        try #require(segments.count == 1)
        let path = log.path(segments[0])
        let spans = try log.spans(segments[0])
        let early = spans[20]
        try log.flip(path, byte: early.offset + 30, bit: 3)
        let failure = expectWALFailure { try log.read() }
        #expect(failure?.file == path && failure?.offset == early.offset)
        if case .recordCorrupt(_, let lsn, _, let bytesAfter, let unsyncedBytesMax)? = failure?.problem {
            #expect(lsn == early.lsn && UInt64(bytesAfter) > unsyncedBytesMax, "more was written after it than a crash can tear")
        } else {
            Issue.record("expected a corrupt record, got \(failure.map(String.init(describing:)) ?? "-")")
        }
        #expect(expectRecoveryError { try log.recover() } != nil)
        let prefix = try log.recover(mode: .pointInTime)
        #expect(prefix.ledger.stateDigest() == log.referenceDigest(Int(early.lsn) - 1))
        try log.flip(path, byte: early.offset + 30, bit: 3)

        // Within unsyncedBytesMax of the end, a bad record that no later record declares
        // synced is a torn tail by the format's rule (a crash may have torn it): cut and
        // reported, never silently. The last record qualifies.
        let last = spans[spans.count - 1]
        try log.flip(path, byte: last.offset + last.length / 2, bit: 0)
        let cut = try log.recover()
        #expect(cut.report.lastLSN == last.lsn - 1)
        #expect(cut.report.tornBytesDropped > 0 && cut.report.tornRecordsDropped == 1)
        #expect(cut.report.droppedBecause?.problem == .tornTail(.checksumMismatch, lsn: last.lsn))
        #expect(cut.ledger.stateDigest() == log.referenceDigest(Int(last.lsn) - 1))
        try log.flip(path, byte: last.offset + last.length / 2, bit: 0)

        // The record before it, which the last record declares synced: corruption.
        let late = spans[spans.count - 2]
        #expect(last.syncedLSN >= late.lsn)
        try log.flip(path, byte: late.offset + late.length / 2, bit: 0)
        let error = expectRecoveryError("record \(late.lsn) was declared synced by record \(last.lsn)") { try log.recover() }
        #expect(error?.logFailure?.file == path && error?.logFailure?.offset == late.offset, "\(error.map(String.init(describing:)) ?? "-")")
        if case .recordCorrupt(_, _, let declaredSynced, _, _)? = error?.logFailure?.problem {
            #expect(declaredSynced)
        } else {
            Issue.record("expected a corrupt record, got \(error.map(String.init(describing:)) ?? "-")")
        }
    }

    @Test("damage to a record that a later record declares synced is corruption, whatever bytes that later record ends with",
          arguments: [ChargeScope.unscoped, ChargeScope(provider: 7, model: 3 << 24)])
    func declaredSyncedDamageIsAnError(lastScope: ChargeScope) async throws {
        let store = try DurabilityStore()
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: 0xC022_0008)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        model.run(40, of: &workload, log: log)
        try await log.waitUntilDurable(UInt64(model.records.count))
        // Appended after everything before it was synced, and says so. An unscoped debit's
        // encoding ends in eight zero bytes (the scope); with model 3 << 24 the last byte is 3.
        model.run(Command(key: workload.freshKey(), .debit(workload.accounts[0], Millicredits(1), scope: lastScope)), log: log)
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()
        let path = store.segmentPath(WALFormat.segmentName(firstLSN: 1))
        let spans = recordSpans(of: try store.simulated.readFile(path))
        let (damaged, last) = (spans[spans.count - 2], spans[spans.count - 1])
        try #require(last.syncedLSN >= damaged.lsn)
        store.simulated.flipBit(path: path, byteOffset: damaged.offset + damaged.length / 2, bit: 4)
        let error = expectRecoveryError("record \(damaged.lsn) was declared synced by record \(last.lsn) (scope \(lastScope))") {
            try store.recover()
        }
        #expect(error?.logFailure?.file == path && error?.logFailure?.offset == damaged.offset, "\(error.map(String.init(describing:)) ?? "-")")
    }

    @Test("a bit flip in a segment header is named with its file (offset 0), in every segment")
    func flippedSegmentHeaders() async throws {
        let seed = DurabilitySeed.make("CorruptionTests.flippedSegmentHeaders")
        var random = DurabilityRandom(seed: seed)
        let log = try await SegmentedLog(seed: seed, small: 20, bulky: 9, tail: 5)
        let segments = try log.segments()
        try #require(segments.count == 2)
        for (index, segment) in segments.enumerated() {
            let path = log.path(segment)
            let byte = random.below(WALFormat.segmentHeaderSize)
            let bit = random.below(8)
            try log.flip(path, byte: byte, bit: bit)
            let failure = expectWALFailure { try log.read() }
            #expect(failure?.file == path && failure?.offset == 0, "header byte \(byte) bit \(bit): \(failure.map(String.init(describing:)) ?? "-")")
            #expect(expectRecoveryError { try log.recover() }?.logFailure?.file == path)
            // Point-in-time keeps the segments before it.
            let kept = index == 0 ? 0 : Int(WALFormat.firstLSN(ofSegmentNamed: segment)!) - 1
            let (entries, report) = try log.read(mode: .pointInTime)
            #expect(entries.count == kept)
            #expect(report.droppedSegments == Array(segments[index...]))
            try log.flip(path, byte: byte, bit: bit)
        }
    }

    @Test("a missing middle or first segment is an error naming the gap")
    func missingSegments() async throws {
        let log = try await SegmentedLog(seed: 0xC022_0004, small: 20, bulky: 17, tail: 5)
        let segments = try log.segments()
        try #require(segments.count == 3)
        let middle = try log.fileSystem.readFile(log.path(segments[1]))
        try log.fileSystem.remove(log.path(segments[1]))
        let failure = expectWALFailure { try log.read() }
        #expect(failure?.file == log.path(segments[2]) && failure?.offset == 24)
        #expect(failure?.problem == .recordsMissing(from: WALFormat.firstLSN(ofSegmentNamed: segments[1])!,
                                                    to: WALFormat.firstLSN(ofSegmentNamed: segments[2])!),
                "\(failure.map(String.init(describing:)) ?? "-")")
        #expect(expectRecoveryError { try log.recover() } != nil)
        let kept = Int(WALFormat.firstLSN(ofSegmentNamed: segments[1])!) - 1
        let prefix = try log.recover(mode: .pointInTime)
        #expect(prefix.report.lastLSN == UInt64(kept) && prefix.report.segmentsDropped == [segments[2]])
        #expect(prefix.ledger.stateDigest() == log.referenceDigest(kept))

        let restored = try log.fileSystem.open(log.path(segments[1]), create: true)
        try restored.write(middle, at: 0)
        restored.close()
        #expect(try log.read().entries.count == log.records.count)

        // Without a snapshot the log must start at LSN 1.
        try log.fileSystem.rename(log.path(segments[0]), to: log.path(segments[0]) + ".moved")
        let start = expectWALFailure { try log.read() }
        #expect(start?.problem == .logStartMissing(needed: 1, found: WALFormat.firstLSN(ofSegmentNamed: segments[1])!),
                "\(start.map(String.init(describing:)) ?? "-")")
        #expect(expectRecoveryError { try log.recover(mode: .pointInTime) } != nil, "no prefix exists to recover")
    }

    @Test("a record replaced by another with a valid checksum breaks the chain or the LSN order: an error")
    func forgedAndReorderedRecords() async throws {
        let log = try await SegmentedLog(seed: 0xC022_0005, small: 20, bulky: 9, tail: 5)
        let segments = try log.segments()
        try #require(segments.count == 2)
        let path = log.path(segments[0])
        let spans = try log.spans(segments[0])
        let victim = spans[10]
        let record = log.records[Int(victim.lsn) - 1]
        // Same command, time and LSN, checksummed, but naming a different predecessor.
        var forged = ByteWriter()
        WALRecord.append(record.command, at: record.time, lsn: victim.lsn, previous: victim.previous ^ 0x5A5A, syncedLSN: victim.lsn - 1, to: &forged)
        #expect(forged.count == victim.length)
        let original = try log.fileSystem.readFile(path)
        let file = try log.fileSystem.open(path, create: false)
        defer { file.close() }
        try file.write(forged.bytes, at: Int64(victim.offset))
        var failure = expectWALFailure { try log.read() }
        #expect(failure?.offset == victim.offset && failure?.recordDamage == .chainBroken(found: victim.previous ^ 0x5A5A, expected: victim.previous),
                "\(failure.map(String.init(describing:)) ?? "-")")

        // Two records swapped (both valid): the LSN order catches it.
        try file.write(Array(original[victim.offset ..< victim.end]), at: Int64(victim.offset))
        let (first, second) = (spans[11], spans[12])
        var swapped = Array(original[second.offset ..< second.end])
        swapped += original[first.offset ..< first.end]
        try file.write(swapped, at: Int64(first.offset))
        failure = expectWALFailure { try log.read() }
        #expect(failure?.offset == first.offset && failure?.recordDamage == .unexpectedLSN(found: second.lsn, expected: first.lsn),
                "\(failure.map(String.init(describing:)) ?? "-")")
        try file.write(original, at: 0)
        #expect(try log.read().entries.count == log.records.count)
    }

    @Test("a snapshot newer than the log, or from another history, stops recovery")
    func snapshotNotMatchingTheLog() async throws {
        let fixture = try await SnapshottedLog(seed: 0xC022_0006)
        let store = fixture.store
        let segment = store.segmentPath(WALFormat.segmentName(firstLSN: 1))
        let spans = recordSpans(of: try store.simulated.readFile(segment))
        // The log loses its records after 250 (as if cut), but a snapshot says 300 were synced.
        let ledger = store.reference(fixture.records)
        try store.writeSnapshot(ledger, lsn: 300, chain: spans[299].checksum)
        store.simulated.truncate(path: segment, to: spans[250].offset)
        let newer = expectRecoveryError { try store.recover() }
        #expect(newer?.logFailure?.problem == .logBehindSnapshot(snapshotLSN: 300, logLSN: 250), "\(newer.map(String.init(describing:)) ?? "-")")
        try store.simulated.remove(store.snapshotDirectory + "/" + SnapshotFile.name(lsn: 300))

        // A snapshot whose chain value is not the log's record at its LSN.
        try store.writeSnapshot(store.reference(fixture.records.prefix(240)), lsn: 240, chain: spans[239].checksum ^ 1)
        let foreign = expectRecoveryError { try store.recover() }
        #expect(foreign?.logFailure?.problem == .snapshotMismatch(lsn: 240, recordChecksum: spans[239].checksum,
                                                                  snapshotChecksum: spans[239].checksum ^ 1),
                "\(foreign.map(String.init(describing:)) ?? "-")")
    }

    @Test("bit flips in snapshots: the damaged one is rejected (reported) and recovery falls back to the older one or the log start")
    func damagedSnapshotsFallBack() async throws {
        let seed = DurabilitySeed.make("CorruptionTests.damagedSnapshotsFallBack")
        var random = DurabilityRandom(seed: seed)
        let fixture = try await SnapshottedLog(seed: seed)
        let store = fixture.store
        let intact = try store.recover()
        #expect(intact.report.snapshot == SnapshotFile.name(lsn: 200) && intact.report.snapshotsRejected.isEmpty)
        #expect(intact.ledger.stateDigest() == fixture.finalDigest)

        func flip(_ path: String) throws -> (Int, Int) {
            let size = Int(try store.simulated.size(of: path))
            let (byte, bit) = (random.below(size), random.below(8))
            store.simulated.flipBit(path: path, byteOffset: byte, bit: bit)
            return (byte, bit)
        }
        for trial in 0 ..< 12 {
            let (byte, bit) = try flip(fixture.newer)
            let context = "trial \(trial): bit \(bit) of byte \(byte) of the newer snapshot"
            var problem: SnapshotProblem?
            do { _ = try SnapshotFile.read(path: fixture.newer, fileSystem: store.simulated, configuration: store.ledgerConfiguration) } catch {
                problem = error
            }
            #expect(problem != nil, "\(context): SnapshotFile.read accepted a damaged snapshot")
            let recovered = try store.recover()
            #expect(recovered.ledger.stateDigest() == fixture.finalDigest, "\(context)")
            if problem != nil {
                #expect(recovered.report.snapshotsRejected.count == 1 && recovered.report.snapshotsRejected[0].path == fixture.newer,
                        "\(context): \(recovered.report.snapshotsRejected)")
                #expect(recovered.report.snapshot == SnapshotFile.name(lsn: 100), "\(context)")
            }
            store.simulated.flipBit(path: fixture.newer, byteOffset: byte, bit: bit)
        }

        // Both damaged: from the log's start, both rejections reported.
        let newerFlip = try flip(fixture.newer)
        let olderFlip = try flip(fixture.older)
        let fromStart = try store.recover()
        #expect(fromStart.report.snapshot == nil)
        #expect(fromStart.report.snapshotsRejected.count == 2)
        #expect(fromStart.report.recordsReplayed == fixture.records.count)
        #expect(fromStart.ledger.stateDigest() == fixture.finalDigest)
        store.simulated.flipBit(path: fixture.newer, byteOffset: newerFlip.0, bit: newerFlip.1)
        store.simulated.flipBit(path: fixture.older, byteOffset: olderFlip.0, bit: olderFlip.1)

        // A snapshot cut short is rejected the same way.
        let size = Int(try store.simulated.size(of: fixture.newer))
        store.simulated.truncate(path: fixture.newer, to: size - 1 - random.below(size - 1))
        let cut = try store.recover()
        #expect(cut.report.snapshot == SnapshotFile.name(lsn: 100) && cut.report.snapshotsRejected.count == 1)
        #expect(cut.ledger.stateDigest() == fixture.finalDigest)
    }
}

@Suite("Snapshot files: what a crash during a snapshot write leaves")
struct SnapshotLeftoverTests {
    @Test("a temporary snapshot file a crash left is ignored by recovery and removed by the next snapshot write")
    func staleTemporaryFileIsRemoved() async throws {
        let fixture = try await SnapshottedLog(seed: 0xC022_0007)
        let store = fixture.store
        let stale = store.snapshotDirectory + "/.tmp-" + SnapshotFile.name(lsn: 123)
        let file = try store.simulated.open(stale, create: true)
        try file.write([1, 2, 3, 4], at: 0)
        file.close()
        let recovered = try store.recover()
        #expect(recovered.ledger.stateDigest() == store.reference(fixture.records).stateDigest(), "the leftover is not a snapshot")
        try store.writeSnapshot(recovered.ledger, lsn: UInt64(fixture.records.count), chain: recovered.log.lastChecksum)
        let names = try store.simulated.contentsOfDirectory(store.snapshotDirectory)
        #expect(!names.contains { $0.hasPrefix(".tmp-") }, "left: \(names)")
        #expect(names.contains(SnapshotFile.name(lsn: UInt64(fixture.records.count))))
    }
}
