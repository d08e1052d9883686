#if canImport(Glibc)
import Glibc
#endif
import CreditEngine
import DurabilityTestSupport
import Testing
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// Encryption at rest through the engine (docs/encryption.md): round trip, no plaintext on
/// disk, a wrong or missing key refused naming it with nothing changed, rotation and rekey.
@Suite("Encryption at rest: engine")
struct EncryptionEngineTests {
    static let keyA = [UInt8](repeating: 0xA1, count: 16) + [UInt8](repeating: 0x5A, count: 16)
    static let keyB = [UInt8](repeating: 0xB2, count: 16) + [UInt8](repeating: 0x6B, count: 16)
    static let costCentre = "CC-Zanzibar-Observatory-4711"
    static let reason = "goodwill after the Quokka outage 0xBEEF"
    static let model = "Narwhal-Ultra-9000-preview"

    static func ring(_ keys: [UInt8]...) throws -> EncryptionKeyRing { try EncryptionKeyRing(keys: keys) }

    static func configuration(_ directory: String, keys: EncryptionKeyRing?, shards: Int = 2) -> EngineConfiguration {
        var storage = StorageConfiguration(directory: directory, log: LogConfiguration(segmentSize: StorageLimits.segmentBytesMin,
                                                                                       unsyncedBytesMax: StorageLimits.segmentBytesMin),
                                           snapshotEveryRecords: nil, snapshotEveryMillis: nil)
        storage.encryption = keys
        return EngineConfiguration(shardCount: shards, storage: storage)
    }

    /// Opens organisations with a department (its cost centre; the pool is account 0), grants, adjusts with a reason,
    /// charges a named model: every text the test then looks for on disk. `round` keeps keys apart.
    static func writeSecrets(_ engine: CreditEngine, round: UInt64) async throws {
        for index in 0 ..< UInt64(8) {
            let tenant = TenantID(round * 1_000 + index + 1)
            let account = AccountID(tenant: tenant, number: 0)
            let department = DepartmentTerms(id: DepartmentID(1), costCentre: costCentre)
            func key(_ step: UInt64) -> IdempotencyKey { IdempotencyKey(high: 0xE0C + round, low: index * 100 + step) }
            let actions: [Action] = [
                .openTenant(tenant, .organisation(departments: [department])),
                .grant(account, GrantTerms(kind: .purchase, amount: Millicredits(1_000_000))),
                .adjust(account, Millicredits(5_000), reason: reason),
                .charge(account, UsageCharge(model: model, provider: "OpenAI", units: 1_000, providerCostNanoUSD: 10,
                                             listPrice: Millicredits(2_000), keySource: .system), scope: .unscoped),
            ]
            for (step, action) in actions.enumerated() {
                _ = try await engine.execute(Command(key: key(UInt64(step)), action)).get()
            }
        }
    }

    /// Every regular file below `directory`: path → bytes.
    static func files(_ directory: String) throws -> [String: [UInt8]] {
        var result: [String: [UInt8]] = [:]
        let fileSystem = PosixFileSystem()
        func walk(_ path: String) throws {
            for name in try fileSystem.contentsOfDirectory(path) {
                let child = path + "/" + name
                var info = stat()
                guard stat(child, &info) == 0 else { continue }
                if info.st_mode & S_IFMT == S_IFDIR { try walk(child) } else { result[child] = try fileSystem.readFile(child) }
            }
        }
        try walk(directory)
        return result
    }

    static func contains(_ haystack: [UInt8], _ needle: String) -> Bool {
        let bytes = Array(needle.utf8)
        guard haystack.count >= bytes.count else { return false }
        let first = bytes[0]
        var index = 0
        while index <= haystack.count - bytes.count {
            if haystack[index] == first, haystack[index ..< index + bytes.count].elementsEqual(bytes) { return true }
            index += 1
        }
        return false
    }

    /// The files (if any) that hold one of the secrets in clear.
    static func plaintextFiles(_ directory: String) throws -> [String] {
        try files(directory).compactMap { path, bytes in
            [costCentre, reason, model].contains { contains(bytes, $0) } ? path : nil
        }.sorted()
    }

    @Test("round trip: a sealed directory recovers to the same state, and no file holds a cost centre, a reason or a model name in clear")
    func roundTripWithoutPlaintext() async throws {
        let directory = try makeTemporaryDirectory("encryption-roundtrip")
        let keys = try Self.ring(Self.keyA)
        let engine = try await CreditEngine.open(configuration: Self.configuration(directory, keys: keys))
        try await Self.writeSecrets(engine, round: 1)
        _ = try await engine.snapshot()
        try await Self.writeSecrets(engine, round: 2) // after the snapshot: in the log only
        let digests = await engine.stateDigests()
        await engine.close()
        #expect(try Self.plaintextFiles(directory) == [], "secrets in clear in an encrypted data directory")
        // Every segment is sealed (version 3), and the audit chain verifies without the data key.
        let fileSystem = PosixFileSystem()
        for shard in 0 ..< 2 {
            let wal = Self.configuration(directory, keys: keys).storage!.walDirectory(shard)
            for name in try fileSystem.contentsOfDirectory(wal) where WALFormat.firstLSN(ofSegmentNamed: name) != nil {
                #expect(try SegmentHeader(decoding: try fileSystem.readFile(wal + "/" + name)).version == 3)
            }
        }
        let audit = AuditVerifier.verify(directory: directory, publicKeys: [], fileSystem: fileSystem)
        #expect(audit.ok, "\(String(describing: audit.firstBad))")
        #expect(audit.records >= 64 && audit.unsealedRecords == 0, "\(audit.records) records verified")

        let reopened = try await CreditEngine.open(configuration: Self.configuration(directory, keys: keys))
        #expect(await reopened.stateDigests() == digests)
        #expect(reopened.recoveryReports.allSatisfy { $0.snapshot != nil })
        #expect(reopened.recoveryReports.reduce(0) { $0 + $1.recordsReplayed } > 0)
        await reopened.expectInvariants()
        await reopened.close()

        // The control: without a key the same texts are there in clear (the search works).
        let plain = try makeTemporaryDirectory("encryption-control")
        let unsealed = try await CreditEngine.open(configuration: Self.configuration(plain, keys: nil))
        try await Self.writeSecrets(unsealed, round: 1)
        _ = try await unsealed.snapshot()
        try await Self.writeSecrets(unsealed, round: 2)
        await unsealed.close()
        #expect(try Self.plaintextFiles(plain).count >= 2, "the control directory should hold the texts in clear")
    }

    @Test("a missing or wrong key is refused naming the key id, and no file changes")
    func wrongOrMissingKey() async throws {
        let directory = try makeTemporaryDirectory("encryption-wrong-key")
        let engine = try await CreditEngine.open(configuration: Self.configuration(directory, keys: try Self.ring(Self.keyA)))
        try await Self.writeSecrets(engine, round: 1)
        _ = try await engine.snapshot()
        try await Self.writeSecrets(engine, round: 2)
        await engine.close()
        let before = try Self.files(directory)
        let idA = EncryptionKeyRing.describe(EncryptionKeyRing.id(of: Self.keyA))
        for keys in [nil, try Self.ring(Self.keyB)] {
            do {
                let opened = try await CreditEngine.open(configuration: Self.configuration(directory, keys: keys))
                await opened.close()
                Issue.record("opened with \(keys.map(\.description) ?? "no key")")
            } catch {
                #expect(error.code == "data_key_missing", "\(error)")
                #expect(error.description.contains(idA), "the refusal names the key id: \(error)")
                guard case .keyUnavailable(let keyID, _) = error.problem else {
                    Issue.record("not keyUnavailable: \(error)")
                    continue
                }
                #expect(keyID == idA)
            }
            #expect(try Self.files(directory) == before, "a refused open changed files")
        }
        // No key byte is ever in a message: the id is a hash prefix.
        #expect(!idA.contains("a1a1a1a1"))
    }

    @Test("rotation: new segments and snapshots under the newest key, old ones readable; rekey, then the old key is needed only for the audit trail")
    func rotationAndRekey() async throws {
        let directory = try makeTemporaryDirectory("encryption-rotation")
        let idA = EncryptionKeyRing.id(of: Self.keyA)
        let idB = EncryptionKeyRing.id(of: Self.keyB)
        let first = try await CreditEngine.open(configuration: Self.configuration(directory, keys: try Self.ring(Self.keyA)))
        try await Self.writeSecrets(first, round: 1)
        _ = try await first.snapshot()
        try await Self.writeSecrets(first, round: 2)
        await first.close()

        let both = try Self.ring(Self.keyA, Self.keyB)
        let second = try await CreditEngine.open(configuration: Self.configuration(directory, keys: both))
        try await Self.writeSecrets(second, round: 3)
        let digests = await second.stateDigests()
        await second.close()
        let storage = Self.configuration(directory, keys: both).storage!
        let fileSystem = PosixFileSystem()
        for shard in 0 ..< 2 {
            let segments = try fileSystem.contentsOfDirectory(storage.walDirectory(shard))
                .filter { WALFormat.firstLSN(ofSegmentNamed: $0) != nil }.sorted()
            let headers = try segments.map { try SegmentHeader(decoding: try fileSystem.readFile(storage.walDirectory(shard) + "/" + $0)) }
            #expect(headers.first?.keyID == idA, "shard \(shard): the first segment stays under key A")
            #expect(headers.last?.keyID == idB, "shard \(shard): the segment written after the rotation is under key B")
            #expect(headers.map(\.generation) == headers.map(\.generation).sorted() && Set(headers.map(\.generation)).count == headers.count,
                    "shard \(shard): generations rise: \(headers.map(\.generation))")
        }

        // rekey: a snapshot at the log's end, then every older snapshot, under B.
        let third = try await CreditEngine.open(configuration: Self.configuration(directory, keys: both))
        _ = try await third.snapshot()
        await third.close()
        for shard in 0 ..< 2 {
            let (rewritten, skipped) = try ShardStorage.resealSnapshots(shard: shard, storage: storage)
            #expect(skipped.isEmpty)
            #expect(rewritten >= 0)
            for name in try SnapshotFile.list(directory: storage.snapshotDirectory(shard), fileSystem: fileSystem) {
                let header = try SnapshotHeader(decoding: try fileSystem.readFile(storage.snapshotDirectory(shard) + "/" + name))
                #expect(header.keyID == idB, "shard \(shard): \(name) is still under another key")
            }
        }
        // Drop A: start-up needs only B (the snapshots cover every record under A) ...
        let onlyB = try Self.ring(Self.keyB)
        let fourth = try await CreditEngine.open(configuration: Self.configuration(directory, keys: onlyB))
        #expect(await fourth.stateDigests() == digests)
        await fourth.close()
        // ... but the audit trail (every record from the log's start) refuses, naming A.
        var storageB = storage
        storageB.encryption = onlyB
        #expect(throws: RecoveryError.self) { try ShardStorage.verifyLog(shard: 0, shardCount: 2, storage: storageB) }
        do {
            _ = try ShardStorage.verifyLog(shard: 0, shardCount: 2, storage: storageB)
        } catch {
            #expect(error.code == "data_key_missing")
            #expect(error.description.contains(EncryptionKeyRing.describe(idA)))
        }
        _ = try ShardStorage.verifyLog(shard: 0, shardCount: 2, storage: storage)
        #expect(try Self.plaintextFiles(directory) == [])
    }

    @Test("CLI: --data-key is refused inside the data directory or at the wrong size; a wrong key changes nothing; rekey, then start-up needs only the new key, the archive the old one, audit verify none",
          .enabled(if: creditsExecutable != nil, "the credits executable was not found next to the test bundle"))
    func commandLine() async throws {
        let credits = try #require(creditsExecutable)
        let root = try makeTemporaryDirectory("encryption-cli")
        defer { removeTree(root) }
        let data = root + "/data", errors = root + "/stderr.txt"
        let fileSystem = PosixFileSystem()
        func writeFile(_ path: String, _ bytes: [UInt8]) throws {
            let file = try fileSystem.open(path, create: true)
            try file.write(bytes, at: 0)
            file.close()
        }
        func stderr() -> String { (try? fileSystem.readFile(errors)).map { String(decoding: $0, as: UTF8.self) } ?? "" }
        try writeFile(root + "/a.key", Self.keyA)
        try writeFile(root + "/b.key", Self.keyB)
        try writeFile(root + "/short.key", Array(Self.keyA.prefix(31)))
        let engine = try await CreditEngine.open(configuration: Self.configuration(data, keys: try Self.ring(Self.keyA)))
        try await Self.writeSecrets(engine, round: 1)
        _ = try await engine.snapshot()
        try await Self.writeSecrets(engine, round: 2)
        let digests = await engine.stateDigests()
        await engine.close()
        try writeFile(data + "/inside.key", Self.keyA)
        let idA = EncryptionKeyRing.describe(EncryptionKeyRing.id(of: Self.keyA))

        // Refused before anything is opened: a key inside the data directory, a key of 31 bytes.
        for key in [data + "/inside.key", root + "/short.key"] {
            let run = try runToEnd(credits, ["recover", "--data", data, "--data-key", key, "--json"], errors: errors)
            #expect(run.exitCode == 64, "--data-key \(key): exit \(String(describing: run.exitCode)): \(stderr())")
        }
        // A wrong key: data_key_missing naming A's id, and not one byte of the directory changed.
        let before = try Self.files(data)
        let wrong = try runToEnd(credits, ["recover", "--data", data, "--data-key", root + "/b.key", "--json"], errors: errors)
        #expect(wrong.exitCode == 1 && wrong.output.contains("data_key_missing") && wrong.output.contains(idA), "\(wrong.output)")
        #expect(try Self.files(data) == before, "a refused recover changed files")

        // Rotation: rekey under B, then B alone starts; the archive (export) still needs A.
        let rekey = try runToEnd(credits, ["rekey", "--data", data, "--data-key", root + "/a.key", "--data-key", root + "/b.key", "--json"],
                                 errors: errors)
        #expect(rekey.exitCode == 0 && rekey.output.contains("\"ok\": true"), "\(rekey.output) \(stderr())")
        let onlyB = try runToEnd(credits, ["recover", "--data", data, "--data-key", root + "/b.key", "--json"], errors: errors)
        #expect(onlyB.exitCode == 0, "\(onlyB.output) \(stderr())")
        let reopened = try await CreditEngine.open(configuration: Self.configuration(data, keys: try Self.ring(Self.keyB)))
        #expect(await reopened.stateDigests() == digests)
        await reopened.close()
        let exportB = try runToEnd(credits, ["export", "--data", data, "--data-key", root + "/b.key"], errors: errors)
        #expect(exportB.exitCode != 0 && stderr().contains(idA), "export without A: \(stderr())")
        let exportAB = try runToEnd(credits, ["export", "--data", data, "--data-key", root + "/a.key", "--data-key", root + "/b.key"],
                                    errors: errors)
        #expect(exportAB.exitCode == 0 && exportAB.output.contains("\"type\": \"summary\""), "\(stderr())")
        #expect(exportAB.output.contains(Self.reason), "the export shows the plain records")
        let walVerify = try runToEnd(credits, ["wal", "verify", data, "--data-key", root + "/a.key", "--data-key", root + "/b.key"],
                                     errors: errors)
        #expect(walVerify.exitCode == 0, "\(walVerify.output) \(stderr())")
        // The auditor needs no data key.
        let audit = try runToEnd(credits, ["audit", "verify", "--data", data, "--json"], errors: errors)
        #expect(audit.exitCode == 0 && audit.output.contains("\"ok\": true"), "\(audit.output) \(stderr())")
        try fileSystem.remove(data + "/inside.key")
        #expect(try Self.plaintextFiles(data) == [])
    }

    @Test("the statement stream reads sealed frames: an encrypted directory's statement equals the plain one's; without the key it is refused naming it")
    func statementOnEncryptedDirectory() async throws {
        var lines: [[Statement.Line]] = []
        var sealedConfiguration: EngineConfiguration?
        for keys in [nil, try Self.ring(Self.keyA)] {
            let directory = try makeTemporaryDirectory(keys == nil ? "encryption-statement-plain" : "encryption-statement-sealed")
            let configuration = Self.configuration(directory, keys: keys)
            let engine = try await CreditEngine.open(configuration: configuration, clock: ManualClock())
            try await Self.writeSecrets(engine, round: 1)
            _ = try await engine.snapshot()
            try await Self.writeSecrets(engine, round: 2)
            await engine.close()
            var collected: [Statement.Line] = []
            let subject = Statement.Subject.account(AccountID(tenant: TenantID(1_001), number: 0))
            for try await line in try Statement(subject, configuration: configuration) { collected.append(line) }
            lines.append(collected)
            if keys != nil { sealedConfiguration = configuration }
        }
        #expect(lines[0].count >= 4, "header, the entries, summary")
        #expect(lines[1] == lines[0], "the statement of the sealed directory differs from the plain one's")
        // The same directory without its key: refused, naming the key.
        var keyless = try #require(sealedConfiguration)
        keyless.storage?.encryption = nil
        do {
            for try await _ in try Statement(.account(AccountID(tenant: TenantID(1_001), number: 0)), configuration: keyless) {}
            Issue.record("a statement was made without the data key")
        } catch {
            let refusal = try #require(error as? StatementError, "\(error)")
            #expect(refusal.code == "data_key_missing" || { if case .recovery(let inner) = refusal { inner.code == "data_key_missing" } else { false } }(),
                    "\(refusal) [\(refusal.code)]")
            #expect("\(error)".contains(EncryptionKeyRing.describe(EncryptionKeyRing.id(of: Self.keyA))), "\(error)")
        }
    }

    @Test("a key ring refuses a key of the wrong size and the same key twice; a key id names the key without its bytes")
    func keyRingRules() throws {
        #expect(throws: EncryptionKeyError.wrongSize(bytes: 31)) { try EncryptionKeyRing(keys: [[UInt8](repeating: 1, count: 31)]) }
        #expect(throws: EncryptionKeyError.noKey) { try EncryptionKeyRing(keys: []) }
        #expect(throws: EncryptionKeyError.self) { try EncryptionKeyRing(keys: [Self.keyA, Self.keyA]) }
        let ring = try Self.ring(Self.keyA, Self.keyB)
        #expect(ring.newestID == EncryptionKeyRing.id(of: Self.keyB))
        #expect(ring.keyIDs.count == 2 && ring.keyIDs.allSatisfy { $0.count == 16 })
        #expect(!ring.description.contains("a1a1") && !ring.description.contains("5a5a"))
    }
}
