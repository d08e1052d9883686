import DurabilityTestSupport
import CreditEngine
import Testing
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

/// The golden fixtures in `snapshots/`: data directories written by earlier versions of
/// the engine, with the exact state each must recover to. A format change must keep them
/// loading (or convert them), never break them.
///
/// Fixture segments are stored without their trailing zeros (a segment is 8 MiB of mostly
/// zeros); the reader treats the missing end as the zeros it would be.
///
/// To write a fixture for a new version: `CREDITS_WRITE_FIXTURE=<name> swift test --filter
/// GoldenFixtureTests` — then commit `snapshots/<name>/`, never change an old one.
@Suite("golden fixtures")
struct GoldenFixtureTests {
    static var repositoryRoot: String {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3) // Tests/CreditEngineTests/GoldenFixtureTests.swift
        return parts.joined(separator: "/")
    }

    static let fixtures = ["v1-basic"]
    static let fileSystem = PosixFileSystem()

    @Test("every fixture recovers to exactly the state recorded with it", arguments: fixtures)
    func fixtureRecovers(name: String) async throws {
        let source = Self.repositoryRoot + "/snapshots/" + name
        let expected = try Self.readExpected(source + "/EXPECTED")
        // Recover a copy: opening a directory prepares it for appending (it would cut a
        // torn tail), and the fixture must stay as committed.
        let copy = try makeTemporaryDirectory("fixture-\(name)")
        try Self.copyTree(from: source, to: copy)
        let shardCount = try #require(try ShardStorage.existingShardCount(storage: StorageConfiguration(directory: copy)))
        let engine = try await CreditEngine.open(
            configuration: EngineConfiguration(shardCount: shardCount, storage: StorageConfiguration(directory: copy)),
            clock: ManualClock(Timestamp(millisSinceEpoch: Int64(expected["clock"]!)!)))
        #expect(await engine.invariantViolations().isEmpty)
        // The digest of everything the fixture's version knew; the spend velocities its
        // replayed debits now build are state it could not record (docs/formats.md).
        let digests = await engine.stateDigestsWithoutSpendVelocities().map { String($0, radix: 16) }
        #expect(digests.joined(separator: ",") == expected["digests"])
        #expect(await engine.stateDigests() != (await engine.stateDigestsWithoutSpendVelocities()), "the replayed debits built velocities")
        // The fixture was written with a snapshot in the middle: both paths must be used.
        #expect(engine.recoveryReports.contains { $0.snapshot != nil })
        #expect(engine.recoveryReports.reduce(0) { $0 + $1.recordsReplayed } > 0)
        for (key, value) in expected where key.hasPrefix("available ") {
            let parts = key.dropFirst("available ".count).split(separator: "/")
            let account = AccountID(tenant: TenantID(UInt64(parts[0])!), number: UInt32(parts[1])!)
            #expect(await engine.available(of: account)?.rawValue == Int64(value), "\(account)")
        }
        // It accepts new commands after recovery, on top of the old log.
        let outcome = await engine.execute(Command(key: IdempotencyKey(deriving: "after-fixture"),
                                                   .debit(Self.accounts[0], Millicredits(1), scope: .unscoped)))
        #expect(outcome.isSuccess)
        await engine.close()
    }

    static let accounts = (1 ... 6).map { AccountID(tenant: TenantID(UInt64($0)), number: 0) }

    /// Writes a fixture (only when asked: fixtures are committed once and never rewritten).
    @Test("write a new fixture when CREDITS_WRITE_FIXTURE names one")
    func writeFixture() async throws {
        guard let name = environment("CREDITS_WRITE_FIXTURE") else { return }
        let directory = Self.repositoryRoot + "/snapshots/" + name
        #expect(!Self.fileSystem.fileExists(directory), "fixtures are never rewritten")
        let clock = ManualClock(engineStart)
        let storage = StorageConfiguration(directory: directory, log: LogConfiguration(segmentSize: 9 << 20, unsyncedBytesMax: 9 << 20),
                                           snapshotEveryRecords: nil, snapshotEveryMillis: nil)
        let engine = try await CreditEngine.open(configuration: EngineConfiguration(shardCount: 2, storage: storage), clock: clock)
        var counter = 0
        func run(_ action: Action) async {
            counter += 1
            clock.advance(millis: 1_000)
            _ = await engine.execute(Command(key: IdempotencyKey(high: 0xF1, low: UInt64(counter)), action))
        }
        for account in Self.accounts {
            await run(.openTenant(account.tenant, .individual))
            await run(.openAccount(account, .standard))
            await run(.grant(account, GrantTerms(kind: .purchase, amount: credits(100), expiresAt: Timestamp(millisSinceEpoch: engineStart.millisSinceEpoch + 400_000_000))))
            await run(.grant(account, GrantTerms(kind: .promotional, amount: credits(20), priority: 10, scope: ChargeScope(provider: 3))))
        }
        let org = TenantID(100)
        await run(.openTenant(org, .organisation(departments: [DepartmentTerms(id: DepartmentID(1), costCentre: "R&D", allocationPerPeriod: credits(50))])))
        await run(.grant(AccountID(tenant: org, number: 0), GrantTerms(kind: .enterpriseContract, amount: credits(500))))
        let member = AccountID(tenant: org, number: 1)
        await run(.openAccount(member, .member(department: DepartmentID(1), limitPerPeriod: credits(30))))
        await run(.debit(member, credits(12), scope: .unscoped))
        await run(.debit(Self.accounts[0], credits(7), scope: ChargeScope(provider: 3, model: 1)))
        await run(.reserve(Self.accounts[1], credits(40), timeoutMillis: 60_000, scope: .unscoped))
        _ = try await engine.snapshot()
        await run(.settle(HoldID(tenant: Self.accounts[1].tenant, number: UInt64(counter)), actual: credits(35)))
        await run(.debit(Self.accounts[2], credits(500), scope: .unscoped)) // rejected: remembered and logged
        await run(.refund(Self.accounts[0], debit: IdempotencyKey(high: 0xF1, low: UInt64(counter - 3)), credits(2)))
        await run(.adjust(Self.accounts[3], credits(-5), reason: "goodwill correction ✓"))
        await run(.freeze(Self.accounts[4]))
        await run(.startPeriod(org))
        await run(.debit(member, credits(25), scope: .unscoped))
        let digests = await engine.stateDigests().map { String($0, radix: 16) }
        var lines = ["clock \(clock.now().millisSinceEpoch)", "digests \(digests.joined(separator: ","))"]
        for account in Self.accounts + [member] {
            lines.append("available \(account.tenant.rawValue)/\(account.number) \(await engine.available(of: account)!.rawValue)")
        }
        await engine.close()
        try Self.fileSystem.open(directory + "/EXPECTED", create: true).write(Array((lines.joined(separator: "\n") + "\n").utf8), at: 0)
        // Trim each segment after its last record (records may end in zero bytes, so the
        // reader says where; the rest is the preallocated zeros).
        for shard in 0 ..< 2 {
            let report = try WALReader.read(directory: storage.walDirectory(shard), fileSystem: Self.fileSystem,
                                            shard: UInt32(shard)) { _ in }
            #expect(report.droppedBytes == 0)
            let path = storage.walDirectory(shard) + "/" + (try #require(report.tailSegment))
            let file = try Self.fileSystem.open(path, create: false)
            try file.truncate(Int64(report.tailOffset))
            file.close()
        }
        for shard in 0 ..< 2 {
            let file = try Self.fileSystem.open(storage.archiveDirectory(shard) + "/.gitkeep", create: true)
            file.close()
        }
    }

    static func readExpected(_ path: String) throws -> [String: String] {
        var values: [String: String] = [:]
        for line in String(decoding: try fileSystem.readFile(path), as: UTF8.self).split(separator: "\n") {
            guard let space = line.lastIndex(of: " ") else { continue }
            values[String(line[..<space])] = String(line[line.index(after: space)...])
        }
        return values
    }

    static func copyTree(from source: String, to target: String) throws {
        try fileSystem.createDirectory(target)
        for name in try fileSystem.contentsOfDirectory(source) {
            let from = source + "/" + name
            if let _ = try? fileSystem.contentsOfDirectory(from) {
                try copyTree(from: from, to: target + "/" + name)
            } else {
                let file = try fileSystem.open(target + "/" + name, create: true)
                try file.write(try fileSystem.readFile(from), at: 0)
                file.close()
            }
        }
    }
}
