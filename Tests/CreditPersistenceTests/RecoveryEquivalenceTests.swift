import DurabilityTestSupport
import Testing
@testable import CreditPersistence
@_spi(Plumbing) import CreditCore
@_spi(Plumbing) import CreditPersistence

@Suite("Recovery equivalence: newest snapshot + log replay gives the state of the uninterrupted run")
struct RecoveryEquivalenceTests {
    @Test("random command sequences with snapshots at random points", arguments: 0 ..< 3)
    func snapshotPlusLogEqualsUninterruptedRun(round: Int) async throws {
        let base = DurabilitySeed.make("RecoveryEquivalenceTests round \(round)")
        var random = DurabilityRandom(seed: DurabilitySeed.derived(base, round))
        let store = try DurabilityStore()
        var log = try store.openLog()
        var workload = DurabilityWorkload(seed: random.next())
        var model = ShardModel(configuration: store.ledgerConfiguration)
        /// The uninterrupted ledger's digest after n records, by n.
        var digests = [model.ledger.stateDigest()]
        func note(_ model: ShardModel) { while digests.count <= model.records.count { digests.append(model.ledger.stateDigest()) } }
        for command in workload.prologue() {
            let (outcome, _) = model.run(command, log: log)
            workload.learn(command, outcome)
            note(model)
        }
        var snapshotLSNs: [UInt64] = []
        let count = 300 + random.below(200)
        while model.records.count < count {
            model.run(1, of: &workload, log: log)
            note(model)
            if random.chance(1) || (snapshotLSNs.isEmpty && model.records.count == count / 2) {
                let lsn = UInt64(model.records.count)
                guard snapshotLSNs.last != lsn else { continue }
                try await log.waitUntilSynced(lsn)
                try store.writeSnapshot(model.ledger, lsn: lsn, chain: log.lastAppendedChecksum)
                try ShardStorage.retire(shard: 0, storage: store.storage, currentSegmentFirstLSN: log.currentSegmentFirstLSN)
                snapshotLSNs.append(lsn)
            }
        }
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()

        // Every kept snapshot holds exactly the state after its LSN.
        for name in try SnapshotFile.list(directory: store.snapshotDirectory, fileSystem: store.simulated) {
            let (header, ledger) = try SnapshotFile.read(path: store.snapshotDirectory + "/" + name, fileSystem: store.simulated,
                                                         configuration: store.ledgerConfiguration)
            #expect(ledger.stateDigest() == digests[Int(header.lsn)], "snapshot \(name)")
        }
        #expect(try SnapshotFile.list(directory: store.snapshotDirectory, fileSystem: store.simulated).count
            == min(2, snapshotLSNs.count), "retire keeps the newest two")

        let recovered = try store.recover()
        let newest = try #require(snapshotLSNs.last)
        #expect(recovered.report.snapshot == SnapshotFile.name(lsn: newest))
        #expect(recovered.report.recordsReplayed == model.records.count - Int(newest))
        #expect(recovered.ledger.stateDigest() == model.ledger.stateDigest(), "snapshot + log differs from the uninterrupted run")
        let fromStart = try store.recover(fromLogStart: true)
        #expect(fromStart.report.recordsReplayed == model.records.count)
        #expect(fromStart.ledger.stateDigest() == model.ledger.stateDigest(), "log replay differs from the uninterrupted run")

        // Same answers: balances, and retries of earlier commands (the idempotency table came back).
        let now = model.now
        for account in workload.accounts {
            #expect(recovered.ledger.balance(of: account, at: now) == model.ledger.balance(of: account, at: now), "\(account)")
        }
        var retriedRecovered = recovered.ledger
        var retriedModel = model.ledger
        for _ in 0 ..< 40 {
            let command = random.pick(model.records).command
            let fromRecovered = retriedRecovered.record(command, at: now)
            let fromModel = retriedModel.record(command, at: now)
            #expect(fromRecovered.outcome == fromModel.outcome && fromRecovered.recorded == fromModel.recorded, "retry of \(command.key)")
        }
        #expect(retriedRecovered.stateDigest() == retriedModel.stateDigest())

        // Continue after recovery, recover again.
        log = try store.openLog(after: recovered.log)
        model.run(100, of: &workload, log: log)
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()
        let again = try store.recover()
        #expect(again.ledger.stateDigest() == model.ledger.stateDigest(), "after continuing from the recovered state")
        #expect(again.ledger.invariantViolations().isEmpty)
    }

    @Test("a snapshot of the empty ledger (LSN 0) works as a starting point")
    func snapshotAtLSNZero() async throws {
        let store = try DurabilityStore()
        try store.writeSnapshot(Ledger(configuration: store.ledgerConfiguration), lsn: 0, chain: 0)
        let log = try store.openLog()
        var workload = DurabilityWorkload(seed: 0xE0_0002)
        var model = ShardModel(configuration: store.ledgerConfiguration)
        model.runPrologue(of: &workload, log: log)
        model.run(50, of: &workload, log: log)
        try await log.waitUntilDurable(UInt64(model.records.count))
        await log.close()
        let recovered = try store.recover()
        #expect(recovered.report.snapshot == SnapshotFile.name(lsn: 0))
        #expect(recovered.ledger.stateDigest() == model.ledger.stateDigest())
    }
}
