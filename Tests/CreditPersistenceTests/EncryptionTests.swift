import Testing
@testable import CreditPersistence
import DurabilityTestSupport
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// Sealed records and snapshots at the file level (docs/encryption.md): damage is reported like
/// any corruption (file, offset), under the torn-tail rule; a torn tail's LSNs are written again
/// under a new segment generation, so no nonce repeats.
@Suite("Encryption at rest: files")
struct EncryptionFileTests {
    static let key = (0 ..< 32).map { UInt8($0 &* 7 &+ 3) }

    /// A one-shard store whose log is sealed, with `count` workload records written in two
    /// synced rounds (so later records declare the earlier ones synced).
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

    @Test("a flipped bit in a sealed record is corruption with its file and offset; with the checksum recomputed, the tag catches it")
    func bitFlipInSealedRecord() async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.bitFlip")
        let (store, storage, model) = try await Self.sealedStore(seed: seed)
        let segment = store.segmentPath(try #require(try store.segments().first))
        let bytes = try store.simulated.readFile(segment)
        let spans = recordSpans(of: bytes)
        #expect(spans.count == model.records.count)
        #expect(try Self.recover(store, storage).recordsReplayed == model.records.count)
        let victim = spans[3]
        let at = victim.offset + WALFormat.recordHeaderSize + 5

        // The stored ciphertext changed: the CRC (over the ciphertext) mismatches.
        store.simulated.flipBit(path: segment, byteOffset: at, bit: 2)
        do {
            _ = try Self.recover(store, storage)
            Issue.record("a flipped ciphertext bit was accepted (seed \(seed))")
        } catch {
            let failure = try #require(error.logFailure, "\(error)")
            #expect(failure.file == segment && failure.offset == victim.offset, "\(failure)")
            #expect(failure.code == "checksum_mismatch", "\(failure)")
        }
        // A forger recomputes the CRC: AES-GCM's tag does not verify, reported the same way.
        var edited = try store.simulated.readFile(segment)
        let crc = edited.withUnsafeBytes { raw in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[(victim.offset + 8) ..< victim.end]),
                            continuing: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[victim.offset ..< victim.offset + 4])))
        }
        withUnsafeBytes(of: crc.littleEndian) { edited.replaceSubrange(victim.offset + 4 ..< victim.offset + 8, with: $0) }
        try Self.overwrite(store, segment, Array(edited[victim.offset ..< victim.end]), at: victim.offset)
        do {
            _ = try Self.recover(store, storage)
            Issue.record("a forged sealed record was accepted (seed \(seed))")
        } catch {
            let failure = try #require(error.logFailure, "\(error)")
            #expect(failure.file == segment && failure.offset == victim.offset, "\(failure)")
            #expect(failure.code == "record_authentication_failed", "\(failure)")
        }
    }

    @Test("the last record forged in the unsynced window is a torn tail, as a checksum mismatch there would be")
    func forgedLastRecordIsTornTail() async throws {
        let seed = DurabilitySeed.make("EncryptionFileTests.tornTail")
        let (store, storage, model) = try await Self.sealedStore(seed: seed)
        let segment = store.segmentPath(try #require(try store.segments().first))
        var bytes = try store.simulated.readFile(segment)
        let last = try #require(recordSpans(of: bytes).last)
        bytes[last.offset + WALFormat.recordHeaderSize] ^= 0x10
        let crc = bytes.withUnsafeBytes { raw in
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[(last.offset + 8) ..< last.end]),
                            continuing: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[last.offset ..< last.offset + 4])))
        }
        withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange(last.offset + 4 ..< last.offset + 8, with: $0) }
        try Self.overwrite(store, segment, Array(bytes[last.offset ..< last.end]), at: last.offset)
        let report = try Self.recover(store, storage)
        #expect(report.recordsReplayed == model.records.count - 1)
        #expect(report.droppedBecause?.code == "torn_tail" && report.droppedBecause?.offset == last.offset,
                "\(String(describing: report.droppedBecause)) (seed \(seed))")
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
        #expect(throws: SnapshotProblem.keyUnavailable(keyID: EncryptionKeyRing.describe(EncryptionKeyRing.id(of: Self.key)))) {
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
        // (generation, LSN) → the checksum of the record written under that nonce: a second
        // record with the same nonce and other contents would be a reuse.
        var nonces: [String: UInt32] = [:]
        var report = WALReader.Report()
        for crash in 0 ..< 3 {
            let log = try ShardLog(directory: store.walDirectory, fileSystem: storage.fileSystem, shard: 0, shardCount: 1,
                                   configuration: storage.log, resumingAfter: report, keys: storage.encryption)
            if crash == 0 { model.runPrologue(of: &workload, log: log) }
            model.run(10 + random.below(20), of: &workload, log: log)
            try await log.waitUntilDurable(UInt64(model.records.count))
            model.run(5 + random.below(20), of: &workload, log: log) // not waited for: may be torn
            // Every record written so far, under its segment's generation.
            for name in try store.simulated.contentsOfDirectory(store.walDirectory) where name.hasSuffix(".wal") {
                let bytes = try store.simulated.readFile(store.segmentPath(name))
                guard let header = try? SegmentHeader(decoding: bytes) else { continue }
                for span in recordSpans(of: bytes) {
                    let nonce = "\(header.generation)/\(span.lsn)"
                    if let earlier = nonces[nonce], earlier != span.checksum {
                        Issue.record("seed \(seed): nonce \(nonce) sealed two different records")
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
        #expect(!nonces.isEmpty)
        print("EncryptionFileTests.generation round \(round) (seed \(seed)): \(headers.count) segments, generations \(headers.map(\.generation))")
    }
}
