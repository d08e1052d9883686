import Crypto
import DurabilityTestSupport
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// Sealed frames and snapshots at the file level (docs/encryption.md): one frame per write
/// batch holding the records a version 2 log would hold; damage reported like any corruption
/// (file, offset) under the torn-tail rule; a torn tail's LSNs written again under a new
/// segment generation, so no nonce repeats; a missing key refused by id.
///
/// Randomized tests print their seed; CREDITS_TEST_SEED=<seed> replays one.
@Suite("Encryption at rest: files")
struct EncryptionFileTests {
    static let key = (0 ..< 32).map { UInt8($0 &* 7 &+ 3) }
    static var keyID: String { EncryptionKeyRing.describe(EncryptionKeyRing.id(of: key)) }

    /// A one-shard store whose log is sealed, with `count` workload records written in two
    /// synced rounds (so later frames declare the earlier ones synced), one record per batch.
    static func sealedStore(seed: UInt64, count: Int = 60) async throws -> (DurabilityStore, StorageConfiguration, ShardModel) {
        let store = try DurabilityStore()
        var storage = store.storage
        storage.encryption = try EncryptionKeyRing(keys: [key])
        let log = try ShardLog(directory: store.walDirectory, fileSystem: storage.fileSystem, shard: 0, shardCount: 1,
                               configuration: storage.log, resumingAfter: WALReader.Report(), keys: storage.encryption)
        var workload = DurabilityWorkload(seed: seed)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        model.run(count / 2, of: &workload, log: log)
        try await log.waitUntilDurable(UInt64(model.records.count))
        model.run(count / 2, of: &workload, log: log)
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()
        return (store, storage, model)
    }

    static func recover(_ store: DurabilityStore, _ storage: StorageConfiguration) throws(RecoveryError) -> ShardRecoveryReport {
        try ShardStorage.recover(shard: 0, shardCount: 1, storage: storage, ledger: store.ledgerConfiguration).2
    }

    /// Rewrites `bytes` at `offset` of `path`, durably (a forger's edit).
    static func overwrite(_ store: DurabilityStore, _ path: String, _ bytes: [UInt8], at offset: Int) throws {
        let file = try store.simulated.open(path, create: false)
        try file.write(bytes, at: Int64(offset))
        try file.sync()
        file.close()
    }

    /// `record` (a whole record's bytes) with its CRC recomputed, as a forger would.
    static func withCRC(_ record: [UInt8]) -> [UInt8] {
        var record = record
        let crc = CRC32C.checksum(Array(record[8...]), continuing: CRC32C.checksum(Array(record[0 ..< 4])))
        withUnsafeBytes(of: crc.littleEndian) { record.replaceSubrange(4 ..< 8, with: $0) }
        return record
    }

    /// The command records (kind 1) of a version 2 segment's bytes, concatenated (seals left out).
    static func commandRecordBytes(_ bytes: [UInt8]) -> [UInt8] {
        recordSpans(of: bytes).flatMap { bytes[$0.offset ..< $0.end] }
    }

    /// The frame at `span` of `bytes` opened with the shard-0 log subkey in `generation`.
    static func open(_ bytes: [UInt8], _ span: RecordSpan, generation: UInt32) -> WALFrame.Opened {
        bytes.withUnsafeBytes { raw in
            guard case .record(let header, let length) = WALRecord.scan(raw, at: span.offset, end: raw.count) else {
                return .damaged(.frameMalformed)
            }
            return WALFrame.open(raw, at: span.offset, length: length, header: header,
                                 key: Sealing.logKey(key, shard: 0), generation: generation)
        }
    }

    @Test("one write batch is one sealed frame and one seal; the frame opens to the records a version 2 log holds, byte for byte")
    func oneFramePerBatch() async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.oneFrame")
        var workload = DurabilityWorkload(seed: seed)
        var model = ShardModel(configuration: LedgerConfiguration())
        var batch: [Command] = []
        for command in workload.prologue() where model.run(command, log: nil).lsn != nil { batch.append(command) }
        for _ in 0 ..< 40 {
            let command = workload.next()
            if model.run(command, log: nil).lsn != nil { batch.append(command) }
        }
        try #require(batch.count > 20)
        var segments: [[UInt8]] = []
        for keys in [nil, try EncryptionKeyRing(keys: [Self.key])] {
            let store = try DurabilityStore()
            let log = try ShardLog(directory: store.walDirectory, fileSystem: store.simulated, shard: 0, shardCount: 1,
                                   configuration: store.storage.log, resumingAfter: WALReader.Report(), keys: keys)
            log.append(batch, at: model.now)
            try await log.waitUntilDurable(UInt64(batch.count))
            await log.close()
            let names = try store.segments()
            try #require(names.count == 1)
            segments.append(try store.simulated.readFile(store.segmentPath(names[0])))
        }
        let (plain, sealed) = (segments[0], segments[1])
        let plainHeader = try SegmentHeader(decoding: plain), sealedHeader = try SegmentHeader(decoding: sealed)
        #expect(plainHeader.version == 2 && plainHeader.keyID == 0, "without a key the writer writes version 2")
        #expect(sealedHeader.version == 3 && sealedHeader.keyID == EncryptionKeyRing.id(of: Self.key) && sealedHeader.generation == 1)
        let spans = recordSpans(of: sealed, includingSeals: true)
        #expect(spans.count == 2 && !spans[0].isSeal && spans[1].isSeal, "one frame then one seal: \(spans.count) records")
        let frame = try #require(spans.first)
        #expect(frame.lsn == 1)
        // The frame's last LSN and last checksum are in clear, and are the plain log's.
        let plainSpans = recordSpans(of: plain)
        #expect(sealed.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: frame.offset + 40, as: UInt64.self) } == UInt64(batch.count))
        #expect(sealed.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: frame.offset + 48, as: UInt32.self) } == plainSpans.last?.checksum)
        guard case .plain(let inner) = Self.open(sealed, frame, generation: 1) else {
            Issue.record("the frame does not open (seed \(seed))")
            return
        }
        #expect(inner == Self.commandRecordBytes(plain), "the frame holds the version 2 records byte for byte (seed \(seed))")
        // Compressed first: the frame is smaller than the records it holds.
        #expect(frame.length < inner.count, "frame \(frame.length) bytes for \(inner.count) plain bytes")
        // In another generation (another nonce) it does not open.
        guard case .damaged(.authenticationFailed) = Self.open(sealed, frame, generation: 2) else {
            Issue.record("a frame opened under another generation's nonce")
            return
        }
    }

    @Test("a batch beyond the frame size target becomes several frames under one seal, and the reader visits every record")
    func largeBatchSplits() async throws {
        let store = try DurabilityStore()
        var storage = store.storage
        storage.encryption = try EncryptionKeyRing(keys: [Self.key])
        let log = try ShardLog(directory: store.walDirectory, fileSystem: store.simulated, shard: 0, shardCount: 1,
                               configuration: storage.log, resumingAfter: WALReader.Report(), keys: storage.encryption)
        // Four commands of about 100 KB each (incompressible text would not matter: each is
        // added while the frame stays within 256 KiB of plain bytes).
        let batch = (0 ..< 4).map { bulkyCommand(key: IdempotencyKey(high: 9, low: UInt64($0)), bytes: 100_000) }
        log.append(batch, at: durabilityStart)
        try await log.waitUntilDurable(4)
        await log.close()
        let bytes = try store.simulated.readFile(store.segmentPath(try #require(try store.segments().first)))
        let spans = recordSpans(of: bytes, includingSeals: true)
        #expect(spans.map(\.isSeal) == [false, false, true], "two frames (2 + 2 records) then the seal")
        #expect(spans.first?.lsn == 1 && spans.dropFirst().first?.lsn == 3)
        let readAll = try WALReader.read(directory: store.walDirectory, fileSystem: store.simulated, shard: 0,
                                         keys: storage.encryption) { _ in }
        #expect(readAll.recordsVisited == 4 && readAll.lastLSN == 4 && readAll.auditSeals == 1)
    }

    @Test("a flipped bit in a frame's ciphertext is corruption at the frame's offset; with its CRC recomputed the tag catches it; point-in-time recovery cuts there")
    func bitFlipInSealedFrame() async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.bitFlip")
        let (store, storage, model) = try await Self.sealedStore(seed: seed)
        let segment = store.segmentPath(try #require(try store.segments().first))
        let bytes = try store.simulated.readFile(segment)
        let spans = recordSpans(of: bytes)
        #expect(spans.count == model.records.count, "one frame per one-record batch")
        #expect(try Self.recover(store, storage).recordsReplayed == model.records.count)
        let victim = spans[3]
        let at = victim.offset + WALFrame.contextBytes + 2

        store.simulated.flipBit(path: segment, byteOffset: at, bit: 2)
        do {
            _ = try Self.recover(store, storage)
            Issue.record("a flipped ciphertext bit was accepted (seed \(seed))")
        } catch {
            let failure = try #require(error.logFailure, "\(error)")
            #expect(failure.file == segment && failure.offset == victim.offset, "\(failure)")
            #expect(failure.code == "checksum_mismatch", "\(failure)")
        }
        // A forger recomputes the CRC: AES-GCM's tag does not verify, reported at the frame.
        let edited = Self.withCRC(Array(try store.simulated.readFile(segment)[victim.offset ..< victim.end]))
        try Self.overwrite(store, segment, edited, at: victim.offset)
        do {
            _ = try Self.recover(store, storage)
            Issue.record("a forged sealed frame was accepted (seed \(seed))")
        } catch {
            let failure = try #require(error.logFailure, "\(error)")
            #expect(failure.file == segment && failure.offset == victim.offset, "\(failure)")
            #expect(failure.code == "frame_authentication_failed", "\(failure)")
        }
        // Point-in-time recovery keeps the frames before it and cuts there.
        let (_, _, cut) = try ShardStorage.recover(shard: 0, shardCount: 1, storage: { var s = storage; s.recovery = .pointInTime; return s }(),
                                                   ledger: store.ledgerConfiguration)
        #expect(cut.recordsReplayed == 3 && cut.droppedBecause?.offset == victim.offset, "\(String(describing: cut.droppedBecause))")
    }

    @Test("the clear fields are authenticated: a forged last checksum (CRC recomputed) fails the tag with the key, and the chain without it")
    func clearFieldsAuthenticated() async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.clearFields")
        let (store, storage, _) = try await Self.sealedStore(seed: seed)
        let segment = store.segmentPath(try #require(try store.segments().first))
        let bytes = try store.simulated.readFile(segment)
        let victim = recordSpans(of: bytes)[5]
        var record = Array(bytes[victim.offset ..< victim.end])
        record[48] ^= 0x40 // the last inner record's checksum
        try Self.overwrite(store, segment, Self.withCRC(record), at: victim.offset)
        do {
            _ = try Self.recover(store, storage)
            Issue.record("a forged clear field was accepted (seed \(seed))")
        } catch {
            let failure = try #require(error.logFailure, "\(error)")
            #expect(failure.offset == victim.offset && failure.code == "frame_authentication_failed", "\(failure)")
        }
        // Without the key (the audit reader) the next frame's link no longer matches.
        #expect {
            _ = try WALReader.read(directory: store.walDirectory, fileSystem: store.simulated, shard: 0, mode: .strict,
                                   keys: nil) { _ in }
        } throws: { error in
            // Frames are opened only to visit commands: with no key that is refused first.
            (error as? WALReader.Failure)?.code == "data_key_missing"
        }
        let report = AuditVerifier.verify(directory: storage.directory, publicKeys: [], fileSystem: store.disk)
        #expect(!report.ok && report.firstBad?.problem == "chain_broken", "\(String(describing: report.firstBad))")
    }

    @Test("a torn sealed frame at the tail is cut as today; the next writer starts a new segment of a higher generation")
    func tornFrameAtTail() async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.tornFrame")
        var random = DurabilityRandom(seed: seed)
        let (store, storage, model) = try await Self.sealedStore(seed: seed)
        let segment = store.segmentPath(try #require(try store.segments().first))
        let bytes = try store.simulated.readFile(segment)
        let spans = recordSpans(of: bytes, includingSeals: true)
        let last = try #require(spans.last { !$0.isSeal })
        // Zero the frame's bytes from a random point inside it to the end (its seal too).
        let from = last.offset + 4 + random.below(last.length - 4)
        try Self.overwrite(store, segment, [UInt8](repeating: 0, count: bytes.count - from), at: from)
        let (ledger, walReport, report) = try ShardStorage.recover(shard: 0, shardCount: 1, storage: storage, ledger: store.ledgerConfiguration)
        _ = ledger
        #expect(report.recordsReplayed == model.records.count - 1, "seed \(seed)")
        #expect(report.droppedBecause?.code == "torn_tail" && report.droppedBecause?.offset == last.offset,
                "\(String(describing: report.droppedBecause)) (seed \(seed))")
        let log = try ShardLog(directory: store.walDirectory, fileSystem: store.simulated, shard: 0, shardCount: 1,
                               configuration: storage.log, resumingAfter: walReport, keys: storage.encryption)
        log.append([Command(key: IdempotencyKey(high: 0xAB, low: 1), .freeze(AccountID(tenant: TenantID(1), number: 0)))],
                   at: model.now.adding(millis: 1))
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()
        let headers = try store.segments().map { try SegmentHeader(decoding: try store.simulated.readFile(store.segmentPath($0))) }
        #expect(headers.map(\.generation) == [1, 2], "the record at the torn LSN went to generation 2: \(headers.map(\.generation))")
        #expect(try Self.recover(store, storage).recordsReplayed == model.records.count)
    }

    @Test("the last frame forged with its CRC recomputed is refused, not cut: a CRC that holds means the write was complete")
    func forgedLastFrameIsNotTorn() async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.forgedLast")
        let (store, storage, _) = try await Self.sealedStore(seed: seed)
        let segment = store.segmentPath(try #require(try store.segments().first))
        let bytes = try store.simulated.readFile(segment)
        let last = try #require(recordSpans(of: bytes).last)
        var record = Array(bytes[last.offset ..< last.end])
        record[WALFrame.contextBytes + 1] ^= 0x10
        try Self.overwrite(store, segment, Self.withCRC(record), at: last.offset)
        let before = try store.simulated.readFile(segment)
        do {
            _ = try Self.recover(store, storage)
            Issue.record("a forged last frame was accepted or cut (seed \(seed))")
        } catch {
            let failure = try #require(error.logFailure, "\(error)")
            #expect(failure.offset == last.offset && failure.code == "frame_authentication_failed", "\(failure)")
        }
        #expect(try store.simulated.readFile(segment) == before, "a refused start-up changed the segment")
    }

    @Test("a missing key is refused naming its id, in every mode, with nothing cut; frames a snapshot covers need no key")
    func missingKeyForLog() async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.missingKey")
        let (store, _, model) = try await Self.sealedStore(seed: seed)
        let other = try EncryptionKeyRing(keys: [[UInt8](repeating: 0x77, count: 32)])
        for mode in [WALReader.Mode.strict, .pointInTime] {
            for keys in [nil, other] {
                #expect {
                    _ = try WALReader.read(directory: store.walDirectory, fileSystem: store.simulated, shard: 0, mode: mode,
                                           keys: keys) { _ in }
                } throws: { error in
                    guard let failure = error as? WALReader.Failure, case .keyUnavailable(let id) = failure.problem else { return false }
                    return id == Self.keyID && failure.code == "data_key_missing" && failure.description.contains(Self.keyID)
                }
            }
        }
        // Every record covered (a snapshot at the last LSN): verified by CRC and chain only.
        let last = UInt64(model.records.count)
        let spans = recordSpans(of: try store.simulated.readFile(store.segmentPath(try #require(try store.segments().first))))
        let lastChecksum = try #require(store.simulated.readFile(store.segmentPath(try store.segments()[0])).withUnsafeBytes { raw in
            spans.last.map { raw.loadUnaligned(fromByteOffset: $0.offset + 48, as: UInt32.self) }
        })
        let report = try WALReader.read(directory: store.walDirectory, fileSystem: store.simulated, shard: 0, afterLSN: last,
                                        chain: lastChecksum, keys: nil) { _ in Issue.record("a covered record was visited") }
        #expect(report.lastLSN == last && report.recordsVerified == Int(last))
        // A wrong chain value for the snapshot is still caught without the key.
        #expect(throws: WALReader.Failure.self) {
            _ = try WALReader.read(directory: store.walDirectory, fileSystem: store.simulated, shard: 0, afterLSN: last,
                                   chain: lastChecksum ^ 1, keys: nil) { _ in }
        }
    }

    @Test("2,000 seeded mutations of a sealed segment: the reader returns a prefix of the records or a typed failure, never a trap or a changed record")
    func seededMutations() async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.mutations")
        var random = DurabilityRandom(seed: seed)
        let (store, storage, model) = try await Self.sealedStore(seed: seed, count: 40)
        let name = try #require(try store.segments().first)
        let original = try store.simulated.readFile(store.segmentPath(name))
        let end = try #require(lastNonZeroByte(original, in: 0 ..< original.count)) + 1
        var failures: [String: Int] = [:]
        for _ in 0 ..< 2_000 {
            var bytes = original
            for _ in 0 ... random.below(3) {
                let at = WALFormat.segmentHeaderSize + random.below(end - WALFormat.segmentHeaderSize)
                switch random.below(3) {
                case 0: bytes[at] ^= UInt8(1 << random.below(8))
                case 1: bytes[at] = UInt8(truncatingIfNeeded: random.next())
                default: for index in at ..< min(bytes.count, at + 1 + random.below(64)) { bytes[index] = 0 }
                }
            }
            let disk = SimulatedFileSystem()
            try disk.createDirectory("/wal")
            let file = try disk.open("/wal/" + name, create: true)
            try file.write(bytes, at: 0)
            file.close()
            var visited: [WALReader.Entry] = []
            do {
                _ = try WALReader.read(directory: "/wal", fileSystem: disk, shard: 0, mode: random.below(2) == 0 ? .strict : .pointInTime,
                                       keys: storage.encryption) { visited.append($0) }
                // Whatever was read is the log's own records, in order.
                for (index, entry) in visited.enumerated() {
                    if entry.lsn != UInt64(index + 1) || entry.command != model.records[index].command {
                        Issue.record("seed \(seed): a mutated sealed segment yielded a changed record \(entry.lsn)")
                        break
                    }
                }
            } catch let failure as WALReader.Failure {
                failures[failure.code, default: 0] += 1
            }
        }
        #expect(!failures.isEmpty)
        print("EncryptionFileTests.mutations (seed \(seed)): failures by code \(failures.sorted { $0.key < $1.key })")
    }

    @Test("a flipped bit in a sealed snapshot is reported with the file and the offset of its chunk; recovery falls back")
    func bitFlipInSealedSnapshot() async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.snapshotFlip")
        let (store, storage, model) = try await Self.sealedStore(seed: seed)
        let written = try SnapshotFile.write(model.ledger, shard: 0, shardCount: 1, lsn: UInt64(model.records.count),
                                             chain: 0, directory: store.snapshotDirectory, fileSystem: storage.fileSystem,
                                             keys: storage.encryption)
        let file = store.snapshotDirectory + "/" + SnapshotFile.name(lsn: written.lsn)
        #expect(written.isSealed)
        _ = try SnapshotFile.read(path: file, fileSystem: storage.fileSystem, configuration: store.ledgerConfiguration,
                                  keys: storage.encryption)
        store.simulated.flipBit(path: file, byteOffset: SnapshotHeader.sealedSize + 40, bit: 0)
        #expect(throws: SnapshotProblem.authenticationFailed(offset: SnapshotHeader.sealedSize)) {
            try SnapshotFile.read(path: file, fileSystem: storage.fileSystem, configuration: store.ledgerConfiguration,
                                  keys: storage.encryption)
        }
        #expect(throws: SnapshotProblem.keyUnavailable(keyID: Self.keyID)) {
            try SnapshotFile.read(path: file, fileSystem: storage.fileSystem, configuration: store.ledgerConfiguration)
        }
        // Start-up rejects the damaged snapshot (file and offset in the rejection) and replays the log.
        let report = try Self.recover(store, storage)
        #expect(report.snapshot == nil && report.recordsReplayed == model.records.count)
        #expect(report.snapshotsRejected.map(\.path) == [file])
        #expect(report.snapshotsRejected.first?.problem == .authenticationFailed(offset: SnapshotHeader.sealedSize))
    }

    @Test("after a power cut, a torn tail's LSNs are written again under a new segment generation: no (generation, LSN) nonce repeats",
          arguments: 0 ..< 4)
    func tornTailGetsNewGeneration(round: Int) async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.generation round \(round)")
        var random = DurabilityRandom(seed: seed)
        let store = try DurabilityStore()
        var storage = store.storage
        storage.encryption = try EncryptionKeyRing(keys: [Self.key])
        var workload = DurabilityWorkload(seed: random.next())
        var model = ShardModel(configuration: store.ledgerConfiguration)
        // (generation, first LSN) → the checksum of the frame sealed under that nonce: a
        // second frame with the same nonce and other contents would be a reuse.
        var nonces: [String: UInt32] = [:]
        var report = WALReader.Report()
        for crash in 0 ..< 3 {
            let log = try ShardLog(directory: store.walDirectory, fileSystem: storage.fileSystem, shard: 0, shardCount: 1,
                                   configuration: storage.log, resumingAfter: report, keys: storage.encryption)
            if crash == 0 { model.runPrologue(of: &workload, log: log) }
            model.run(10 + random.below(20), of: &workload, log: log)
            try await log.waitUntilDurable(UInt64(model.records.count))
            model.run(5 + random.below(20), of: &workload, log: log) // not waited for: may be torn
            for name in try store.simulated.contentsOfDirectory(store.walDirectory) where name.hasSuffix(".wal") {
                let bytes = try store.simulated.readFile(store.segmentPath(name))
                guard let header = try? SegmentHeader(decoding: bytes) else { continue }
                for span in recordSpans(of: bytes) {
                    let nonce = "\(header.generation)/\(span.lsn)"
                    if let earlier = nonces[nonce], earlier != span.checksum {
                        Issue.record("seed \(seed): nonce \(nonce) sealed two different frames")
                    }
                    nonces[nonce] = span.checksum
                }
            }
            store.disk.simulated.crash(seed: random.next())
            await log.close()
            let recovered = try ShardStorage.recover(shard: 0, shardCount: 1, storage: storage, ledger: store.ledgerConfiguration)
            report = recovered.1
            model = ShardModel(configuration: store.ledgerConfiguration, ledger: recovered.0,
                               records: Array(model.records.prefix(Int(report.lastLSN))), now: model.now)
        }
        // The generations of the segments on disk are distinct, rising with the first LSN.
        let headers = try store.segments().compactMap { try? SegmentHeader(decoding: try store.simulated.readFile(store.segmentPath($0))) }
        #expect(Set(headers.map(\.generation)).count == headers.count, "seed \(seed): \(headers.map(\.generation))")
        #expect(headers.map(\.generation) == headers.map(\.generation).sorted(), "seed \(seed)")
        #expect(headers.allSatisfy { $0.version == 3 })
        #expect(!nonces.isEmpty)
        print("EncryptionFileTests.generation round \(round) (seed \(seed)): \(headers.count) segments, generations \(headers.map(\.generation))")
    }
}

/// docs/audit.md's forgeries, each on a sealed data directory, verified WITHOUT the data key:
/// the chain covers the frames as written, so the auditor needs only the public key (or none).
@Suite("Encryption at rest: the audit chain verifies without the data key")
struct EncryptionAuditTests {
    static let ring = try! EncryptionKeyRing(keys: [(0 ..< 32).map { UInt8(0xC0 ^ $0) }])

    static func fixture(_ label: String, shards: Int = 2) async throws -> AuditFixture {
        let fixture = try await AuditFixture.make(label, shards: shards, keys: ring)
        for shard in 0 ..< shards {
            let headers = try fixture.segments(shard).map { try SegmentHeader(decoding: try fixture.fileSystem.readFile(fixture.storage.walDirectory(shard) + "/" + $0)) }
            precondition(headers.allSatisfy { $0.version == 3 }, "the fixture is sealed")
        }
        return fixture
    }

    /// The frame's ciphertext with one byte changed (what a forger without the key can do).
    static func flipped(_ frame: [UInt8]) -> [UInt8] {
        var frame = frame
        frame[WALFrame.contextBytes + 3] ^= 0x20
        return frame
    }

    @Test("a clean sealed directory verifies with and without the public key, counting every record")
    func cleanVerifies() async throws {
        let fixture = try await Self.fixture("EncryptionAuditTests.clean")
        let report = fixture.verify()
        #expect(report.ok, "\(String(describing: report.firstBad))")
        #expect(report.records == fixture.records.reduce(0, +))
        #expect(report.checkpointsVerified && report.unsealedRecords == 0 && report.unsignedRecords == 0)
        let unsigned = fixture.verify(keys: [])
        #expect(unsigned.ok && !unsigned.checkpointsVerified)
        // The forger's rewrite of an untouched sealed log is the log itself.
        for shard in 0 ..< fixture.shardCount { try fixture.write(try fixture.parse(shard), shard: shard, recomputeHeads: true) }
        #expect(fixture.verify().ok)
    }

    @Test("ciphertext edited with every CRC recomputed: the seal names the batch's frame, with or without the public key")
    func editedCiphertext() async throws {
        let fixture = try await Self.fixture("EncryptionAuditTests.edited")
        var log = try fixture.parse(0)
        let batch = 7
        log.batches[batch][0] = Self.flipped(log.batches[batch][0])
        try fixture.write(log, shard: 0, recomputeHeads: false)
        for keys in [nil, [] as [AuditPublicKey]] {
            let bad = try #require(fixture.verify(keys: keys).firstBad)
            #expect(bad.problem == "audit_chain_mismatch" && bad.shard == 0)
            let offset = WALFormat.segmentHeaderSize + log.batches[..<batch].map { $0.map(\.count).reduce(0, +) + WALFormat.sealRecordSize }.reduce(0, +)
            #expect(bad.offset == offset, "the frame's offset")
        }
    }

    @Test("ciphertext edited with every CRC and seal recomputed: the signed checkpoint catches it")
    func editedEverythingRecomputed() async throws {
        let fixture = try await Self.fixture("EncryptionAuditTests.editedFull")
        var log = try fixture.parse(1)
        log.batches[5][0] = Self.flipped(log.batches[5][0])
        try fixture.write(log, shard: 1, recomputeHeads: true)
        let bad = try #require(fixture.verify().firstBad)
        #expect(bad.problem == "checkpoint_head_mismatch" && bad.shard == 1, "\(bad)")
    }

    @Test("a deleted frame, later LSNs, links, CRCs and seals fixed up, is detected")
    func deletedFrame() async throws {
        let fixture = try await Self.fixture("EncryptionAuditTests.deleted")
        var log = try fixture.parse(1)
        log.batches.remove(at: 4)
        log.seals.remove(at: 4)
        for recompute in [false, true] {
            try fixture.write(log, shard: 1, recomputeHeads: recompute)
            let bad = try #require(fixture.verify().firstBad)
            #expect(bad.shard == 1)
            #expect(["audit_seal_link_broken", "audit_chain_mismatch", "checkpoint_head_mismatch", "checkpoint_not_at_seal", "chain_broken"]
                .contains(bad.problem), "\(bad)")
        }
    }

    @Test("a frame moved from one shard to another (both logs rewritten) is detected")
    func movedFrame() async throws {
        let fixture = try await Self.fixture("EncryptionAuditTests.moved")
        var from = try fixture.parse(0)
        var to = try fixture.parse(1)
        let moved = from.batches.remove(at: from.batches.count - 5)
        from.seals.remove(at: from.seals.count - 5)
        to.batches.insert(moved, at: to.batches.count - 5)
        to.seals.insert(to.seals[to.seals.count - 5], at: to.seals.count - 5)
        for recompute in [false, true] {
            try fixture.write(from, shard: 0, recomputeHeads: recompute)
            try fixture.write(to, shard: 1, recomputeHeads: recompute)
            let report = fixture.verify()
            #expect(!report.ok)
            #expect(report.firstBad?.shard == 0, "\(String(describing: report.firstBad))")
        }
    }

    @Test("segments reordered, and batches reordered with everything recomputed, are detected")
    func reordered() async throws {
        let fixture = try await Self.fixture("EncryptionAuditTests.reordered")
        let log = try fixture.parse(0)
        try fixture.write(log, shard: 0, recomputeHeads: true, splitAfterBatch: log.batches.count / 2)
        let names = try fixture.segments(0)
        try #require(names.count == 2)
        #expect(fixture.verify().ok, "the two-segment rewrite is the same log")
        let directory = fixture.storage.walDirectory(0) + "/"
        try fixture.fileSystem.rename(directory + names[0], to: directory + "swap")
        try fixture.fileSystem.rename(directory + names[1], to: directory + names[0])
        try fixture.fileSystem.rename(directory + "swap", to: directory + names[1])
        #expect(fixture.verify().firstBad?.shard == 0)
        var swapped = log
        swapped.batches.swapAt(3, 4)
        swapped.seals.swapAt(3, 4)
        try fixture.write(swapped, shard: 0, recomputeHeads: true)
        #expect(["checkpoint_head_mismatch", "checkpoint_not_at_seal"].contains(fixture.verify().firstBad?.problem ?? ""))
    }

    @Test("a tail cut after a checkpoint is detected, with or without the public key")
    func tailCut() async throws {
        let fixture = try await Self.fixture("EncryptionAuditTests.tailCut")
        var log = try fixture.parse(1)
        log.batches.removeLast(3)
        log.seals.removeLast(3)
        try fixture.write(log, shard: 1, recomputeHeads: true)
        #expect(fixture.verify().firstBad?.problem == "records_missing_after_checkpoint")
        #expect(fixture.verify(keys: []).firstBad?.problem == "records_missing_after_checkpoint")
    }
}
