import DurabilityTestSupport
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

// The audit chain (docs/audit.md): every forgery issue 16 lists is detected, each by its own
// test, by a forger who knows the format — one who recomputes every CRC, and (the stronger one)
// every seal's SHA-256 head too, so that only the signed checkpoints can catch it.
//
// Randomized data directories print their seed; CREDITS_TEST_SEED=<seed> replays one.

/// A data directory of `shardCount` shards on a simulated disk, written by real `ShardLog`s with
/// a signing key: seeded workload commands appended in batches of 1…6 (one seal each), a
/// snapshot checkpoint halfway and a close checkpoint at the end, and interval checkpoints
/// every 20 records.
struct AuditFixture {
    let disk: TestDisk
    let storage: StorageConfiguration
    let key: AuditSigningKey
    let shardCount: Int
    /// The data keys the logs are sealed with (nil: plain version 2 segments).
    var keys: EncryptionKeyRing?
    /// Command records logged per shard, and the LSN each asked a snapshot checkpoint at.
    var records: [Int] = []
    var snapshotLSNs: [UInt64] = []

    var fileSystem: SimulatedFileSystem { disk.simulated }

    static func make(_ label: String, shards: Int = 2, batches: Int = 40, close: Bool = true,
                     keys: EncryptionKeyRing? = nil) async throws -> AuditFixture {
        let seed = DurabilitySeed.make(label)
        let key = AuditSigningKey.generate()
        var log = smallLogConfiguration()
        log.auditSigningKey = key
        log.auditCheckpointEveryRecords = 20
        let disk = TestDisk(preallocates: false)
        let storage = StorageConfiguration(directory: "/data", fileSystem: disk, log: log, snapshotEveryRecords: nil,
                                           snapshotEveryMillis: nil)
        _ = try ShardStorage.prepare(storage: storage, shardCount: shards, create: true)
        var fixture = AuditFixture(disk: disk, storage: storage, key: key, shardCount: shards, keys: keys)
        var random = DurabilityRandom(seed: seed)
        for shard in 0 ..< shards {
            let shardLog = try ShardLog(directory: storage.walDirectory(shard), fileSystem: disk, shard: UInt32(shard),
                                        shardCount: UInt32(shards), configuration: log, resumingAfter: WALReader.Report(),
                                        keys: keys)
            var workload = DurabilityWorkload(seed: seed &+ UInt64(shard), tenantBase: 1 + UInt64(shard) * 1_000)
            var model = ShardModel(configuration: LedgerConfiguration())
            let prologue = workload.prologue()
            var recorded: [Command] = []
            for command in prologue {
                let (outcome, lsn) = model.run(command, log: nil)
                workload.learn(command, outcome)
                if lsn != nil { recorded.append(command) }
            }
            shardLog.append(recorded, at: model.now)
            for batch in 0 ..< batches {
                model.now = model.now.adding(millis: 1 + Int64(random.below(50)))
                recorded = []
                for _ in 0 ... random.below(6) {
                    let command = workload.next()
                    let (outcome, lsn) = model.run(command, log: nil)
                    workload.learn(command, outcome)
                    if lsn != nil { recorded.append(command) }
                }
                shardLog.append(recorded, at: model.now)
                if batch == batches / 2 {
                    // What a snapshot does: wait for the log to be synced there (and signed).
                    fixture.snapshotLSNs.append(shardLog.lastAppendedLSN)
                    try await shardLog.waitUntilSynced(shardLog.lastAppendedLSN)
                }
            }
            try await shardLog.waitUntilDurable(shardLog.lastAppendedLSN)
            if close { await shardLog.close() }
            fixture.records.append(model.records.count)
        }
        return fixture
    }

    func verify(keys: [AuditPublicKey]? = nil) -> AuditReport {
        AuditVerifier.verify(directory: storage.directory, publicKeys: keys ?? [key.publicKey], fileSystem: disk)
    }

    func checkpointsPath(_ shard: Int) -> String { AuditFiles.checkpointsPath(walDirectory: storage.walDirectory(shard)) }

    func checkpoints(_ shard: Int) throws -> [AuditCheckpoint] {
        let bytes = try fileSystem.readFile(checkpointsPath(shard))
        return try (0 ..< bytes.count / AuditCheckpoint.size).map { try AuditCheckpoint(decoding: bytes, at: $0 * AuditCheckpoint.size) }
    }

    // MARK: The forger

    /// A shard's log as a forger sees it: the command records' bytes in batches (each batch
    /// the records one seal covers), and the seals' bytes.
    struct ParsedLog {
        var batches: [[[UInt8]]] = []
        var seals: [[UInt8]] = []
    }

    func segments(_ shard: Int) throws -> [String] {
        try fileSystem.contentsOfDirectory(storage.walDirectory(shard)).filter { WALFormat.firstLSN(ofSegmentNamed: $0) != nil }.sorted()
    }

    func parse(_ shard: Int) throws -> ParsedLog {
        var parsed = ParsedLog()
        var batch: [[UInt8]] = []
        for name in try segments(shard) {
            let bytes = try fileSystem.readFile(storage.walDirectory(shard) + "/" + name)
            bytes.withUnsafeBytes { raw in
                var offset = WALFormat.segmentHeaderSize
                while offset < raw.count, case .record(let header, let length) = WALRecord.scan(raw, at: offset, end: raw.count) {
                    let record = Array(bytes[offset ..< offset + length])
                    if header.isSeal {
                        parsed.batches.append(batch)
                        parsed.seals.append(record)
                        batch = []
                    } else {
                        batch.append(record)
                    }
                    offset += length
                }
            }
        }
        precondition(batch.isEmpty, "the fixture's logs end with a seal")
        return parsed
    }

    /// Writes `log` as shard `shard`'s whole log, as a forger who knows the format would: LSNs
    /// renumbered 1, 2, …, every CRC and the CRC chain recomputed, the seals' LSNs and links
    /// fixed, and (`recomputeHeads`) every seal's SHA-256 head recomputed from the seed — or
    /// else the original heads kept. `splitAfterBatch`: a second segment starts there.
    func write(_ log: ParsedLog, shard: Int, recomputeHeads: Bool, splitAfterBatch: Int? = nil) throws {
        for name in try segments(shard) { try fileSystem.remove(storage.walDirectory(shard) + "/" + name) }
        var head = AuditChain.seed(shard: UInt32(shard), shardCount: UInt32(shardCount))
        var lsn: UInt64 = 0
        var previous: UInt32 = 0
        var segment: [UInt8] = []
        var segmentFirst: UInt64 = 1
        func flush() throws {
            guard !segment.isEmpty else { return }
            let file = try fileSystem.open(storage.walDirectory(shard) + "/" + WALFormat.segmentName(firstLSN: segmentFirst), create: true)
            try file.write(segment, at: 0)
            file.close()
            segment = []
        }
        var generation: UInt32 = 0
        func startSegment() {
            segmentFirst = lsn + 1
            // A sealed log's segments name the key and a rising generation (the forger needs
            // no key for that: the header is in clear).
            if keys != nil { generation += 1 }
            segment = SegmentHeader(shardIndex: UInt32(shard), shardCount: UInt32(shardCount), firstLSN: segmentFirst,
                                    previousChecksum: previous, segmentSize: UInt64(storage.log.segmentSize),
                                    unsyncedBytesMax: UInt64(storage.log.unsyncedBytesMax),
                                    keyID: keys?.newestID ?? 0, generation: generation).encoded()
        }
        startSegment()
        for (index, batch) in log.batches.enumerated() {
            if index == splitAfterBatch {
                try flush()
                startSegment()
            }
            let first = lsn + 1
            var covered: [UInt8] = []
            for var record in batch {
                lsn += 1
                if record[20] == WALFormat.frameRecordKind {
                    // A sealed frame: its clear fields renumbered, its inner chain value kept
                    // (the forger cannot open it) and named by the next record as its link.
                    let count = UInt64(littleEndian: record.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 40, as: UInt64.self) })
                        - UInt64(littleEndian: record.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self) })
                    put(lsn + count, into: &record, at: 40)
                    patch(&record, lsn: lsn, previous: previous)
                    previous = UInt32(littleEndian: record.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 48, as: UInt32.self) })
                    lsn += count
                } else {
                    patch(&record, lsn: lsn, previous: previous)
                    previous = crc(of: record)
                }
                covered += record
            }
            var seal = log.seals[index]
            put(lsn, into: &seal, at: 8)
            put(previous, into: &seal, at: 16)
            put(first, into: &seal, at: 40)
            seal.replaceSubrange(48 ..< 80, with: head)
            let newHead = recomputeHeads
                ? covered.withUnsafeBytes { AuditChain.head(previous: head, carry: [], records: $0) }
                : Array(seal[80 ..< 112])
            seal.replaceSubrange(80 ..< 112, with: newHead)
            head = newHead
            put(crc(of: seal), into: &seal, at: 4)
            segment += covered + seal
        }
        try flush()
    }

    func patch(_ record: inout [UInt8], lsn: UInt64, previous: UInt32) {
        put(lsn, into: &record, at: 8)
        put(previous, into: &record, at: 16)
        put(crc(of: record), into: &record, at: 4)
    }

    func crc(of record: [UInt8]) -> UInt32 { CRC32C.checksum(Array(record[8...]), continuing: CRC32C.checksum(Array(record[0 ..< 4]))) }

    func put<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(offset ..< offset + MemoryLayout<T>.size, with: $0) }
    }
}

/// The record's command with its amount raised by 1,000 mc (nil: the command carries no amount
/// we edit), its CRC left stale (the forger's `write` recomputes it).
private func withEditedAmount(_ record: [UInt8]) -> [UInt8]? {
    var reader = ByteReader(record, from: WALFormat.recordHeaderSize)
    guard let command = try? Command(decoding: &reader) else { return nil }
    let edited: Action
    switch command.action {
    case .debit(let account, let amount, let scope): edited = .debit(account, Millicredits(amount.rawValue + 1_000), scope: scope)
    default: return nil
    }
    var writer = ByteWriter(capacity: record.count)
    Command(key: command.key, edited).encode(into: &writer)
    guard writer.count == record.count - WALFormat.recordHeaderSize else { return nil }
    return Array(record[0 ..< WALFormat.recordHeaderSize]) + writer.bytes
}

@Suite("Audit chain: SHA-256 seals per write batch, signed checkpoints, and every forgery detected")
struct AuditChainTests {
    @Test("a clean directory verifies: every record, seal and checkpoint, with the signatures")
    func cleanDirectoryVerifies() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.clean")
        let report = fixture.verify()
        #expect(report.ok, "\(String(describing: report.firstBad))")
        #expect(report.firstBad == nil)
        #expect(report.records == fixture.records.reduce(0, +))
        let written = try (0 ..< fixture.shardCount).map { try fixture.checkpoints($0).count }.reduce(0, +)
        #expect(report.checkpoints == written)
        #expect(written >= 2 * fixture.shardCount, "at least the snapshot's and the close's checkpoint per shard")
        #expect(report.checkpointsVerified)
        #expect(report.unsignedRecords == 0 && report.unsealedRecords == 0 && report.unchainedRecords == 0)
        for shard in 0 ..< fixture.shardCount {
            let checkpoints = try fixture.checkpoints(shard)
            // The close signs the end (unless the last sync's interval checkpoint already did).
            #expect(checkpoints.last?.lsn == UInt64(fixture.records[shard]))
            #expect(checkpoints.last?.reason == .close || checkpoints.last?.reason == .interval)
            // The snapshot's LSN is signed (by its own checkpoint, or by the interval one its sync wrote).
            #expect(checkpoints.contains { $0.lsn == fixture.snapshotLSNs[shard] && ($0.reason == .snapshot || $0.reason == .interval) }
                || checkpoints.contains { $0.reason == .snapshot && $0.lsn >= fixture.snapshotLSNs[shard] })
            #expect(checkpoints.contains { $0.reason == .interval })
            #expect(checkpoints.map(\.sequence) == Array(1 ... UInt64(checkpoints.count)))
        }
        // The forger's own rewrite of an untouched log is the log itself: it still verifies
        // (so the forgery tests below fail only for the forgery).
        for shard in 0 ..< fixture.shardCount {
            try fixture.write(try fixture.parse(shard), shard: shard, recomputeHeads: true)
        }
        #expect(fixture.verify().ok)
    }

    @Test("without a public key the chain is checked alone and the report says the signatures were not verified")
    func withoutPublicKey() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.noKey")
        let report = fixture.verify(keys: [])
        #expect(report.ok)
        #expect(!report.checkpointsVerified)
        #expect(report.notes.contains { $0.contains("not verified") })
    }

    @Test("another public key fails: the checkpoints were not signed by it")
    func wrongPublicKey() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.wrongKey")
        let report = fixture.verify(keys: [AuditSigningKey.generate().publicKey])
        #expect(!report.ok)
        #expect(report.firstBad?.problem == "checkpoint_key_unknown")
        #expect(report.firstBad?.file == fixture.checkpointsPath(0))
    }

    @Test("a checkpoint whose head was changed (its CRC recomputed) fails its signature")
    func forgedCheckpoint() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.forgedCheckpoint")
        var bytes = try fixture.fileSystem.readFile(fixture.checkpointsPath(1))
        bytes[48] ^= 0x01
        fixture.put(CRC32C.checksum(Array(bytes[0 ..< 176])), into: &bytes, at: 176)
        let file = try fixture.fileSystem.open(fixture.checkpointsPath(1), create: false)
        try file.write(bytes, at: 0)
        file.close()
        let report = fixture.verify()
        #expect(!report.ok)
        #expect(report.firstBad?.problem == "checkpoint_signature_invalid")
        #expect(report.firstBad?.offset == 0)
    }

    @Test("an amount edited with every CRC recomputed: the seal names its batch, even without a key")
    func editedAmountCRCsRecomputed() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.editedAmount")
        var log = try fixture.parse(0)
        let (batch, index) = try #require(firstDebit(in: log))
        log.batches[batch][index] = try #require(withEditedAmount(log.batches[batch][index]))
        try fixture.write(log, shard: 0, recomputeHeads: false)
        let editedLSN = UInt64(log.batches[..<batch].map(\.count).reduce(0, +) + index + 1)
        for keys in [nil, [] as [AuditPublicKey]] {
            let report = fixture.verify(keys: keys)
            #expect(!report.ok)
            let bad = try #require(report.firstBad)
            #expect(bad.problem == "audit_chain_mismatch")
            #expect(bad.shard == 0)
            // The first record of the edited record's batch: its file, offset and LSN.
            let batchFirstLSN = UInt64(log.batches[..<batch].map(\.count).reduce(0, +) + 1)
            #expect(bad.lsn == batchFirstLSN && bad.lsn <= editedLSN)
            #expect(bad.file == fixture.storage.walDirectory(0) + "/" + WALFormat.segmentName(firstLSN: 1))
            let offset = WALFormat.segmentHeaderSize + log.batches[..<batch].map { $0.map(\.count).reduce(0, +) + WALFormat.sealRecordSize }.reduce(0, +)
            #expect(bad.offset == offset)
        }
        // The log reader (start-up) alone does not hash the records: it sees valid CRCs.
        #expect(throws: Never.self) {
            _ = try WALReader.read(directories: [fixture.storage.archiveDirectory(0), fixture.storage.walDirectory(0)],
                                   fileSystem: fixture.disk, shard: 0) { _ in }
        }
    }

    @Test("an amount edited with every CRC and every seal recomputed: the signed checkpoint catches it")
    func editedAmountEverythingRecomputed() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.editedAmountFull")
        var log = try fixture.parse(0)
        let (batch, index) = try #require(firstDebit(in: log))
        log.batches[batch][index] = try #require(withEditedAmount(log.batches[batch][index]))
        try fixture.write(log, shard: 0, recomputeHeads: true)
        let report = fixture.verify()
        #expect(!report.ok)
        let bad = try #require(report.firstBad)
        #expect(bad.problem == "checkpoint_head_mismatch")
        let editedLSN = UInt64(log.batches[..<batch].map(\.count).reduce(0, +) + index + 1)
        let checkpoints = try fixture.checkpoints(0)
        // Named: the first record after the last checkpoint that still matches.
        let lastGood = checkpoints.last { $0.lsn < editedLSN }?.lsn ?? 0
        #expect(bad.lsn <= editedLSN && bad.lsn > lastGood)
    }

    @Test("a deleted record, the following LSNs, CRCs and seals fixed up, is detected")
    func deletedRecord() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.deleted")
        var log = try fixture.parse(1)
        let batch = try #require(log.batches.indices.dropFirst(3).first { log.batches[$0].count >= 2 })
        log.batches[batch].remove(at: 1)
        for recompute in [false, true] {
            try fixture.write(log, shard: 1, recomputeHeads: recompute)
            let report = fixture.verify()
            #expect(!report.ok)
            let bad = try #require(report.firstBad)
            #expect(bad.shard == 1)
            #expect(["audit_chain_mismatch", "checkpoint_head_mismatch", "checkpoint_not_at_seal"].contains(bad.problem),
                    "\(bad)")
            let deletedLSN = UInt64(log.batches[..<batch].map(\.count).reduce(0, +) + 2)
            #expect(bad.lsn <= deletedLSN)
        }
    }

    @Test("a record moved from one shard to another (both logs rewritten consistently) is detected")
    func movedToAnotherShard() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.moved")
        var from = try fixture.parse(0)
        var to = try fixture.parse(1)
        let batch = from.batches.count - 5
        let record = from.batches[batch].removeLast()
        if from.batches[batch].isEmpty {
            from.batches.remove(at: batch)
            from.seals.remove(at: batch)
        }
        to.batches[to.batches.count - 5].append(record)
        for recompute in [false, true] {
            try fixture.write(from, shard: 0, recomputeHeads: recompute)
            try fixture.write(to, shard: 1, recomputeHeads: recompute)
            let report = fixture.verify()
            #expect(!report.ok)
            #expect(report.firstBad?.shard == 0, "the shard it was taken from fails first")
            // The receiving shard is caught on its own too.
            let original = try await AuditFixture.make("AuditChainTests.moved.receiver")
            var receiver = try original.parse(1)
            receiver.batches[receiver.batches.count - 5].append(record)
            try original.write(receiver, shard: 1, recomputeHeads: recompute)
            let alone = original.verify()
            #expect(!alone.ok)
            #expect(alone.firstBad?.shard == 1)
        }
        // The seed binds the chain to its shard: the same records under another shard's seed
        // give another head.
        let a = AuditChain.seed(shard: 0, shardCount: 2), b = AuditChain.seed(shard: 1, shardCount: 2)
        #expect(a != b && a != AuditChain.seed(shard: 0, shardCount: 4))
    }

    @Test("segments reordered (renamed) are detected")
    func segmentsReordered() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.reordered")
        let log = try fixture.parse(0)
        try fixture.write(log, shard: 0, recomputeHeads: true, splitAfterBatch: log.batches.count / 2)
        let names = try fixture.segments(0)
        try #require(names.count == 2)
        #expect(fixture.verify().ok, "the two-segment rewrite is the same log")
        let directory = fixture.storage.walDirectory(0) + "/"
        try fixture.fileSystem.rename(directory + names[0], to: directory + "swap")
        try fixture.fileSystem.rename(directory + names[1], to: directory + names[0])
        try fixture.fileSystem.rename(directory + "swap", to: directory + names[1])
        let report = fixture.verify()
        #expect(!report.ok)
        #expect(report.firstBad?.shard == 0)
        #expect(report.firstBad?.file.hasPrefix(directory) == true)
        // Reordered batches inside a segment, every CRC and seal recomputed: the checkpoints catch it.
        var swapped = log
        swapped.batches.swapAt(3, 4)
        swapped.seals.swapAt(3, 4)
        try fixture.write(swapped, shard: 0, recomputeHeads: true)
        let inner = fixture.verify()
        #expect(!inner.ok)
        #expect(["checkpoint_head_mismatch", "checkpoint_not_at_seal"].contains(inner.firstBad?.problem ?? ""))
    }

    @Test("a tail cut after a checkpoint (at a seal, so the rest of the log is consistent) is detected")
    func tailCutAfterCheckpoint() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.tailCut")
        var log = try fixture.parse(1)
        log.batches.removeLast(3)
        log.seals.removeLast(3)
        try fixture.write(log, shard: 1, recomputeHeads: true)
        let report = fixture.verify()
        #expect(!report.ok)
        let bad = try #require(report.firstBad)
        #expect(bad.problem == "records_missing_after_checkpoint")
        let kept = UInt64(log.batches.map(\.count).reduce(0, +))
        #expect(bad.lsn == kept + 1)
        #expect(bad.file == fixture.storage.walDirectory(1) + "/" + WALFormat.segmentName(firstLSN: 1))
        // Without the key the checkpoints' heads still say where the log ended.
        #expect(fixture.verify(keys: []).firstBad?.problem == "records_missing_after_checkpoint")
    }

    @Test("the checkpoints file removed while a key is given: refused (signed history cannot vanish unnoticed)")
    func checkpointsRemoved() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.checkpointsRemoved")
        try fixture.fileSystem.remove(fixture.checkpointsPath(0))
        #expect(fixture.verify().firstBad?.problem == "checkpoints_missing")
        #expect(fixture.verify(keys: []).ok, "without a key nothing says checkpoints were expected")
    }

    @Test("a log not closed (a crash): the chain verifies up to its end; reopening continues the chain and the close signs it")
    func crashThenReopen() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.crash", shards: 1, close: false)
        // The writer may still be writing a checkpoint: wait for none (read what is synced).
        let report = fixture.verify()
        #expect(report.ok, "\(String(describing: report.firstBad))")
        // Recovery reads the log back and a new log continues it.
        let (_, walReport, _) = try ShardStorage.recover(shard: 0, shardCount: 1, storage: fixture.storage, ledger: LedgerConfiguration())
        #expect(walReport.auditHead != nil && walReport.auditCarry.isEmpty)
        let reopened = try ShardLog(directory: fixture.storage.walDirectory(0), fileSystem: fixture.disk, shard: 0, shardCount: 1,
                                    configuration: fixture.storage.log, resumingAfter: walReport)
        reopened.append([Command(key: IdempotencyKey(high: 7, low: 7), .freeze(AccountID(tenant: TenantID(1), number: 0)))],
                        at: Timestamp(millisSinceEpoch: durabilityStart.millisSinceEpoch + 10_000_000))
        await reopened.close()
        let after = fixture.verify()
        #expect(after.ok, "\(String(describing: after.firstBad))")
        #expect(after.records == fixture.records[0] + 1)
        #expect(after.unsignedRecords == 0)
        #expect(try fixture.checkpoints(0).last?.lsn == UInt64(fixture.records[0] + 1))
    }

    @Test("records a crash left without their seal are sealed by the next writer, and the chain verifies")
    func unsealedTailIsCarried() async throws {
        let fixture = try await AuditFixture.make("AuditChainTests.unsealed", shards: 1)
        var log = try fixture.parse(0)
        try fixture.write(log, shard: 0, recomputeHeads: true)
        // Cut the last seal only (as a crash between two chunks of a batch would).
        let path = fixture.storage.walDirectory(0) + "/" + WALFormat.segmentName(firstLSN: 1)
        let size = try fixture.fileSystem.size(of: path)
        let file = try fixture.fileSystem.open(path, create: false)
        try file.truncate(size - Int64(WALFormat.sealRecordSize))
        file.close()
        // The close checkpoint now names a seal that is gone: remove the checkpoints to look at the chain alone.
        try fixture.fileSystem.remove(fixture.checkpointsPath(0))
        let cut = fixture.verify(keys: [])
        #expect(cut.ok)
        #expect(cut.unsealedRecords == log.batches.last!.count)
        let (_, walReport, _) = try ShardStorage.recover(shard: 0, shardCount: 1, storage: fixture.storage, ledger: LedgerConfiguration())
        #expect(walReport.auditCarry.count == log.batches.last!.map(\.count).reduce(0, +))
        let reopened = try ShardLog(directory: fixture.storage.walDirectory(0), fileSystem: fixture.disk, shard: 0, shardCount: 1,
                                    configuration: fixture.storage.log, resumingAfter: walReport)
        reopened.append([Command(key: IdempotencyKey(high: 8, low: 8), .freeze(AccountID(tenant: TenantID(1), number: 0)))],
                        at: Timestamp(millisSinceEpoch: durabilityStart.millisSinceEpoch + 10_000_000))
        await reopened.close()
        let after = fixture.verify()
        #expect(after.ok, "\(String(describing: after.firstBad))")
        #expect(after.unsealedRecords == 0 && after.unsignedRecords == 0)
        log = try fixture.parse(0)
        #expect(log.batches.last!.count == 1 + cut.unsealedRecords, "the new seal covers the carried records and the new one")
    }

    @Test("keys: PEM round trip, openssl's fixed DER forms, bad PEM is a typed error, a key inside the data directory is refused")
    func keys() throws {
        let key = AuditSigningKey.generate()
        #expect(try AuditSigningKey(pem: key.pemRepresentation) == key)
        #expect(try AuditPublicKey(pem: key.publicKey.pemRepresentation) == key.publicKey)
        #expect(key.pemRepresentation.hasPrefix("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI"), "the form openssl writes")
        // A configuration printed to a log does not leak the key.
        var log = LogConfiguration()
        log.auditSigningKey = key
        let seedHex = key.raw.map { String($0, radix: 16) }.joined()
        for text in [String(describing: log), String(reflecting: log), String(describing: key)] {
            #expect(!text.contains(seedHex) && !text.contains(String(describing: key.raw)))
        }
        // A key openssl genpkey -algorithm ed25519 wrote, and its openssl pkey -pubout.
        let openssl = AuditSigningKey.opensslSample
        let sample = try AuditSigningKey(pem: openssl.privatePEM)
        #expect(try AuditPublicKey(pem: openssl.publicPEM) == sample.publicKey)
        #expect(throws: AuditKeyError.notPEM(expectedLabel: "PRIVATE KEY")) { try AuditSigningKey(pem: "hello") }
        #expect(throws: AuditKeyError.notPEM(expectedLabel: "PRIVATE KEY")) {
            try AuditSigningKey(pem: "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n")
        }
        #expect(throws: AuditKeyError.notEd25519) {
            try AuditSigningKey(pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
        }
        #expect(throws: AuditKeyError.notPEM(expectedLabel: "PUBLIC KEY")) { try AuditPublicKey(pem: key.pemRepresentation) }
        let root = try makeTemporaryDirectory("audit-key")
        defer { removeTree(root) }
        let data = root + "/data"
        try PosixFileSystem().createDirectory(data)
        for path in [data + "/signing.pem", root + "/key.pem"] {
            let file = try PosixFileSystem().open(path, create: true)
            try file.write(Array(key.pemRepresentation.utf8), at: 0)
            file.close()
        }
        #expect(throws: AuditKeyError.insideDataDirectory(data + "/signing.pem")) {
            try AuditSigningKey(pemFile: data + "/signing.pem", outside: data)
        }
        #expect(throws: AuditKeyError.insideDataDirectory(data + "/../data/signing.pem")) {
            try AuditSigningKey(pemFile: data + "/../data/signing.pem", outside: root + "/./data")
        }
        #expect(try AuditSigningKey(pemFile: root + "/key.pem", outside: data) == key)
        #expect(throws: AuditKeyError.self) { try AuditSigningKey(pemFile: root + "/missing.pem", outside: data) }
    }
}

/// The first debit record in a batch after the prologue's: (batch, index).
private func firstDebit(in log: AuditFixture.ParsedLog) -> (Int, Int)? {
    for (batch, records) in log.batches.enumerated().dropFirst(2) {
        for (index, record) in records.enumerated() where withEditedAmount(record) != nil { return (batch, index) }
    }
    return nil
}

private func removeTree(_ path: String) {
    let fileSystem = PosixFileSystem()
    if let names = try? fileSystem.contentsOfDirectory(path) {
        for name in names { removeTree(path + "/" + name) }
    }
    try? fileSystem.remove(path)
}

extension AuditSigningKey {
    /// A key pair written by `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`
    /// (OpenSSL 3), kept as text so the test needs no openssl binary; the CLI test runs openssl itself.
    static let opensslSample = (
        privatePEM: """
            -----BEGIN PRIVATE KEY-----
            MC4CAQAwBQYDK2VwBCIEIELY2Z2hZKKkLVN4oLRrw86j+EM1buXD0JywqnZxgxSf
            -----END PRIVATE KEY-----
            """,
        publicPEM: """
            -----BEGIN PUBLIC KEY-----
            MCowBQYDK2VwAyEAHqUXPfnFLw95NpN+lDNjlD+ZNZRmqEalFz3/RPau1NQ=
            -----END PUBLIC KEY-----
            """)
}
